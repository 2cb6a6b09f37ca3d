"""Everyday backups with Invoke, over the folder pairs of an INI file.

    inv backup --pair photos          # one pair, once
    inv backup-all                    # every pair, once (the crontab line)
    inv watch --interval 0.5 --max 20 # every pair every 0.5 h, 20 cycles (or until Ctrl+C)
    inv status                        # when did each pair last succeed?
    inv pairs                         # list the pairs and check them, running nothing
    inv verify --pair photos          # compare replica and source byte for byte
    inv versions --pair photos --path notes.txt             # the kept versions of a file
    inv restore --pair photos --at 2026-03-01_030000 --to /tmp/photos   # the state before that run

Every task reads ``--ini FILE`` (default: ``$SYNCHRO_CONFIG``, else
``backups.ini`` in the current folder). The same tasks run as ``inv TASK`` in
a clone (the ``tasks.py`` at its top imports this collection) and, from any
folder, as ``synchro-tasks TASK`` (:mod:`synchro.faces.taskprogram`). The
tasks only translate flags (read by :mod:`synchro.faces.taskargs`): the work
is done by :mod:`synchro.faces.runner`. Exit codes are the ``synchro``
command's (README, "Exit codes").
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from synchro.errors import ConfigError, ExitCode, SynchroError, Terminated
from synchro.faces import runner
from synchro.faces.config import Config, PairConfig, config_path, load_config
from synchro.faces.pipes import closed_pipe_ends_output, settle
from synchro.faces.progress import wanted
from synchro.faces.signals import sigterm_as_interrupt
from synchro.faces.taskargs import TaskCollection, TypedTask, Value
from synchro.features.status import format_json, format_table
from synchro.options import DeleteLimit, parse_interval, parse_max_delete


def _text(value: str) -> str:
    return value


def _hours(value: str) -> float:
    hours = parse_interval(value.strip())
    if hours <= 0:
        raise ConfigError(f"expected a number of hours > 0, got {value!r}")
    return hours


def _cycles(value: str) -> int:
    try:
        cycles = int(value)
    except ValueError:
        raise ConfigError(f"expected a whole number of cycles, got {value!r}") from None
    if cycles < 0:
        raise ConfigError(f"expected a number of cycles >= 0 (0: until stopped), got {value!r}")
    return cycles


class SynchroTask(TypedTask):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # A reader that stopped reading (``inv status | head``) ends the
        # output quietly; the task itself runs to its end (see synchro.faces.pipes).
        try:
            with closed_pipe_ends_output():
                return super().__call__(*args, **kwargs)
        finally:
            settle()

    # No short flag for --ini: -c and -f, before or after a task name, are Invoke's own.
    short_flags: ClassVar[Mapping[str, str]] = {
        "pair": "p",
        "interval": "i",
        "max_": "m",
        "json": "j",
        "verbose": "v",
        "quiet": "q",
    }
    values: ClassVar[Mapping[str, Value]] = {
        "pair": Value("NAME", _text),
        "ini": Value("FILE", _text),
        "interval": Value("HOURS", _hours),
        "max_": Value("INT", _cycles, kind=int),
        "max_delete": Value("N|P%", parse_max_delete),
        "path": Value("PATH", _text),
        "at": Value("YYYY-MM-DD_HHMMSS", _text),
        "to": Value("FOLDER", _text),
    }


INI_HELP = "the INI file of pairs (default: $SYNCHRO_CONFIG, else backups.ini in the current folder)"
MIRROR_HELP = {
    "ini": INI_HELP,
    "dry-run": "print and log what would be done; change nothing",
    "checksum": "also compare content when size and time match (reads both files)",
    "max-delete": "refuse a run that deletes more than N files or P% of the replica's files, "
    "instead of each pair's max_delete (100% lifts the limit)",
    "verbose": "also list untouched entries",
    "quiet": "print only what needs a person, on stderr: the problem lines of each run and the result "
    "of pairs that failed; a clean run prints nothing (the log is still written)",
}


@contextmanager
def _user_errors() -> Iterator[None]:
    """User errors and interruptions end with one line and the command's exit code."""
    try:
        with sigterm_as_interrupt():
            yield
    except SynchroError as error:
        raise Exit(f"synchro: error: {error}", code=int(error.exit_code)) from None
    except Terminated:
        raise Exit("synchro: terminated", code=int(ExitCode.TERMINATED)) from None
    except KeyboardInterrupt:
        # Invoke would exit 1 on Ctrl+C; the command's code is 130.
        raise Exit("synchro: interrupted", code=int(ExitCode.INTERRUPTED)) from None


