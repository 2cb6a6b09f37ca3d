"""Ongoing mode: run a cycle every ``interval`` hours with :mod:`schedule`.

A private :class:`schedule.Scheduler` is used (never the module's global
one). The first cycle runs at once; after the last of ``max_cycles`` the loop
returns without waiting. Waiting is done by an injectable ``sleep`` so
tests never wait for an interval; a cycle that runs long simply delays the
next one (``schedule`` never runs a job twice at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import schedule

T = TypeVar("T")
Sleep = Callable[[float], None]


def run_every(
    interval_hours: float,
    cycle: Callable[[], T],
    *,
    max_cycles: int | None,
    sleep: Sleep = time.sleep,
) -> T | None:
    """Run ``cycle`` now and then every ``interval_hours``; return its last result."""
    scheduler = schedule.Scheduler()
    last: list[T] = []  # the latest result only: a loop may run for years
    done = 0

    def job() -> schedule.CancelJob | None:
        nonlocal done
        last[:] = [cycle()]
        done += 1
        if max_cycles is not None and done >= max_cycles:
            return schedule.CancelJob()
        return None

    scheduler.every(max(1, round(interval_hours * 3600))).seconds.do(job)
    scheduler.run_all()
    while scheduler.jobs:
        idle = scheduler.idle_seconds
        if idle is not None and idle > 0:
            sleep(idle)
        scheduler.run_pending()
    return last[0] if last else None
