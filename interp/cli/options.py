"""What a subcommand declares: a :class:`Command` and checked option values.

Every value is checked while the command line is parsed, before any model loads: a value of
the wrong kind, out of range or not among the choices stops the command with one line that
names the option, what it expects and what it got. ``--help`` lists every choice and range.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from interp.errors import ConfigError, InputError


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are named errors (one line, exit status 2), not exits."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)  # main adds the fix: the --help of the subcommand being run


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, a one-line help, the options it owns and what it runs."""

    name: str
    help: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    example: str = ""  # command lines shown under the options in --help (with expected run times)


class Kind:
    """A checked option value: ``parse(text)`` converts or raises; ``describe`` goes into --help."""

    def __init__(self, parse: Callable[[str], Any], describe: str, choices: Sequence[str] | None = None) -> None:
        self.parse, self.describe, self.choices = parse, describe, choices
        self.__name__ = describe  # argparse names the type in some of its own messages

    def __call__(self, text: str) -> Any:
        return self.parse(text)


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def integer(low: int | None = None, high: int | None = None) -> Kind:
    """An integer in ``[low, high]`` (either bound optional)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _bad(f"expected an integer, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise _bad(f"must be {_range(low, high)}, got {value}")
        return value
    return Kind(parse, f"an integer {_range(low, high)}" if low is not None or high is not None else "an integer")


def real(low: float | None = None, high: float | None = None, *, above: bool = False, below: bool = False) -> Kind:
    """A finite float in the interval (``above``/``below``: the bound itself excluded)."""
    import math

    left, right = ("(" if above or low is None else "["), (")" if below or high is None else "]")
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _bad(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise _bad(f"must be a finite number, got {text!r}")
        if low is not None and (value < low or (above and value == low)) or \
                high is not None and (value > high or (below and value == high)):
            raise _bad(f"must be in {interval}, got {value}")
        return value
    return Kind(parse, "a number" if low is None and high is None else f"a number in {interval}")


def choice(options: Iterable[str]) -> Kind:
    """One of ``options`` (argparse checks it and lists them in --help and in its error)."""
    options = tuple(options)
    return Kind(str, "one of " + ", ".join(options), choices=options)


def names(known: Iterable[str], *, size: int | None = None, allow_none: bool = False, allow_empty: bool = False) -> Kind:
    """A comma-separated list of distinct names from ``known`` (``none`` for None if allowed)."""
    known = tuple(known)
    count = f"{size} " if size else ""
    describe = f"{count}comma-separated, from: {', '.join(known)}" + (" (or none)" if allow_none else "")

    def parse(text: str) -> tuple[str, ...] | None:
        if allow_none and text.strip().lower() == "none":
            return None
        items = tuple(x.strip() for x in text.split(",") if x.strip())
        unknown = [x for x in items if x not in known]
        if unknown:
            raise _bad(f"unknown {', '.join(map(repr, unknown))}{_did_you_mean(unknown, known)}; choose from {', '.join(known)}")
        if not items and not allow_empty:
            raise _bad(f"needs at least one name, got {text!r}; choose from {', '.join(known)}")
        if len(set(items)) != len(items):
            raise _bad(f"names repeat in {text!r}")
        if size is not None and items and len(items) != size:
            raise _bad(f"needs exactly {size} names, got {len(items)}")
        return items
    return Kind(parse, describe)


def _did_you_mean(unknown: Sequence[str], known: Sequence[str]) -> str:
    """`` (did you mean 'lowlight'?)`` for names close to known ones (:mod:`difflib`), else ``""``."""
    import difflib

    close = [m[0] for m in (difflib.get_close_matches(x, known, n=1, cutoff=0.6) for x in unknown) if m]
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("1", "true", "yes", "0", "false", "no"):
        raise _bad(f"expected true or false, got {text!r}")
    return value in ("1", "true", "yes")


FLAG = Kind(_flag, "true or false")


def _range(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    return f">= {low}" if low is not None else f"<= {high}"


# --------------------------------------------------------------------------------------------
# paths, data and devices


def run_dir(text: str) -> Path:
    """A run directory to create or resume: a new or empty folder or an existing interp run
    (:func:`interp.run.check_run_path`); an empty name, a file or a folder of other files is refused."""
    from interp.run import check_run_path

    try:
        return check_run_path(text)
    except ValueError as error:
        raise _bad(str(error)) from None


def existing_run(text: str) -> Path:
    """A run directory that exists."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise _bad(f"no run directory {path}; give one written by `interp demo` or the pipeline stages")
    return path


def existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise _bad(f"no file {path}")
    return path


def model_spec(text: str) -> Any:
    """A :class:`~interp.models.spec.ModelSpec` (``tiny`` | ``weights.safetensors`` |
    ``official:<mae.pth>[,<vqgan.ckpt>]``) whose files exist."""
    from interp.models.spec import ModelSpec

    try:
        return ModelSpec.parse(text).check()
    except InputError as error:
        raise _bad(str(error)) from None


def data_spec(text: str) -> Any:
    """A :class:`~interp.data.spec.DataSpec` (``synthetic[:seed]`` | ``pascal:<VOC2012 dir>[,<splits dir>]``),
    seed an integer, directories existing."""
    from interp.data.spec import DataSpec

    try:
        return DataSpec.parse(text).check()
    except InputError as error:
        raise _bad(str(error)) from None


def device(text: str) -> str:
    """``cpu``, ``cuda`` / ``cuda:N`` (if CUDA is there) or ``mps`` (if MPS is there)."""
    import torch

    kind, _, index = text.partition(":")
    if kind == "cpu" and not index:
        return text
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise _bad(f"{text!r} asked for, but CUDA is not available here (torch {torch.__version__}); use --device cpu")
        count = torch.cuda.device_count()
        if index and (not index.isdigit() or int(index) >= count):
            raise _bad(f"no CUDA device {text!r}; this machine has cuda:0..cuda:{count - 1}")
        return text
    if kind == "mps" and not index:
        if not torch.backends.mps.is_available():
            raise _bad("'mps' asked for, but MPS is not available here; use --device cpu")
        return text
    raise _bad(f"unknown device {text!r}; use cpu, cuda, cuda:N or mps")


def threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads (default: :func:`interp.runtime.default_threads`)."""
    parser.add_argument("--threads", type=integer(1), default=None, metavar="N",
                        help="an integer >= 1: torch CPU threads (default: OMP_NUM_THREADS if set, else the cores "
                             "this process may use); fewer than the cores helps when other work shares them")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------------------------
# config dataclasses


def config_options(parser: argparse.ArgumentParser, cls: type, kinds: Mapping[str, Kind], skip: Iterable[str] = (),
                   helps: Mapping[str, str] | None = None, only: Iterable[str] | None = None, hidden: bool = False) -> None:
    """One ``--option`` per field of config dataclass ``cls``, each checked by its :class:`Kind`.

    Its --help line says what the field does (``helps[name]``, else the field's
    ``metadata["help"]``), then what it takes and its default. ``only``: just these fields.
    ``hidden``: accepted and checked but left out of --help (another stage's options).
    A field without a declared kind gets a generic one from its default (integer, number,
    true/false, comma-separated list)."""
    wanted = None if only is None else set(only)
    for field in fields(cls):
        if field.name in skip or (wanted is not None and field.name not in wanted):
            continue
        if field.default is not MISSING:
            default = field.default
        elif field.default_factory is not MISSING:  # e.g. a task list from the registry
            default = field.default_factory()
        else:
            default = None
        kind = kinds.get(field.name) or _default_kind(default)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else ("none" if default is None else default)
        meaning = (helps or {}).get(field.name) or field.metadata.get("help")
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, choices=kind.choices, default=default,
                            metavar=None if kind.choices else field.name.upper(),
                            help=argparse.SUPPRESS if hidden else
                            f"{meaning}: {kind.describe} (default: {shown})" if meaning else f"{kind.describe} (default: {shown})")


def _default_kind(default: Any) -> Kind:
    if isinstance(default, bool):
        return FLAG
    if isinstance(default, int):
        return integer()
    if isinstance(default, float):
        return real()
    if isinstance(default, str):
        return Kind(str, "a string")
    return Kind(lambda text: tuple(x for x in text.split(",") if x) or None, "comma-separated")


def recorded(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as a run manifest records them (without the dispatch entries)."""
    return {k: v for k, v in vars(args).items() if k not in ("handler", "debug")}


def config_from(cls: type, args: argparse.Namespace, **overrides: Any):
    """``cls`` built from the parsed options of its fields (plus ``overrides``)."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    try:
        return cls(**{**values, **overrides})
    except (TypeError, ValueError) as error:  # a check of the config itself (its __post_init__)
        raise ConfigError(f"{cls.__name__}: {error}", fix="Change the option named in the message") from error