def _load(ini: str, *, partial: bool = False) -> Config:
    return load_config(config_path(ini), partial=partial)


def _settings(
    dry_run: bool, checksum: bool, verbose: bool, quiet: bool, max_delete: DeleteLimit | None
) -> runner.RunSettings:
    if verbose and quiet:
        raise Exit("synchro: error: --verbose and --quiet exclude each other", code=int(ExitCode.USAGE))
    return runner.RunSettings(
        dry_run, checksum, verbose, quiet, progress=wanted(sys.stdout, quiet), max_delete=max_delete
    )


def _problems(config: Config) -> int:
    """Say on stderr which sections are no usable pair; the exit code that follows from them."""
    for problem in config.problems:
        print(f"synchro: error: {problem.error}", file=sys.stderr)
    return int(ExitCode.USAGE) if config.problems else int(ExitCode.OK)


def _finish(results: Sequence[runner.PairResult], quiet: bool) -> None:
    """One line per pair; with --quiet only the failures, on stderr. Exit with the worst code."""
    code = runner.worst_code(results)
    with closed_pipe_ends_output():  # the exit code stays the runs'
        for result in results:
            if not quiet:
                print(result.line)
            elif result.exit_code:
                print(result.line, file=sys.stderr)
    if code:
        raise Exit(code=code)


