"""The status file LOGS/status.json: records, atomic concurrent updates, and what status shows."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from synchro import Hooks, Synchro
from synchro.errors import ExitCode
from synchro.features.status import (
    PairRecord,
    RunRecord,
    StatusError,
    ago,
    format_json,
    format_table,
    pair_status,
    read_status,
    record_run,
    result_line,
    unusable_pair_status,
)
from synchro.pipeline.report import Report

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 3, 0, 0, tzinfo=UTC)


def run(code: int = 0, end: datetime = T0, *, dry_run: bool = False, added: int = 0) -> RunRecord:
    report = Report("/src", "/rep", dry_run=dry_run, exit_code=ExitCode(code))
    report.added = [f"f{i}" for i in range(added)]
    report.bytes_copied = 100 * added
    return RunRecord.from_report(report, end - timedelta(seconds=5), end)


# --- the file -------------------------------------------------------------------------------


def test_a_run_is_recorded_and_read_back(tmp_path: Path) -> None:
    record = record_run(tmp_path, "photos", run(added=3))
    assert record == PairRecord(run(added=3), T0)
    assert read_status(tmp_path) == {"photos": record}
    data = json.loads((tmp_path / "status.json").read_text(encoding="utf-8"))
    last = data["pairs"]["photos"]["last_run"]
    assert last["start"] == "2026-03-01T02:59:55+00:00"
    assert last["end"] == "2026-03-01T03:00:00+00:00"
    assert (last["exit_code"], last["result"], last["bytes"]) == (0, "ok", 300)
    assert last["counts"]["added"] == 3
    assert data["pairs"]["photos"]["last_success"] == "2026-03-01T03:00:00+00:00"


def test_last_success_survives_failures_and_dry_runs(tmp_path: Path) -> None:
    record_run(tmp_path, "a", run(0, T0))
    record_run(tmp_path, "a", run(1, T0 + timedelta(hours=1)))
    record_run(tmp_path, "a", run(0, T0 + timedelta(hours=2), dry_run=True))
    record = read_status(tmp_path)["a"]
    assert record.last.dry_run and record.last.end == T0 + timedelta(hours=2)
    assert record.last_success == T0
    record_run(tmp_path, "a", run(0, T0 + timedelta(hours=3)))
    assert read_status(tmp_path)["a"].last_success == T0 + timedelta(hours=3)


def test_other_pairs_are_kept(tmp_path: Path) -> None:
    record_run(tmp_path, "a", run(0))
    record_run(tmp_path, "b", run(3))
    record_run(tmp_path, "a", run(1))
    records = read_status(tmp_path)
    assert sorted(records) == ["a", "b"]
    assert (records["a"].last.exit_code, records["b"].last.exit_code) == (1, 3)
    assert records["b"].last_success is None


def test_no_file_means_no_run_yet(tmp_path: Path) -> None:
    assert read_status(tmp_path) == {}
    assert read_status(tmp_path / "missing") == {}


def test_a_damaged_file_is_an_error_to_read_and_replaced_by_a_write(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_text(
        '{"pairs": {"a": {"last_run": {"start": "yesterday"', encoding="utf-8"
    )
    with pytest.raises(
        StatusError,
        match=r"^status file .*status\.json: not a valid status file \(.*\); delete it to start afresh$",
    ):
        read_status(tmp_path)
    record_run(tmp_path, "b", run(0))
    assert sorted(read_status(tmp_path)) == ["b"]


def test_a_file_that_cannot_be_written_is_a_status_error(tmp_path: Path) -> None:
    (tmp_path / "status.json").mkdir()
    with pytest.raises(StatusError, match=r"^status file .*status\.json: "):
        record_run(tmp_path, "a", run(0))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _writer(folder: str, worker: int, count: int) -> None:
    for index in range(count):
        record_run(folder, f"pair-{worker}", run(0, T0 + timedelta(minutes=index), added=index))


def test_concurrent_writers_never_lose_or_corrupt_a_record(tmp_path: Path) -> None:
    # Four processes update the same file at once: without the lock, a
    # read-modify-write would drop another pair's record.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(tmp_path), worker, 25)) for worker in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    records = read_status(tmp_path)
    assert sorted(records) == [f"pair-{worker}" for worker in range(4)]
    assert all(record.last.counts["added"] == 24 for record in records.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".status.lock", "status.json"]


# --- what `inv status` shows ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "words"),
    [
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=12, seconds=30), "12 min ago"),
        (timedelta(hours=5, minutes=59), "5 h ago"),
        (timedelta(hours=47), "47 h ago"),
        (timedelta(days=3, hours=2), "3 days ago"),
        (timedelta(seconds=-5), "in the future (clock changed?)"),
    ],
)
def test_ago(age: timedelta, words: str) -> None:
    assert ago(age) == words


@pytest.mark.parametrize(
    ("success_age", "interval", "stale"),
    [
        (timedelta(hours=47, minutes=59), 24, False),
        (timedelta(hours=48, seconds=1), 24, True),
        (timedelta(hours=2), 1, False),
        (timedelta(hours=2, seconds=1), 1, True),
        # Below the minimum the interval counts as a quarter of an hour.
        (timedelta(minutes=31), 0.1, True),
        (None, 24, True),
    ],
    ids=["within", "past-twice", "small-within", "small-past", "minimum", "never-succeeded"],
)
def test_stale_is_no_success_within_twice_the_interval(
    success_age: timedelta | None, interval: float, stale: bool
) -> None:
    now = T0 + timedelta(days=10)
    success = now - success_age if success_age is not None else None
    record = PairRecord(run(1, now - timedelta(minutes=1)), success)
    assert pair_status("a", interval, record, now).stale is stale


def test_a_pair_that_never_ran_is_stale() -> None:
    row = pair_status("new", 24, None, T0)
    assert row.stale
    assert row.to_json() == {
        "pair": "new",
        "interval_hours": 24,
        "last_run": None,
        "last_run_ago_seconds": None,
        "last_success": None,
        "last_success_ago_seconds": None,
        "stale": True,
        "error": None,
    }


def test_a_pair_the_ini_file_gets_wrong_is_a_row_that_says_so() -> None:
    now = T0 + timedelta(hours=1)
    rows = [
        pair_status("docs", 24, PairRecord(run(0, T0), T0), now),
        unusable_pair_status("usb", "replica: environment variable $DRIVE is not set", now),
    ]
    assert format_table(rows).splitlines()[1:] == [
        "docs  2026-03-01 03:00 (1 h ago)  ok                0            0        0       0    0 B  2026-03-01 03:00 (1 h ago)",
        "usb   -                           config error                                              -                           STALE",
    ]
    docs, usb = json.loads(format_json(rows))
    assert docs["error"] is None
    assert usb == {
        "pair": "usb",
        "interval_hours": None,
        "last_run": None,
        "last_run_ago_seconds": None,
        "last_success": None,
        "last_success_ago_seconds": None,
        "stale": True,
        "error": "replica: environment variable $DRIVE is not set",
    }


def test_the_table() -> None:
    now = T0 + timedelta(hours=30)
    rows = [
        pair_status(
            "docs",
            24,
            PairRecord(
                run(0, T0 + timedelta(hours=29, minutes=50), added=2048), T0 + timedelta(hours=29, minutes=50)
            ),
            now,
        ),
        pair_status("photos", 1, PairRecord(run(3, T0 + timedelta(hours=29)), T0), now),
        pair_status("new", 24, None, now),
    ]
    assert format_table(rows).splitlines() == [
        "pair    last run                       result   added  overwritten  deleted  failed      bytes  last success",
        "docs    2026-03-02 08:50 (10 min ago)  ok        2048            0        0       0  200.0 KiB  2026-03-02 08:50 (10 min ago)",
        "photos  2026-03-02 08:00 (1 h ago)     refused      0            0        0       0        0 B  2026-03-01 03:00 (30 h ago)    STALE",
        "new     never                          -                                                        never                          STALE",
    ]


def test_the_json() -> None:
    now = T0 + timedelta(hours=3)
    rows = [pair_status("photos", 1, PairRecord(run(1, T0 + timedelta(hours=2)), T0), now)]
    (data,) = json.loads(format_json(rows))
    assert data["pair"] == "photos"
    assert data["stale"] is True
    assert data["last_run"]["result"] == "failed"
    assert data["last_run"]["exit_code"] == 1
    assert data["last_run_ago_seconds"] == 3600
    assert data["last_success"] == "2026-03-01T03:00:00+00:00"
    assert data["last_success_ago_seconds"] == 3 * 3600


def test_result_lines() -> None:
    report = Report("/s", "/r")
    report.added = ["a", "b"]
    report.bytes_copied = 3 * 1024 * 1024
    report.seconds = 1.25
    assert result_line("docs", report) == (
        "docs: ok: 2 added, 0 overwritten, 0 deleted, 0 failed, 3.0 MiB copied in 1.2 s (exit 0)"
    )
    refused = Report(
        "/s", "/r", dry_run=True, exit_code=ExitCode.USAGE, message="source folder does not exist: /s"
    )
    assert result_line("docs", refused) == "docs: error (dry run): source folder does not exist: /s (exit 2)"


# --- every run records its outcome ------------------------------------------------------------


class Clock:
    """A clock that moves a minute each time it is read."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 3, 0, 0)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path, Path]:
    src, rep, logs = tmp_path / "src", tmp_path / "rep", tmp_path / "logs"
    src.mkdir()
    rep.mkdir()
    (src / "f").write_text("data", encoding="utf-8")
    return src, rep, logs


