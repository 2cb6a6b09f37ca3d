"""Many runs at once on one daily log, while the clock crosses midnight.

Eight processes mirror eight pairs into one log folder at the same time,
each with an injected clock that strikes midnight at a different point of
its run. Every line must be whole, every run's lines must be in the order
the run wrote them (exactly what its own console showed), and each line
must sit in the file of its own date.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

from treeutil import assert_mirror, build, log_lines

from synchro import Synchro

PROCESSES = 8
FILES = 600  # more than one batch of lines per run (a batch is 512 lines)
LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [A-Z]+ \S")
EVE = datetime(2026, 12, 31, 23, 59, 59)


class MidnightClock:
    """23:59:59 for the first ``strike`` readings, then the next day, a second a reading."""

    def __init__(self, strike: int) -> None:
        self.strike = strike
        self.readings = 0

    def __call__(self) -> datetime:
        self.readings += 1
        if self.readings <= self.strike:
            return EVE
        return EVE + timedelta(seconds=1 + (self.readings - self.strike) // 100)


def _run(index: int, root: str) -> None:
    """One process: mirror pair ``index``; its console goes to console-INDEX.txt."""
    console = io.StringIO()
    with Synchro(root, console=console, clock=MidnightClock(strike=40 + 75 * index)) as api:
        api.configure(f"{root}/src{index}", f"{root}/rep{index}")
        code = int(api.run().exit_code)
    Path(root, f"console-{index}.txt").write_text(console.getvalue(), encoding="utf-8")
    os._exit(code)


def _files(index: int) -> int:
    return FILES + index  # a different count per run: its SUMMARY says which run it is


def test_eight_runs_share_one_log_across_midnight_whole_lines_in_order(tmp_path: Path) -> None:
    long = "y" * 100  # long lines: a torn or interleaved write would show
    for index in range(PROCESSES):
        os.makedirs(tmp_path / f"src{index}")
        os.makedirs(tmp_path / f"rep{index}")
        build(tmp_path / f"src{index}", {f"p{index}-{n:04d}-{long}": "" for n in range(_files(index))})
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_run, args=(index, str(tmp_path))) for index in range(PROCESSES)]

    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)

    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    eve, day = log_lines(tmp_path, EVE.date()), log_lines(tmp_path, (EVE + timedelta(days=1)).date())
    assert eve and day
    assert all(LINE.match(line) for line in eve + day), [line for line in eve + day if not LINE.match(line)][
        :3
    ]
    assert all(line.startswith("2026-12-31 23:59:59 ") for line in eve)
    assert all(line.startswith("2027-01-01 00:00:") for line in day)
    assert len(eve) + len(day) == sum(_files(index) + 2 for index in range(PROCESSES))

    def of_run(index: int, line: str) -> bool:
        text = line[20:]
        return (
            text.startswith(f"ADDED p{index}-")
            or text.startswith(f"START source={tmp_path}/src{index} ")
            or text.startswith(f"SUMMARY added={_files(index)} ")
        )

    for index in range(PROCESSES):
        shown = (tmp_path / f"console-{index}.txt").read_text(encoding="utf-8").splitlines()
        logged = [line for line in eve if of_run(index, line)] + [line for line in day if of_run(index, line)]
        assert logged == shown, f"run {index}: its lines are not whole and in order"
        assert 0 < sum(1 for line in shown if line.startswith("2026-12-31 ")) < len(shown)  # crossed
        assert_mirror(tmp_path / f"src{index}", tmp_path / f"rep{index}")
