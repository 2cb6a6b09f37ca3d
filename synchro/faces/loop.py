"""Ongoing mode: run cycles every so many hours with :mod:`schedule`.

A private :class:`schedule.Scheduler` is used (never the module's global
one), with one job per pair: :func:`run_every` is the command's single
pair, :func:`run_jobs` the ``watch`` task's several pairs, each at its own
interval. Every job runs once at the start; a job stops after
``max_cycles`` cycles, and the loop returns as soon as no job is left,
without waiting after the last cycle. Waiting is done by an injectable
``sleep`` so tests never wait for an interval.

Jobs run one after the other in this thread, so a cycle never overlaps the
next cycle of its pair: ``schedule`` computes a job's next run when the job
returns, and a long cycle only delays what is due meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import schedule

T = TypeVar("T")
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Job(Generic[T]):
    """A cycle to run every ``interval_hours``."""

    interval_hours: float
    cycle: Callable[[], T]


def run_jobs(
    jobs: Sequence[Job[T]],
    *,
    max_cycles: int | None,
    sleep: Sleep = time.sleep,
) -> list[T | None]:
    """Run every job now and then at its interval; return each job's last result."""
    scheduler = schedule.Scheduler()
    # The latest result only, per job: a loop may run for years.
    last: list[T | None] = [None] * len(jobs)

    def make(index: int, job: Job[T]) -> Callable[[], schedule.CancelJob | None]:
        done = 0

        def run() -> schedule.CancelJob | None:
            nonlocal done
            last[index] = job.cycle()
            done += 1
            if max_cycles is not None and done >= max_cycles:
                return schedule.CancelJob()
            return None

        return run

    for index, job in enumerate(jobs):
        # schedule counts whole seconds; the interval is never below a
        # quarter of an hour outside tests.
        scheduler.every(max(1, round(job.interval_hours * 3600))).seconds.do(make(index, job))
    scheduler.run_all()
    while scheduler.jobs:
        idle = scheduler.idle_seconds
        if idle is not None and idle > 0:
            sleep(idle)
        scheduler.run_pending()
    return last


def run_every(
    interval_hours: float,
    cycle: Callable[[], T],
    *,
    max_cycles: int | None,
    sleep: Sleep = time.sleep,
) -> T | None:
    """Run ``cycle`` now and then every ``interval_hours``; return its last result."""
    return run_jobs([Job(interval_hours, cycle)], max_cycles=max_cycles, sleep=sleep)[0]
