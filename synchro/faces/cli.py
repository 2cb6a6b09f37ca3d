"""The ``synchro`` command: translate arguments into a :class:`Synchro` run.

``synchro SOURCE REPLICA [INTERVAL [LOGPATH]] [options]``: ongoing every
INTERVAL hours until Ctrl+C (or ``--max`` cycles); ``--once`` runs one cycle;
``--verify`` compares the replica with the source and changes nothing.
Exit codes are :class:`synchro.errors.ExitCode` (documented in the README).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO, cast

from .. import __version__
from ..errors import ConfigError, ExitCode, SynchroError, Terminated
from .api import Synchro
from .pipes import settle
from .progress import wanted
from .signals import sigterm_as_interrupt

DESCRIPTION = """\
Mirror SOURCE into REPLICA: new and changed files are copied, removed ones
deleted, recursively. Without --once, a cycle runs every INTERVAL hours until
Ctrl+C. Every run is logged to LOGPATH/LOGS/LOG-YYYY-MM-DD.txt."""

EPILOG = """\
exit codes: 0 success, 1 some entries failed, 2 usage or configuration error,
3 refused by the deletion guard, 4 replica locked by another run,
130 interrupted (Ctrl+C), 143 terminated (SIGTERM);
with --verify: 0 the replica is exact, 1 it differs (each difference listed)"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: cron mails and scripts read it.
        self.exit(ExitCode.USAGE, f"synchro: error: {message} (see synchro -h)\n")


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it: $COLUMNS, the terminal, 80."""
    with contextlib.suppress(KeyError, ValueError):
        columns = int(os.environ["COLUMNS"])
        if columns > 0:
            return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def build_parser() -> argparse.ArgumentParser:
    # argparse is given the width: left to find it, it imports shutil (and
    # with it bz2, lzma and zlib), about 8 ms of each run's start. Found once,
    # not for each of the formatters argparse makes while arguments are added.
    width = _columns() - 2
    parser = _Parser(
        prog="synchro",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=width),
    )
    parser.add_argument("source", metavar="SOURCE", help="folder to back up")
    parser.add_argument(
        "replica", metavar="REPLICA", help="folder that becomes its mirror, or s3://BUCKET/PREFIX"
    )
    parser.add_argument(
        "interval",
        metavar="INTERVAL",
        nargs="?",
        type=float,
        default=24.0,
        help="hours between cycles in ongoing mode (default 24, minimum 0.25)",
    )
    parser.add_argument(
        "logpath",
        metavar="LOGPATH",
        nargs="?",
        default=".",
        help="folder that holds LOGS/ (default: the current folder)",
    )
    parser.add_argument("--once", action="store_true", help="run one cycle and exit with its code")
    parser.add_argument("--max", metavar="N", type=float, help="stop after N cycles (ongoing mode)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print and log what would be done; change nothing"
    )
    parser.add_argument(
        "--checksum", action="store_true", help="also compare content when size and time match"
    )
    parser.add_argument(
        "--exclude",
        metavar="PATTERN",
        action="append",
        default=[],
        help="leave out entries matching PATTERN (gitignore syntax, relative to SOURCE; repeatable)",
    )
    parser.add_argument(
        "--delete-excluded", action="store_true", help="delete excluded entries from the replica"
    )
    parser.add_argument(
        "--max-delete",
        metavar="N|P%",
        default=None,
        help="refuse a run that deletes more than N files or P%% of the replica's files "
        "(default 50%%, once at least 10 files; 100%% lifts the limit)",
    )
    parser.add_argument(
        "--modify-window",
        metavar="SECONDS",
        default=None,
        help="treat times this close as equal (default 0: the replica's own step, measured; FAT and exFAT need none)",
    )
    parser.add_argument("--create-replica", action="store_true", help="create REPLICA if it does not exist")
    parser.add_argument(
        "--s3-profile",
        metavar="NAME",
        default=None,
        help="the AWS profile of an s3:// replica (default: AWS_PROFILE or the AWS_* variables)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        default=None,
        help="give up on an sftp:// replica's server after SECONDS without an answer (default 30)",
    )
    parser.add_argument(
        "--versions",
        metavar="PATH",
        default=None,
        help="before overwriting or deleting a replica entry, move it to PATH/YYYY-MM-DD_HHMMSS/ "
        "(a folder outside SOURCE and REPLICA)",
    )
    parser.add_argument(
        "--keep-versions",
        metavar="30d|10|30d,10",
        default=None,
        help="prune version folders older than 30 days and/or beyond the 10 newest "
        "(a folder is kept while either rule keeps it; default: keep all)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare REPLICA with SOURCE byte for byte, list every difference, change nothing",
    )
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="also list untouched entries")
    noise.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only what needs a person (failures, refusals, warnings, the summary of a run "
        "that did not exit 0), on standard error; a clean run prints nothing (the log is still written)",
    )
    parser.add_argument("--version", action=_Version)
    return parser


class _Version(argparse.Action):
    """``--version``: the version and the state of the compiled modules.

    Found only when asked: it reads and hashes their C sources, which no
    run needs to do twice.
    """

    def __init__(self, option_strings: Sequence[str], dest: str) -> None:
        super().__init__(
            option_strings,
            argparse.SUPPRESS,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show the version, and whether the compiled scan and copy are in use, and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> NoReturn:
        from ..endpoints.local.compiled import describe

        print(f"synchro {__version__} ({describe()})")
        parser.exit()


def command() -> NoReturn:
    """The ``synchro`` command (and ``python -m synchro``): :func:`main`, then exit.

    ``gc.freeze()`` first: at exit, Python's cyclic garbage collector would
    otherwise traverse every object of the hundred-odd modules a run
    imported, for nothing, as the process ends (10-20 ms here, several
    percent of a no-op run). Objects are still freed as usual.
    """
    try:
        code = main()
    except BrokenPipeError:
        # Printed into a pipe already closed (``synchro --version | true``):
        # only the help and the version print directly, a run's console
        # drops a closed pipe itself (see synchro.faces.pipes).
        code = ExitCode.OK
    finally:
        # A reader that stopped reading (``synchro ... | head``): a quiet end.
        settle()
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.keep_versions is not None and args.versions is None:
        parser.error("--keep-versions needs --versions PATH (where the versions are kept)")
    if args.once and args.max is not None:
        parser.error("--max counts the cycles of ongoing mode; --once runs one cycle: give one of them")
    # SIGTERM (systemd, kill) stops the run like Ctrl+C: temporaries removed,
    # the log says interrupted, the lock released.
    try:
        with sigterm_as_interrupt():
            return _verify(args) if args.verify else _run(args)
    except Terminated:
        _say("synchro: terminated")
        return ExitCode.TERMINATED
    except KeyboardInterrupt:
        _say("synchro: interrupted")
        return ExitCode.INTERRUPTED


def _say(message: str) -> None:
    """One line on standard error, which may itself be a closed pipe."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


