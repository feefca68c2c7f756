"""The ``interp`` command: one subcommand per pipeline stage, each writing a run directory.

Each subcommand is a :class:`~interp.cli.options.Command` (name, help, the options it owns,
what it runs) declared in a module of this package beside the code it drives. To add one,
write ``interp/cli/<name>.py`` with ``COMMANDS = [Command(...)]`` and list the module in
:data:`MODULES`. ``main`` only parses, dispatches and reports: a named error
(:class:`~interp.errors.InterpError`) or any other failure is printed as one line with its
fix, exit status 2 for usage and input errors, 1 for failures; ``--debug`` (or
``INTERP_DEBUG=1``) prints the traceback as well.

Mistakes get a suggestion: a misspelt command ("did you mean `interp collect`?", by
:mod:`difflib`), values given space-separated to an option that takes one comma-separated
list (``--tasks segmentation lowlight``). A stage that fails before writing anything but its
manifest leaves no run directory behind. Under ``torchrun`` (``RANK`` set) only rank 0 prints
results; a usage or input error (the same on every rank) is printed by rank 0 only, a failure by
the rank it happens on, prefixed with its rank (torchrun then adds its own failure summary).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import os
import shutil
import sys
import traceback
from pathlib import Path

from interp import runtime
from interp.cli.options import Command, Parser, threads_option
from interp.errors import ConfigError, InterpError, OutOfMemoryError

#: the modules whose ``COMMANDS`` make up ``interp``, in the order ``--help`` lists them
MODULES: tuple[str, ...] = (
    "interp.cli.train",
    "interp.cli.stages",
    "interp.cli.figures",
    "interp.cli.compare_weights",
    "interp.cli.demo",
    "interp.cli.compare",
    "interp.cli.lens",
    "interp.cli.agreement",
)

DEBUG_ENV = "INTERP_DEBUG"


def commands() -> dict[str, Command]:
    """Every subcommand by name."""
    out: dict[str, Command] = {}
    for module in MODULES:
        for command in importlib.import_module(module).COMMANDS:
            if command.name in out:
                raise RuntimeError(f"two subcommands named {command.name!r} (in {module})")
            out[command.name] = command
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="interp", description="Task vectors in MAE-VQGAN: each subcommand runs one pipeline stage into a run directory.")
    parser.add_argument("--debug", action="store_true", help=f"show the traceback of an error (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for command in commands().values():
        child = sub.add_parser(command.name, help=command.help, description=command.help,
                               epilog=f"example:\n{command.example}" if command.example else None,
                               formatter_class=argparse.RawDescriptionHelpFormatter)  # the example's lines as written
        child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
        command.options(child)
        if not any("--threads" in action.option_strings for action in child._actions):  # train has its own
            threads_option(child)
        child.set_defaults(handler=command.run)
    return parser


def parse(argv: list[str], prog: str = "interp") -> argparse.Namespace:
    """The parsed command line; a usage error is a :class:`ConfigError` pointing to ``--help``
    (with a suggestion where one fits: a close command name, comma-separated values)."""
    parser = build_parser()
    known = commands()
    name = next((a for a in argv if not a.startswith("-")), None)
    if name is not None and name not in known:
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        hint = f"Did you mean `interp {close[0]}`? " if close else ""
        raise ConfigError(f"unknown command {name!r}", fix=f"{hint}`interp --help` lists the commands")
    try:
        return parser.parse_args(argv)
    except ConfigError as error:
        fix = f"`{prog} --help` lists the options and their values"
        hint = _comma_hint(parser, argv, error.problem)
        raise ConfigError(error.problem, fix=f"{hint} ({fix})" if hint else fix) from None


def _comma_hint(parser: argparse.ArgumentParser, argv: list[str], problem: str) -> str | None:
    """For ``unrecognized arguments: lowlight`` after ``--tasks segmentation``: say that the
    option takes one comma-separated value, and how to write it."""
    if not problem.startswith("unrecognized arguments:"):
        return None
    extra = problem.split(":", 1)[1].split()
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    child = sub.choices.get(next((a for a in argv if not a.startswith("-")), ""), None) if sub else None
    if child is None:
        return None
    for i, word in enumerate(argv):
        if word not in extra or i == 0:
            continue
        j = i  # walk back over the words before it to the option they follow
        while j > 0 and not argv[j - 1].startswith("-"):
            j -= 1
        option = argv[j - 1] if j > 0 else None
        action = child._option_string_actions.get(option) if option else None
        kind = getattr(action, "type", None)
        if action is not None and "comma-separated" in str(getattr(kind, "describe", "")):
            k = j
            while k < len(argv) and not argv[k].startswith("-"):
                k += 1
            values = argv[j:k]
            return f"{option} takes one comma-separated value: {option} {','.join(values)}"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m interp.cli -- <command> ...` passes the separator on
        argv = argv[1:]
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")
    prog = " ".join(["interp", *[a for a in argv if not a.startswith("-")][:1]])
    rank = int(os.environ.get("RANK", "0") or 0)  # torchrun: every rank runs this
    who = f"{prog} (rank {rank})" if rank else prog
    fresh: Path | None = None
    try:
        args = parse(argv, prog)
        runtime.set_threads(getattr(args, "threads", None))
        run = getattr(args, "run", None)
        fresh = Path(run) if run is not None and not Path(run).exists() else None
        with _quiet() if rank else contextlib.nullcontext():  # rank 0 prints the tables and "written to"
            return args.handler(args)
    except KeyboardInterrupt:
        print(f"{who}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            traceback.print_exc()
        if fresh is not None and rank == 0:
            _remove_if_untouched(fresh)
        if rank == 0 or exit_status(error) != 2 or debug:  # a usage or input error is every rank's: rank 0 says it
            print(f"{who}: error: {describe(error, debug)}", file=sys.stderr)
        return exit_status(error)


@contextlib.contextmanager
def _quiet():
    """Standard output to nowhere (ranks other than 0); errors still reach standard error."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


#: what opening a run writes before a stage has done anything (the manifest and the writer lock)
_OPENING_FILES = ("manifest.json", ".lock", ".lock.holder.json")


def _remove_if_untouched(path: Path) -> None:
    """A run directory this command created and that holds only what opening it wrote: removed,
    so that a stage run too early (``search`` before ``collect``) leaves nothing behind."""
    if not path.is_dir() or any(p.name not in _OPENING_FILES for p in path.iterdir()):
        return
    from interp.run import unlock_run

    unlock_run(path)
    shutil.rmtree(path, ignore_errors=True)


def describe(error: BaseException, debug: bool = False) -> str:
    """One line saying what went wrong and what to do."""
    if isinstance(error, InterpError):
        text = str(error)
    elif OutOfMemoryError.of(error) is not None:  # a failed allocation, named with what to lower
        text = str(OutOfMemoryError.of(error))
    elif isinstance(error, OSError) and error.errno == 28:  # ENOSPC
        text = f"no space left on the device ({error.filename or error}). Free some disk space and rerun: finished steps resume"
    elif isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        text = str(error) if error.filename is None else f"{error.strerror}: {error.filename}"
    else:
        text = f"unexpected {type(error).__name__}: {error}"
        if not debug:
            text += f" (rerun with --debug or {DEBUG_ENV}=1 for the traceback, and please report it)"
    return " ".join(text.split())


def exit_status(error: BaseException) -> int:
    """2 for usage and input errors, 1 for failures."""
    if isinstance(error, InterpError):
        return error.exit_status
    return 2 if isinstance(error, (FileNotFoundError, IsADirectoryError, NotADirectoryError)) else 1
