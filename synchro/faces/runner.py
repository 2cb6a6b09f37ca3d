"""Run the pairs of an INI file: what the Invoke tasks (``tasks.py``) call.

Each pair runs through a :class:`~synchro.faces.api.Synchro` of its own (pairs may
log into different folders), so a run of the tasks is logged, recorded in
the status file and refused exactly as the same pair given to the
``synchro`` command. A pair is checked again before each cycle: a backup
drive mounted after ``inv watch`` started is picked up at its next cycle.

- :func:`backup`: every given pair once, one after the other; a pair that
  fails does not stop the others.
- :func:`watch`: every given pair at its own interval (:func:`synchro.faces.loop.run_jobs`).
- :func:`check`: whether each pair could run, without running it.
- :func:`status_rows`: what ``inv status`` shows.
- :func:`verify`, :func:`restore`, :func:`versions_table`: ``inv verify``,
  ``inv restore`` and ``inv versions`` (the work is in :mod:`synchro.features.verify`,
  :mod:`synchro.features.restore` and :mod:`synchro.features.versions`).

Ctrl+C (and SIGTERM, when the caller turns it into
:class:`~synchro.errors.Terminated`) propagates after the logs say so.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from ..errors import ConfigError, ExitCode, stopped_by
from ..features.restore import RestoreReport
from ..features.restore import restore as restore_into
from ..features.status import (
    PairRecord,
    PairStatus,
    human_bytes,
    pair_status,
    read_status,
    result_line,
    unusable_pair_status,
)
from ..features.verify import VerifyReport, run_verify
from ..features.versions import clean_path, format_versions, list_versions
from ..options import MIN_INTERVAL_HOURS, DeleteLimit, MirrorOptions, pattern_warnings
from ..pipeline.log import escape, log_dir
from ..pipeline.report import Report
from ..pipeline.roots import check_roots, is_remote
from .api import Synchro
from .config import Config, PairConfig, PairProblem
from .loop import Job, Sleep, run_jobs
from .pipes import closed_pipe_ends_output


@dataclass(frozen=True)
class RunSettings:
    """The task flags that apply to every pair of a run."""

    dry_run: bool = False
    checksum: bool = False
    verbose: bool = False
    quiet: bool = False
    progress: bool = False
    # The deletion guard's limit for this run, instead of each pair's (None: the pair's).
    max_delete: DeleteLimit | None = None


@dataclass(frozen=True)
class PairResult:
    """A pair and its last cycle's report (``None``: it never ran)."""

    name: str
    report: Report | None

    @property
    def exit_code(self) -> int:
        return int(self.report.exit_code) if self.report is not None else int(ExitCode.OK)

    @property
    def line(self) -> str:
        if self.report is None:
            return f"{self.name}: did not run"
        return result_line(self.name, self.report)


def worst_code(results: Sequence[PairResult]) -> int:
    """The highest exit code: any failure outranks success, an interruption everything."""
    return max((result.exit_code for result in results), default=int(ExitCode.OK))


def _option_keywords(options: MirrorOptions) -> dict[str, object]:
    # Already checked values; make_options accepts them as they are.
    return options._asdict()


class _PairRunner:
    """One pair, its Synchro (its log), and how to run one cycle of it."""

    def __init__(
        self,
        pair: PairConfig,
        settings: RunSettings,
        console: TextIO | None,
        errors: TextIO,
        clock: Callable[[], datetime],
    ) -> None:
        self.pair = pair
        self._errors = errors
        self._clock = clock
        self.options = pair.options._replace(
            dry_run=settings.dry_run,
            checksum=pair.options.checksum or settings.checksum,
            max_delete=pair.options.max_delete if settings.max_delete is None else settings.max_delete,
        )
        self.synchro = Synchro(
            pair.logpath,
            verbose=settings.verbose,
            quiet=settings.quiet,
            console=console,
            clock=clock,
            progress=settings.progress,
        )

    def cycle(self) -> Report:
        pair = self.pair
        started = self._clock()
        try:
            self.synchro.configure(
                pair.source,
                pair.replica,
                "s",
                pair.interval,
                None,
                name=pair.name,
                **_option_keywords(self.options),
            )
        except ConfigError as error:
            # Logged by configure; recorded here so that `inv status` shows it.
            report = Report(
                pair.source,
                pair.replica,
                dry_run=self.options.dry_run,
                exit_code=ExitCode.USAGE,
                message=str(error),
            )
            self.synchro.record(pair.name, report, started)
            return report
        try:
            return self.synchro.run()
        except OSError as error:
            # The engine turns every problem of the trees into a report; what
            # escapes is the machine's (e.g. the log folder is not writable),
            # which may also stop the log, so it is said here. The other
            # pairs, and the next cycles, still run.
            message = f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
            print(f"synchro: [{escape(pair.name)}] {escape(message)}", file=self._errors, flush=True)
            return Report(pair.source, pair.replica, exit_code=ExitCode.FAILED, message=message)