def test_synchro_records_each_run_under_its_name(trees: tuple[Path, Path, Path]) -> None:
    src, rep, logs = trees
    with Synchro(logs, console=io.StringIO(), clock=Clock()) as synchro:
        synchro.configure(src, rep, name="docs")
        synchro.run()
    record = read_status(logs / "LOGS")["docs"]
    assert record.last.exit_code == 0
    assert record.last.counts["added"] == 1
    assert record.last.source == str(src)
    # The times are the Synchro's clock (which every log line also reads).
    assert (
        datetime(2026, 3, 1, 3, 1)
        <= record.last.start.replace(tzinfo=None)
        < record.last.end.replace(tzinfo=None)
    )
    assert record.last.start.tzinfo is not None
    assert record.last_success == record.last.end


def test_without_a_name_the_key_is_the_replica_path(trees: tuple[Path, Path, Path]) -> None:
    src, rep, logs = trees
    os.symlink(rep, rep.parent / "link")
    with Synchro(logs, quiet=True) as synchro:
        synchro.configure(src, rep.parent / "link")
        synchro.run()
    assert list(read_status(logs / "LOGS")) == [str(rep)]


def test_a_refused_run_keeps_the_last_success(trees: tuple[Path, Path, Path]) -> None:
    src, rep, logs = trees
    with Synchro(logs, quiet=True) as synchro:
        synchro.configure(src, rep, name="docs")
        synchro.run()
        success = read_status(logs / "LOGS")["docs"].last_success
        synchro.configure(src, rep, name="docs", dry_run=True)
        (src / "f").unlink()
        synchro.run()
    record = read_status(logs / "LOGS")["docs"]
    assert record.last.dry_run
    assert record.last_success == success


def test_an_interrupted_run_is_recorded_as_such(trees: tuple[Path, Path, Path]) -> None:
    src, rep, logs = trees

    def stop(action: object) -> None:
        raise KeyboardInterrupt

    with Synchro(logs, quiet=True, hooks=Hooks(before_action=stop)) as synchro:
        synchro.configure(src, rep, name="docs")
        with pytest.raises(KeyboardInterrupt):
            synchro.run()
    record = read_status(logs / "LOGS")["docs"]
    assert (record.last.exit_code, record.last.message, record.last_success) == (130, "interrupted", None)


def test_a_status_file_that_cannot_be_written_is_a_warning_not_a_failure(
    trees: tuple[Path, Path, Path],
) -> None:
    src, rep, logs = trees
    (logs / "LOGS" / "status.json").mkdir(parents=True)
    console = io.StringIO()
    with Synchro(logs, console=console) as synchro:
        synchro.configure(src, rep, name="docs")
        report = synchro.run()
    assert report.exit_code == 0
    assert (rep / "f").read_text(encoding="utf-8") == "data"
    warnings = [line for line in console.getvalue().splitlines() if " WARNING " in line]
    assert len(warnings) == 1
    assert " WARNING status file " in warnings[0]
