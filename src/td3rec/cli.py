"""The ``td3rec`` command line: one sub-command per module in :mod:`td3rec.commands`.

Every sub-command module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
User mistakes raise :class:`td3rec.errors.UserError`; they are printed as one line and exit with code 2. Ctrl-C and
SIGTERM end a command with one line and exit code 130 / 143 (:mod:`td3rec.utils.signals`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from td3rec import __version__
from td3rec.errors import UserError
from td3rec.utils import signals
from td3rec.utils.run_folder import release_locks

#: sub-command modules, in the order ``td3rec --help`` lists them
COMMANDS = ["datasets", "stats", "train", "distill", "evaluate", "export", "inspect", "proxy", "benchmark", "report"]

log = logging.getLogger("td3rec")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command attached."""
    parser = argparse.ArgumentParser(
        prog="td3rec",
        description="Distill sequential-recommendation datasets into synthetic sequence summaries (TD3) "
        "and evaluate them honestly.",
    )
    add_global_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"td3rec.commands.{name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        add_global_flags(p, sub_command=True)
        p.set_defaults(_run=module.run)
    return parser


def add_global_flags(parser: argparse.ArgumentParser, sub_command: bool = False) -> None:
    """``--version``, ``-v`` and ``-q``: on the top-level parser and on every sub-command's, so that they work
    before or after the sub-command (``td3rec -v stats ml-100k`` = ``td3rec stats ml-100k -v``).

    On a sub-command an absent flag sets nothing (``argparse.SUPPRESS``), so it cannot undo the same flag given
    before the sub-command.
    """
    default = {"default": argparse.SUPPRESS} if sub_command else {}
    group = parser.add_argument_group("global options (before or after the sub-command)") if sub_command else parser
    group.add_argument("--version", action="version", version=f"td3rec {__version__}")
    group.add_argument("-v", "--verbose", action="store_true", help="show debug logging", **default)
    group.add_argument("-q", "--quiet", action="store_true", help="only show warnings and errors", **default)


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Concise logging to stderr: ``td3rec: message`` (debug level shows the logger name)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    fmt = "%(name)s %(levelname)s: %(message)s" if verbose else "td3rec: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``td3rec`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for re-launching (--nproc)
    configure_logging(args.verbose, args.quiet)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    with signals.handle_signals():  # Ctrl-C and SIGTERM: one line, exit 130 / 143 (td3rec.utils.signals)
        try:
            return int(args._run(args) or 0)
        except UserError as err:
            if signals.received() is not None:  # (a worker whose peers stopped on the signal: part of the stop)
                return _interrupted(args.command, signals.received())
            print(f"td3rec {args.command}: error: {err}", file=sys.stderr)
            return err.exit_code
        except KeyboardInterrupt as err:
            return _interrupted(args.command, getattr(err, "signum", signal.SIGINT))
        except Exception:
            if signals.received() is not None:  # e.g. a collective failing because another process stopped
                return _interrupted(args.command, signals.received())
            raise
        finally:
            release_locks()  # the output folders this command locked (td3rec.utils.run_folder)


def _interrupted(command: str, signum: int) -> int:
    """Print the one line of a command stopped by ``signum`` (none in a launched worker); its exit code."""
    line = signals.interruption_line(command, signum)
    if line is not None:
        print(line, file=sys.stderr)
    return signals.exit_code(signum)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