def backup(
    pairs: Sequence[PairConfig],
    settings: RunSettings,
    *,
    console: TextIO | None = None,
    errors: TextIO | None = None,
    clock: Callable[[], datetime] = datetime.now,
) -> list[PairResult]:
    """Run each pair once, in order, even when one fails; return every result."""
    results = []
    for pair in pairs:
        runner = _PairRunner(pair, settings, console, errors or sys.stderr, clock)
        try:
            results.append(PairResult(pair.name, runner.cycle()))
        finally:
            runner.synchro.close_api()
    return results


def watch(
    pairs: Sequence[PairConfig],
    settings: RunSettings,
    *,
    interval: float | None = None,
    max_cycles: int | None = None,
    console: TextIO | None = None,
    errors: TextIO | None = None,
    clock: Callable[[], datetime] = datetime.now,
    sleep: Sleep = time.sleep,
) -> list[PairResult]:
    """Run each pair every ``interval`` hours (default: its own) until ``max_cycles`` each.

    A failed cycle is logged and the loop goes on; the results are each
    pair's last cycle. Ctrl+C is logged in every log involved, then raised.
    """
    with ExitStack() as stack:
        runners = []
        for pair in pairs:
            runner = _PairRunner(pair, settings, console, errors or sys.stderr, clock)
            stack.callback(runner.synchro.close_api)
            runners.append(runner)
        jobs = [Job(_announce(runner, interval, max_cycles), runner.cycle) for runner in runners]
        try:
            reports = run_jobs(jobs, max_cycles=max_cycles, sleep=sleep)
        except KeyboardInterrupt as stop:
            for runner in _one_per_log(runners):
                runner.synchro.log.write(f"INTERRUPTED watch stopped by {stopped_by(stop)}")
            raise
        return [PairResult(runner.pair.name, report) for runner, report in zip(runners, reports, strict=True)]


def _announce(runner: _PairRunner, interval: float | None, max_cycles: int | None) -> float:
    """Log the pair's schedule; return its interval, raised to the minimum if needed."""
    hours = interval if interval else runner.pair.interval
    log = runner.synchro.log
    if hours < MIN_INTERVAL_HOURS:
        log.write(f"WARNING interval {hours:g} h is below the minimum; raised to {MIN_INTERVAL_HOURS:g} h")
        hours = MIN_INTERVAL_HOURS
    cycles = f"{max_cycles} cycle{'s' if max_cycles > 1 else ''}" if max_cycles else "until stopped"
    log.write(f"ONGOING watch pair={escape(runner.pair.name)} every {hours:g} h, {cycles}")
    return hours


def _one_per_log(runners: Sequence[_PairRunner]) -> list[_PairRunner]:
    """One runner per log folder, so that a shared log says a thing once."""
    seen: set[str] = set()
    chosen = []
    for runner in runners:
        folder = os.path.realpath(log_dir(runner.pair.logpath))
        if folder not in seen:
            seen.add(folder)
            chosen.append(runner)
    return chosen


@dataclass(frozen=True)
class PairCheck:
    """Whether a pair could run now (``problem`` empty), a note, and what looks wrong in it."""

    pair: PairConfig
    problem: str = ""
    note: str = ""
    warnings: tuple[str, ...] = ()


def check(config: Config) -> list[PairCheck | PairProblem]:
    """Check every pair as a run would, touching nothing; a section that is no pair stays as it is."""
    checks: list[PairCheck | PairProblem] = []
    for entry in config.entries:
        if isinstance(entry, PairProblem):
            checks.append(entry)
            continue
        warnings = tuple(pattern_warnings(entry.options.exclude))
        try:
            roots = check_roots(
                entry.source,
                entry.replica,
                log_dir(entry.logpath),
                create_replica=entry.options.create_replica,
                versions=entry.options.versions,
            )
        except ConfigError as error:
            checks.append(PairCheck(entry, problem=str(error), warnings=warnings))
            continue
        note = "" if roots.replica_exists else "the replica will be created by the first run"
        checks.append(PairCheck(entry, note=note, warnings=warnings))
    return checks


