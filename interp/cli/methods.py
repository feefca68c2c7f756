"""Every search method's own options on one command line: ``interp search --method M --<option>``.

A method declares its options beside itself, as the fields of its ``Config`` dataclass
(:mod:`interp.taskvectors.search`), each with a ``help`` and optional bounds (``min``, ``above``,
``choices``) in the field's metadata. Here every such field becomes one ``--option`` whose help
names the methods that take it and each one's default; an option is left unset unless given, so
each method starts from its own defaults, and an option the chosen method does not take is a
named error (``--pool`` is greedy's, not gradient's), never silently ignored.
"""

from __future__ import annotations

import argparse
from dataclasses import Field, fields
from typing import Any

from interp.cli.bounds import MAX_PROMPTS, MAX_SAMPLES, MAX_STEPS
from interp.cli.options import FLAG, Kind, choice, integer, real
from interp.errors import ConfigError

#: method options that the stage sets itself (``--seed`` is the pipeline's seed)
STAGE_SET = ("seed",)
#: ceilings of the counts (checked while parsing, stated in --help; far above any meaningful run)
CEILINGS = {"steps": MAX_STEPS, "eval_every": MAX_STEPS, "samples": MAX_SAMPLES, "draws": MAX_SAMPLES,
            "sets_per_batch": MAX_SAMPLES, "pool": MAX_PROMPTS, "units": MAX_PROMPTS, "max_units": MAX_PROMPTS,
            "block": MAX_PROMPTS, "min_units": MAX_PROMPTS}


def _kind(field: Field) -> Kind:
    meta, default = field.metadata, field.default
    if "choices" in meta:
        return choice(meta["choices"])
    if isinstance(default, bool):
        return FLAG
    numeric = default if default is not None else 0  # `int | None` fields default to None
    if isinstance(numeric, int) and "float" not in str(field.type):
        kind = integer(meta.get("min"), meta.get("max", CEILINGS.get(field.name)))
    else:
        kind = real(meta.get("above", meta.get("min")), meta.get("max"), above="above" in meta)
    if default is None:  # "none" keeps the default None (e.g. no size cap)
        inner = kind
        return Kind(lambda text: None if text.strip().lower() == "none" else inner(text), f"{kind.describe} or none")
    return kind


def _method_fields() -> dict[str, list[tuple[str, Field]]]:
    """option name -> [(method, field)] over every method's Config."""
    from interp.taskvectors.search import METHODS, method_module

    out: dict[str, list[tuple[str, Field]]] = {}
    for method in METHODS:
        for field in fields(method_module(method).Config):
            if field.name not in STAGE_SET:
                out.setdefault(field.name, []).append((method, field))
    return out


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """``--method`` and one ``--option`` per method option (see the module docstring)."""
    from interp.taskvectors.search import METHODS

    group = parser.add_argument_group("search method", "which method searches, and its own options (unset: the method's default)")
    group.add_argument("--method", type=choice(tuple(METHODS)), choices=tuple(METHODS), default="reinforce",
                       help=f"search method, one of {', '.join(METHODS)} (default: reinforce, the official)")
    for name, owners in _method_fields().items():
        kind = _kind(owners[0][1])
        defaults = ", ".join(f"{m} {_shown(f.default)}" for m, f in owners)
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"method_{name}", type=kind, choices=kind.choices,
                           default=None, metavar=None if kind.choices else name.upper(),
                           help=f"{owners[0][1].metadata.get('help', name)}; {kind.describe} (default: {defaults})")


def _shown(value: Any) -> str:
    return "none" if value is None else str(round(value, 4) if isinstance(value, float) else value)


def method_config_from(args: argparse.Namespace, seed: int) -> Any:
    """The chosen method's config from the given options (the rest at the method's defaults)."""
    from interp.taskvectors.search import method_module

    cls = method_module(args.method).Config
    own = {f.name for f in fields(cls)}
    given = {name: getattr(args, f"method_{name}") for name in _method_fields() if getattr(args, f"method_{name}", None) is not None}
    foreign = sorted(set(given) - own)
    if foreign:
        takes = ", ".join(f"--{n.replace('_', '-')}" for n in sorted(own - set(STAGE_SET)))
        raise ConfigError(f"--method {args.method} takes no {', '.join('--' + n.replace('_', '-') for n in foreign)}",
                          fix=f"{args.method}'s options are {takes}; `interp search --help` lists which method takes which")
    values = {**given, **({"seed": seed} if "seed" in own else {})}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{args.method}: {error}", fix="Change the option named in the message") from error
