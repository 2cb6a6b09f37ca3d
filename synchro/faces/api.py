"""The Python API: :class:`Synchro` (configure, run, close) and :func:`mirror`.

Example::

    from synchro import Synchro

    with Synchro("/var/log/backups") as s:
        s.configure("~/Pictures", "/mnt/backup/Pictures")
        report = s.run()                    # one cycle
        print(report.counts, report.exit_code)
        s.configure("~/Documents", "/mnt/backup/Documents", "O", interval=4, max=10)
        s.run()                             # every 4 hours, 10 cycles
        s.configure("~/Notes", "/mnt/backup/Notes", versions="/mnt/backup/VERSIONS/Notes",
                    keep_versions="30d,10")  # old versions kept 30 days, and the last 10 runs
        s.run()
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, TextIO, cast

from ..errors import ConfigError, stop_code, stopped_by
from ..features.status import RunRecord, StatusError, record_run
from ..options import (
    MIN_INTERVAL_HOURS,
    MirrorOptions,
    make_options,
    parse_interval,
    parse_max_cycles,
    pattern_warnings,
)
from ..pipeline.engine import Hooks, ProgressFactory, run_cycle
from ..pipeline.log import DailyLog, escape
from ..pipeline.report import Report
from ..pipeline.roots import check_roots, resolve

if TYPE_CHECKING:
    from .loop import Sleep


class Pair(NamedTuple):
    """A checked pair, as :meth:`Synchro.configure` returns it."""

    source: str
    replica: str
    ongoing: bool
    interval: float  # hours
    max_cycles: int | None
    options: MirrorOptions
    name: str | None = None  # the key of its record in LOGS/status.json

    @property
    def status_key(self) -> str:
        """The pair's name, or its replica's resolved path when it has none."""
        return self.name or resolve(self.replica)


class Synchro:
    """Mirror folder pairs into one daily log under ``logpath/LOGS``.

    ``console`` receives the log lines too (default: standard output). With
    ``quiet`` it receives only the lines that need a person (failures,
    refusals, warnings, the summary of a run that did not succeed; see
    :mod:`synchro.faces.quiet`), by default on standard error. ``progress`` draws
    a progress bar on the console during long runs (the caller checks that
    it is a terminal; never with ``quiet``). ``clock`` and ``sleep`` are
    injectable so that tests never wait; ``hooks`` let tests change the
    trees between plan and write. Each cycle's outcome is also
    recorded in ``LOGS/status.json`` (see :mod:`synchro.features.status`).
    """

    def __init__(
        self,
        logpath: str | os.PathLike[str] = ".",
        *,
        verbose: bool = False,
        quiet: bool = False,
        console: TextIO | None = None,
        clock: Callable[[], datetime] = datetime.now,
        sleep: Sleep = time.sleep,
        hooks: Hooks | None = None,
        progress: bool = False,
    ) -> None:
        self.logpath = os.fspath(logpath)
        self.verbose = verbose
        self._sleep = sleep
        self._hooks = hooks
        self._clock = clock
        stream: TextIO
        if quiet:
            from .quiet import AttentionConsole

            # The log only writes and flushes its console, which AttentionConsole does.
            stream = cast(TextIO, AttentionConsole(console if console is not None else sys.stderr))
        else:
            stream = console if console is not None else sys.stdout
        self._progress: ProgressFactory | None = None
        if progress and not quiet:
            from .progress import BarConsole  # tqdm itself only once a bar is drawn

            bars = BarConsole(stream)
            self._progress = bars
            # The log only writes and flushes its console, which BarConsole does.
            stream = cast(TextIO, bars)
        self.log = DailyLog(self.logpath, stream, clock)
        self.pair: Pair | None = None
        self.last_report: Report | None = None

    def configure(
        self,
        source: str | os.PathLike[str],
        replica: str | os.PathLike[str],
        mode: str = "s",
        interval: float = 24,
        max: float | int | None = None,  # noqa: A002 - the seed's name
        *,
        name: str | None = None,
        **options: object,
    ) -> Pair:
        """Check and remember a pair; raise :class:`ConfigError` (and log it) if it is bad.

        ``name`` is the key under which runs are recorded in the status file
        (default: the replica's path). A bad pair leaves the object usable:
        configure again.
        """
        try:
            opts = make_options(**options)
            check_roots(
                source, replica, self.log.folder, create_replica=opts.create_replica, versions=opts.versions
            )
            hours = parse_interval(interval)
        except ConfigError as error:
            # The caller shows the error (the command prints it on stderr).
            self.log.write(f"ERROR {error}", console=False)
            self.log.flush()
            raise
        for warning in pattern_warnings(opts.exclude):
            self.log.write(f"WARNING {escape(warning)}")
        ongoing = isinstance(mode, str) and mode.lower() == "o"
        if ongoing and hours < MIN_INTERVAL_HOURS:
            self.log.write(
                f"WARNING interval {hours:g} h is below the minimum; raised to {MIN_INTERVAL_HOURS:g} h"
            )
            hours = MIN_INTERVAL_HOURS
        self.pair = Pair(
            os.fspath(source),
            os.fspath(replica),
            ongoing,
            hours,
            parse_max_cycles(max),
            opts,
            name,
        )
        return self.pair

    def run(self) -> Report:
        """Run the configured pair: one cycle, or the ongoing loop. Returns the last report.

        Ctrl+C is logged as ``interrupted`` and the log closed, then
        :class:`KeyboardInterrupt` is raised again so that the calling script stops.
        """
        pair = self.pair
        if pair is None:
            raise ConfigError("nothing to run: call configure(source, replica) first")
        if not pair.ongoing:
            self.last_report = self._cycle(pair, "single")
            return self.last_report
        self.log.write(
            f"ONGOING every {pair.interval:g} h, "
            + (f"{pair.max_cycles} cycles" if pair.max_cycles else "until stopped")
        )
        from .loop import run_every  # schedule is imported only for ongoing mode

        try:
            run_every(
                pair.interval,
                lambda: self._cycle(pair, "ongoing"),
                max_cycles=pair.max_cycles,
                sleep=self._sleep,
            )
        except KeyboardInterrupt as stop:
            self.log.write(f"INTERRUPTED ongoing mode stopped by {stopped_by(stop)}")
            self.close_api()
            raise
        assert self.last_report is not None
        return self.last_report

    def _cycle(self, pair: Pair, mode: str) -> Report:
        started = self._clock()
        try:
            report = run_cycle(
                pair.source,
                pair.replica,
                pair.options,
                self.log,
                mode=mode,
                verbose=self.verbose,
                hooks=self._hooks,
                progress=self._progress,
                clock=self._clock,
            )
        except KeyboardInterrupt as stop:
            # The engine has logged it; the status must not keep claiming the
            # previous run as the last one.
            stopped = Report(
                pair.source,
                pair.replica,
                dry_run=pair.options.dry_run,
                exit_code=stop_code(stop),
                message="interrupted",
            )
            self.record(pair.status_key, stopped, started)
            raise
        self.record(pair.status_key, report, started)
        self.last_report = report
        return report

    def record(self, key: str, report: Report, started: datetime) -> None:
        """Record ``report`` (a run that began at ``started``) in the status file under ``key``.

        A status file that cannot be written is a ``WARNING`` line, never a
        failed backup: the mirror itself is done.
        """
        assert self.log.folder is not None  # a Synchro always has a log folder
        try:
            record_run(self.log.folder, key, RunRecord.from_report(report, started, self._clock()))
        except StatusError as error:
            self.log.write(f"WARNING {escape(str(error))}")
            self.log.flush()

    def close_api(self) -> None:
        """Write what is pending and close the log; calling it twice is harmless."""
        self.log.close()

    def __enter__(self) -> Synchro:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_api()


def mirror(
    source: str | os.PathLike[str],
    replica: str | os.PathLike[str],
    *,
    logpath: str | os.PathLike[str] | None = None,
    verbose: bool = False,
    console: TextIO | None = None,
    hooks: Hooks | None = None,
    clock: Callable[[], datetime] = datetime.now,
    **options: object,
) -> Report:
    """Mirror once and return the report; no scheduling, no console output.

    With ``logpath`` the run is written to ``logpath/LOGS/LOG-YYYY-MM-DD.txt``
    like any other; without it no log file is written (the report, and the
    ``synchro`` logger of :mod:`logging`, carry everything). Raises
    :class:`ConfigError` for invalid options; a bad pair is a report with
    exit code 2, as on the command line. ``clock`` dates the log lines and
    names the run's version folder (with ``versions=``).
    """
    opts = make_options(**options)
    log = DailyLog(logpath, console, clock)
    try:
        for warning in pattern_warnings(opts.exclude):
            log.write(f"WARNING {escape(warning)}")
        return run_cycle(source, replica, opts, log, verbose=verbose, hooks=hooks, clock=clock)
    finally:
        log.close()
