"""Everyday backups with Invoke, over the folder pairs of an INI file.

    inv backup --pair photos          # one pair, once
    inv backup-all                    # every pair, once (the crontab line)
    inv watch --interval 0.5 --max 20 # every pair every 0.5 h, 20 cycles (or until Ctrl+C)
    inv status                        # when did each pair last succeed?
    inv pairs                         # list the pairs and check them, running nothing
    inv verify --pair photos          # compare replica and source byte for byte
    inv versions --pair photos --path notes.txt             # the kept versions of a file
    inv restore --pair photos --at 2026-03-01_030000 --to /tmp/photos   # the state before that run

Every task reads ``--config PATH`` (default: ``$SYNCHRO_CONFIG``, else
``backups.ini`` in the current folder); give it after the task name, since
Invoke's own ``--config`` before it means Invoke's configuration file. The
tasks only translate flags: the work is done by :mod:`synchro.faces.runner`.
Exit codes are the ``synchro`` command's (README, "Exit codes").
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task

from synchro.errors import ConfigError, ExitCode, SynchroError, Terminated
from synchro.faces import runner
from synchro.faces.config import Config, PairConfig, config_path, load_config
from synchro.faces.progress import wanted
from synchro.faces.signals import sigterm_as_interrupt
from synchro.features.status import format_json, format_table

# Short flags are chosen, not left to Invoke: it would give --checksum "-h"
# (once --config has "-c"), which would hide "inv backup -h" (help).
SHORT_FLAGS = {
    "pair": "p",
    "config": "c",
    "interval": "i",
    "max_": "m",
    "json": "j",
    "verbose": "v",
    "quiet": "q",
}


class SynchroTask(Task[Any]):
    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        long_name = opts["names"][0]
        opts["names"] = [long_name, SHORT_FLAGS[name]] if name in SHORT_FLAGS else [long_name]
        return opts


CONFIG_HELP = "the INI file of pairs (default: $SYNCHRO_CONFIG, else backups.ini in the current folder)"
MIRROR_HELP = {
    "config": CONFIG_HELP,
    "dry-run": "print and log what would be done; change nothing",
    "checksum": "also compare content when size and time match (reads both files)",
    "verbose": "also list untouched entries",
    "quiet": "print nothing but the result of pairs that failed (the log is still written)",
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


def _load(config: str) -> Config:
    return load_config(config_path(config))


def _settings(dry_run: bool, checksum: bool, verbose: bool, quiet: bool) -> runner.RunSettings:
    if verbose and quiet:
        raise Exit("synchro: error: --verbose and --quiet exclude each other", code=int(ExitCode.USAGE))
    return runner.RunSettings(dry_run, checksum, verbose, quiet, progress=wanted(sys.stdout, quiet))


def _finish(results: Sequence[runner.PairResult], quiet: bool) -> None:
    """One line per pair; with --quiet only the failures, on stderr. Exit with the worst code."""
    for result in results:
        if not quiet:
            print(result.line)
        elif result.exit_code:
            print(result.line, file=sys.stderr)
    code = runner.worst_code(results)
    if code:
        raise Exit(code=code)


@task(klass=SynchroTask, help={"pair": "the name of the pair: its [section] in the INI file", **MIRROR_HELP})
def backup(
    c: Context,
    pair: str = "",
    config: str = "",
    dry_run: bool = False,
    checksum: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Mirror one pair of the INI file once (inv backup --pair NAME)."""
    settings = _settings(dry_run, checksum, verbose, quiet)
    with _user_errors():
        pairs = _load(config)
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
    config: str = "",
    dry_run: bool = False,
    checksum: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Mirror every pair once, even when one fails; exit with the worst code."""
    settings = _settings(dry_run, checksum, verbose, quiet)
    with _user_errors():
        results = runner.backup(_load(config).pairs, settings)
    _finish(results, quiet)


@task(
    klass=SynchroTask,
    help={
        "pair": "watch only this pair (default: every pair)",
        "interval": "hours between cycles for every pair (default: each pair's interval; minimum 0.25)",
        "max": "stop after N cycles of each pair, without waiting after the last (default: until Ctrl+C)",
        **MIRROR_HELP,
    },
)
def watch(
    c: Context,
    pair: str = "",
    interval: str = "",
    max_: str = "",
    config: str = "",
    dry_run: bool = False,
    checksum: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Mirror the pairs again and again, each at its interval, until Ctrl+C or --max."""
    settings = _settings(dry_run, checksum, verbose, quiet)
    with _user_errors():
        # Strings, parsed by synchro: Invoke would answer "--max abc" with a traceback.
        hours, cycles = runner.watch_limits(interval, max_)
        pairs = _load(config).select(pair)
        results = runner.watch(pairs, settings, interval=hours, max_cycles=cycles)
    _finish(results, quiet)


@task(klass=SynchroTask, help={"json": "print JSON for monitoring scripts", "config": CONFIG_HELP})
def status(c: Context, json: bool = False, config: str = "") -> None:
    """Show each pair's last run, how long ago, its result, and the last success (STALE if old)."""
    with _user_errors():
        rows = runner.status_rows(_load(config), datetime.now().astimezone())
    print(format_json(rows) if json else format_table(rows))


@task(klass=SynchroTask, help={"config": CONFIG_HELP})
def pairs(c: Context, config: str = "") -> None:
    """List the pairs of the INI file and check each one, running nothing."""
    with _user_errors():
        checks = runner.check(_load(config))
    print("\n".join(runner.describe(item) for item in checks))
    if any(item.problem for item in checks):
        raise Exit(code=int(ExitCode.USAGE))


def _one_pair(config: str, pair: str) -> PairConfig:
    pairs = _load(config)
    if not pair:
        raise ConfigError(f"give --pair NAME; the pairs are: {', '.join(pairs.names)}")
    return pairs.pair(pair)


PAIR_HELP = "the name of the pair: its [section] in the INI file"


@task(klass=SynchroTask, help={"pair": PAIR_HELP, "config": CONFIG_HELP})
def verify(c: Context, pair: str = "", config: str = "") -> None:
    """Compare a pair's replica with its source byte for byte; list every difference, change nothing.

    Exit 0 when the replica is exact, 1 when it differs.
    """
    with _user_errors():
        chosen = _one_pair(config, pair)
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
        "config": CONFIG_HELP,
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
    config: str = "",
) -> None:
    """Copy a pair (or --path of it) from its replica, or as of an earlier run (--at), into --to FOLDER."""
    with _user_errors():
        chosen = _one_pair(config, pair)
        report = runner.restore(chosen, to=to, path=path, at=at, force=force, verbose=verbose)
    if report.exit_code:
        raise Exit(code=int(report.exit_code))


@task(
    klass=SynchroTask,
    help={
        "pair": PAIR_HELP,
        "path": "list the versions of this file or folder (relative to the pair); default: every run folder",
        "config": CONFIG_HELP,
    },
)
def versions(c: Context, pair: str = "", path: str = "", config: str = "") -> None:
    """List the kept versions of a pair (or of --path) with the time and size of each."""
    with _user_errors():
        print(runner.versions_table(_one_pair(config, pair), path))
