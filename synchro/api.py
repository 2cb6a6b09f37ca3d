"""The Python API: :class:`Synchro` (configure, run, close) and :func:`mirror`.

Example::

    from synchro import Synchro

    with Synchro("/var/log/backups") as s:
        s.configure("~/Pictures", "/mnt/backup/Pictures")
        report = s.run()                    # one cycle
        print(report.counts, report.exit_code)
        s.configure("~/Documents", "/mnt/backup/Documents", "O", interval=4, max=10)
        s.run()                             # every 4 hours, 10 cycles
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from .engine import Hooks, run_cycle
from .errors import ConfigError
from .log import DailyLog
from .options import (
    MIN_INTERVAL_HOURS,
    MirrorOptions,
    make_options,
    parse_interval,
    parse_max_cycles,
)
from .report import Report
from .roots import check_roots

if TYPE_CHECKING:
    from .loop import Sleep


@dataclass(frozen=True)
class Pair:
    source: str
    replica: str
    ongoing: bool
    interval: float  # hours
    max_cycles: int | None
    options: MirrorOptions


class Synchro:
    """Mirror folder pairs into one daily log under ``logpath/LOGS``.

    ``console`` receives the log lines too (default: standard output; ``quiet``
    silences it). ``clock`` and ``sleep`` are injectable so that tests never
    wait; ``hooks`` let tests change the trees between plan and write.
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
    ) -> None:
        self.logpath = os.fspath(logpath)
        self.verbose = verbose
        self._sleep = sleep
        self._hooks = hooks
        stream = None if quiet else (console if console is not None else sys.stdout)
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
        **options: object,
    ) -> Pair:
        """Check and remember a pair; raise :class:`ConfigError` (and log it) if it is bad.

        A bad pair leaves the object usable: configure again.
        """
        try:
            opts = make_options(**options)
            check_roots(source, replica, self.log.folder, create_replica=opts.create_replica)
            hours = parse_interval(interval)
        except ConfigError as error:
            # The caller shows the error (the command prints it on stderr).
            self.log.write(f"ERROR {error}", console=False)
            self.log.flush()
            raise
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
        except KeyboardInterrupt:
            self.log.write("INTERRUPTED ongoing mode stopped by the user")
            self.close_api()
            raise
        assert self.last_report is not None
        return self.last_report

    def _cycle(self, pair: Pair, mode: str) -> Report:
        report = run_cycle(
            pair.source,
            pair.replica,
            pair.options,
            self.log,
            mode=mode,
            verbose=self.verbose,
            hooks=self._hooks,
        )
        self.last_report = report
        return report

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
    **options: object,
) -> Report:
    """Mirror once and return the report; no scheduling, no console output.

    With ``logpath`` the run is written to ``logpath/LOGS/LOG-YYYY-MM-DD.txt``
    like any other; without it no log file is written (the report, and the
    ``synchro`` logger of :mod:`logging`, carry everything). Raises
    :class:`ConfigError` for invalid options; a bad pair is a report with
    exit code 2, as on the command line.
    """
    opts = make_options(**options)
    log = DailyLog(logpath, console)
    try:
        return run_cycle(source, replica, opts, log, verbose=verbose, hooks=hooks)
    finally:
        log.close()