def describe(item: PairCheck | PairProblem) -> str:
    """A few lines about one pair, for ``inv pairs``."""
    if isinstance(item, PairProblem):
        return f"[{item.name}] error: {escape(item.error.detail)}"
    pair, options = item.pair, item.pair.options
    settings = [f"max_delete={options.max_delete}"]
    if options.exclude:
        settings.append("exclude=" + ",".join(options.exclude))
    settings += [name for name in ("checksum", "delete_excluded", "create_replica") if getattr(options, name)]
    if options.modify_window:
        settings.append(f"modify_window={options.modify_window:g}")
    if options.versions:
        settings.append(f"versions={escape(options.versions)} keep_versions={options.keep_versions}")
    verdict = f"error: {item.problem}" if item.problem else "ok" + (f" ({item.note})" if item.note else "")
    return "\n".join(
        [
            f"[{pair.name}] {verdict}",
            f"    source   {escape(pair.source)}",
            f"    replica  {escape(pair.replica)}",
            f"    logs     {escape(os.fspath(log_dir(pair.logpath)))}",
            f"    every    {max(pair.interval, MIN_INTERVAL_HOURS):g} h",
            f"    options  {' '.join(settings)}",
            *(f"    warning  {escape(warning)}" for warning in item.warnings),
        ]
    )


def status_rows(config: Config, now: datetime) -> list[PairStatus]:
    """Each pair's row at ``now``, from the status file of the log folder it uses.

    A section that is no usable pair (``load_config(partial=True)``) is a row
    that says so, and the other rows are as usual.
    """
    by_folder: dict[str, dict[str, PairRecord]] = {}
    rows = []
    for entry in config.entries:
        if isinstance(entry, PairProblem):
            rows.append(unusable_pair_status(entry.name, entry.error.detail, now))
            continue
        folder = os.fspath(log_dir(entry.logpath))
        if folder not in by_folder:
            by_folder[folder] = read_status(folder)
        rows.append(pair_status(entry.name, entry.interval, by_folder[folder].get(entry.name), now))
    return rows


# --- verify, restore, versions ------------------------------------------------------------------


def verify(pair: PairConfig, *, console: TextIO | None, progress: bool = False) -> VerifyReport:
    """Compare the pair's replica with its source, byte for byte (``inv verify``)."""
    return run_verify(
        pair.source, pair.replica, pair.options, logpath=pair.logpath, console=console, progress=progress
    )


def restore(
    pair: PairConfig,
    *,
    to: str,
    path: str = "",
    at: str = "",
    force: bool = False,
    verbose: bool = False,
    console: TextIO | None = None,
) -> RestoreReport:
    """Restore the pair, or ``path`` of it, as of ``at`` if given, into folder ``to`` (``inv restore``).

    ``console`` gets the ``FAILED`` lines, the ``RESTORED`` line of each
    entry when ``verbose``, and the summary.
    """
    if not to.strip():
        raise ConfigError("give --to FOLDER: where to restore (the source itself also needs --force)")
    out = console if console is not None else sys.stdout

    def emit(line: str) -> None:
        if verbose or not line.startswith("RESTORED "):
            # A reader that went away (``| head``) stops the lines, not the restore.
            with closed_pipe_ends_output():
                print(line, file=out)

    report = restore_into(
        pair.replica,
        os.path.expanduser(to),
        path=path,
        at=at.strip() or None,
        versions=pair.options.versions,
        source=pair.source,
        force=force,
        emit=emit,
        profile=pair.options.s3_profile,
        timeout=pair.options.timeout,
    )
    with closed_pipe_ends_output():
        print(report.summary(), file=out)
    return report


def versions_table(pair: PairConfig, path: str = "") -> str:
    """The kept versions of the pair, or of ``path``, oldest first (``inv versions``)."""
    kept = pair.options.versions
    if not kept:
        raise ConfigError(
            f"pair {pair.name!r} keeps no versions; give it a versions folder (versions = PATH)"
        )
    rel = clean_path(path)
    if is_remote(pair.replica):
        from ..features.history import remote_versions  # kept where the replica is

        options = pair.options
        rows = remote_versions(pair.replica, kept, rel, profile=options.s3_profile, timeout=options.timeout)
    else:
        rows = list_versions(kept, rel)
    if not rows:
        what = escape(rel) if rel else f"pair {pair.name!r}"
        return f"no kept versions of {what} in {escape(kept)}"
    return format_versions(rows, human_bytes)
