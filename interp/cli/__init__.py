"""The ``interp`` command: one subcommand per pipeline stage, each writing a run directory.

Each subcommand is a :class:`~interp.cli.options.Command` (name, help, the options it owns,
what it runs) declared in a module of this package beside the code it drives. To add one,
write ``interp/cli/<name>.py`` with ``COMMANDS = [Command(...)]`` and list the module in
:data:`MODULES`. ``main`` only parses, dispatches and reports: a named error
(:class:`~interp.errors.InterpError`) or any other failure is printed as one line with its
fix, exit status 2 for usage and input errors, 1 for failures; ``--debug`` (or
``INTERP_DEBUG=1``) prints the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from interp.cli.options import Command, Parser
from interp.errors import ConfigError, InterpError

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
        child = sub.add_parser(command.name, help=command.help, description=command.help)
        child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
        command.options(child)
        child.set_defaults(handler=command.run)
    return parser


def parse(argv: list[str], prog: str = "interp") -> argparse.Namespace:
    """The parsed command line; a usage error is a :class:`ConfigError` pointing to ``--help``."""
    try:
        return build_parser().parse_args(argv)
    except ConfigError as error:
        raise ConfigError(error.problem, fix=f"`{prog} --help` lists the options and their values") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m interp.cli -- <command> ...` passes the separator on
        argv = argv[1:]
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")
    prog = " ".join(["interp", *[a for a in argv if not a.startswith("-")][:1]])
    try:
        args = parse(argv, prog)
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {describe(error, debug)}", file=sys.stderr)
        return exit_status(error)


def describe(error: BaseException, debug: bool = False) -> str:
    """One line saying what went wrong and what to do."""
    if isinstance(error, InterpError):
        text = str(error)
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