@task(klass=SynchroTask, help={"pair": "the name of the pair: its [section] in the INI file", **MIRROR_HELP})
def backup(
    c: Context,
    pair: str = "",
    ini: str = "",
    dry_run: bool = False,
    checksum: bool = False,
    max_delete: DeleteLimit | None = None,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Mirror one pair of the INI file once (inv backup --pair NAME)."""
    settings = _settings(dry_run, checksum, verbose, quiet, max_delete)
    with _user_errors():
        pairs = _load(ini)
        if not pair:
            raise Exit(
                f"synchro: error: give --pair NAME; the pairs are: {', '.join(pairs.names)}",
                code=int(ExitCode.USAGE),
            )
        results = runner.backup([pairs.pair(pair)], settings)
    _finish(results, quiet)


@task(klass=SynchroTask, name="backup-all", help=MIRROR_HELP)
def backup_all(
    c: Context,
    ini: str = "",
    dry_run: bool = False,
    checksum: bool = False,
    max_delete: DeleteLimit | None = None,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Mirror every pair once, even when one fails; exit with the worst code."""
    settings = _settings(dry_run, checksum, verbose, quiet, max_delete)
    with _user_errors():
        results = runner.backup(_load(ini).pairs, settings)
    _finish(results, quiet)


@task(
    klass=SynchroTask,
    help={
        "pair": "watch only this pair (default: every pair)",
        "interval": "hours between cycles for every pair, such as 0.5 "
        "(default: each pair's interval; minimum 0.25)",
        "max": "stop after this many cycles of each pair, without waiting after the last "
        "(default 0: until Ctrl+C)",
        **MIRROR_HELP,
    },
)
def watch(
    c: Context,
    pair: str = "",
    interval: float | None = None,
    max_: int = 0,
    ini: str = "",
    dry_run: bool = False,
    checksum: bool = False,
    max_delete: DeleteLimit | None = None,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Mirror the pairs again and again, each at its interval, until Ctrl+C or --max."""
    settings = _settings(dry_run, checksum, verbose, quiet, max_delete)
    with _user_errors():
        pairs = _load(ini).select(pair)
        results = runner.watch(pairs, settings, interval=interval, max_cycles=max_ or None)
    _finish(results, quiet)


@task(klass=SynchroTask, help={"json": "print JSON for monitoring scripts", "ini": INI_HELP})
def status(c: Context, json: bool = False, ini: str = "") -> None:
    """Show each pair's last run, how long ago, its result, and the last success (STALE if old).

    A pair whose section of the INI file is wrong is shown as such, its
    error on stderr, and the exit code is 2; the other pairs are shown as usual.
    """
    with _user_errors():
        config = _load(ini, partial=True)
        rows = runner.status_rows(config, datetime.now().astimezone())
    print(format_json(rows) if json else format_table(rows))
    code = _problems(config)
    if code:
        raise Exit(code=code)


@task(klass=SynchroTask, help={"ini": INI_HELP})
def pairs(c: Context, ini: str = "") -> None:
    """List the pairs of the INI file and check each one, running nothing; exit 2 if one is wrong."""
    with _user_errors():
        checks = runner.check(_load(ini, partial=True))
    with closed_pipe_ends_output():  # the exit code stays the check's
        print("\n".join(runner.describe(item) for item in checks))
    if any(not isinstance(item, runner.PairCheck) or item.problem for item in checks):
        raise Exit(code=int(ExitCode.USAGE))


def _one_pair(ini: str, pair: str) -> PairConfig:
    pairs = _load(ini)
    if not pair:
        raise ConfigError(f"give --pair NAME; the pairs are: {', '.join(pairs.names)}")
    return pairs.pair(pair)


PAIR_HELP = "the name of the pair: its [section] in the INI file"


@task(klass=SynchroTask, help={"pair": PAIR_HELP, "ini": INI_HELP})
def verify(c: Context, pair: str = "", ini: str = "") -> None:
    """Compare a pair's replica with its source byte for byte; list every difference, change nothing.

    Exit 0 when the replica is exact, 1 when it differs.
    """
    with _user_errors():
        chosen = _one_pair(ini, pair)
        report = runner.verify(chosen, console=sys.stdout, progress=wanted(sys.stdout, False))
    if report.exit_code:
        raise Exit(code=int(report.exit_code))


@task(
    klass=SynchroTask,
    help={
        "pair": PAIR_HELP,
        "path": "restore only this file or folder (relative to the pair, such as docs/notes.txt)",
        "at": "the state as of this run (YYYY-MM-DD_HHMMSS, as inv versions lists them), from the kept versions",
        "to": "the folder to restore into (created if missing); paths below the pair are kept",
        "force": "replace entries that exist in --to; needed to restore into the source itself",
        "verbose": "list each restored entry",
        "ini": INI_HELP,
    },
)
def restore(
    c: Context,
    pair: str = "",
    path: str = "",
    at: str = "",
    to: str = "",
    force: bool = False,
    verbose: bool = False,
    ini: str = "",
) -> None:
    """Copy a pair (or --path of it) from its replica, or as of an earlier run (--at), into --to FOLDER."""
    with _user_errors():
        chosen = _one_pair(ini, pair)
        report = runner.restore(chosen, to=to, path=path, at=at, force=force, verbose=verbose)
    if report.exit_code:
        raise Exit(code=int(report.exit_code))


@task(
    klass=SynchroTask,
    help={
        "pair": PAIR_HELP,
        "path": "list the versions of this file or folder (relative to the pair); default: every run folder",
        "ini": INI_HELP,
    },
)
def versions(c: Context, pair: str = "", path: str = "", ini: str = "") -> None:
    """List the kept versions of a pair (or of --path) with the time and size of each."""
    with _user_errors():
        print(runner.versions_table(_one_pair(ini, pair), path))


# The collection: `inv` finds it through the tasks.py at the top of a clone, and
# `synchro-tasks` runs it from any folder.
namespace = TaskCollection(backup, backup_all, watch, status, pairs, verify, restore, versions)