def _verify(args: argparse.Namespace) -> int:
    from ..features.verify import run_verify  # only a verification needs it
    from ..options import make_options
    from .quiet import AttentionConsole

    try:
        options = make_options(
            exclude=args.exclude,
            delete_excluded=args.delete_excluded,
            modify_window=args.modify_window,
            s3_profile=args.s3_profile,
            timeout=args.timeout,
        )
        report = run_verify(
            args.source,
            args.replica,
            options,
            logpath=args.logpath,
            console=cast(TextIO, AttentionConsole(sys.stderr)) if args.quiet else sys.stdout,
            progress=wanted(sys.stdout, args.quiet),
        )
    except SynchroError as error:
        _say(f"synchro: error: {error}")
        return int(error.exit_code)
    return int(report.exit_code)


def _run(args: argparse.Namespace) -> int:
    # A bar only on a terminal: cron mail and pipes get the log lines alone.
    synchro = Synchro(
        args.logpath,
        verbose=args.verbose,
        quiet=args.quiet,
        progress=wanted(sys.stdout, args.quiet),
    )
    try:
        try:
            synchro.configure(
                args.source,
                args.replica,
                "s" if args.once else "o",
                interval=args.interval,
                max=args.max,
                checksum=args.checksum,
                exclude=args.exclude,
                delete_excluded=args.delete_excluded,
                dry_run=args.dry_run,
                max_delete=args.max_delete,
                modify_window=args.modify_window,
                create_replica=args.create_replica,
                s3_profile=args.s3_profile,
                timeout=args.timeout,
                versions=args.versions,
                keep_versions=args.keep_versions,
            )
        except ConfigError as error:
            _say(f"synchro: error: {error}")
            return ExitCode.USAGE
        return int(synchro.run().exit_code)
    finally:
        synchro.close_api()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
