"""Old versions (README: "Versions, verify and restore"): kept, logged, pruned, refused, crash-safe.

Runs go through :func:`synchro.mirror` with an injected clock (the run
folder's name and the age of versions come from it), through the
``synchro`` command and the ``inv`` tasks in subprocesses. Nothing sleeps:
times are set with ``os.utime(ns=...)`` and clocks are moved by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Pair,
    chown_tree,
    open_to_others,
    report_payload,
    run_as_nobody,
    run_synchro,
    start_python,
)
from test_tasks import Inv
from treeutil import BASE_NS, Link, assert_mirror, build, log_messages, snapshot, write

import synchro
from synchro import ConfigError, Hooks, Synchro
from synchro.faces.config import parse_config
from synchro.features.restore import restore
from synchro.features.versions import list_versions
from synchro.options import KeepVersions, parse_keep_versions
from synchro.pipeline.plan import Action

# Each test runs on both local endpoints: folder descriptors and paths (Windows).
pytestmark = pytest.mark.usefixtures("each_endpoint")

T1 = datetime(2026, 3, 1, 3, 0, 0)


class Clock:
    """An injectable clock that tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def name(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d_%H%M%S}"


def run(pair: Pair, versions: Path, clock: Clock | datetime, **options: object) -> synchro.Report:
    now = clock if isinstance(clock, Clock) else Clock(clock)
    return synchro.mirror(pair.src, pair.rep, logpath=pair.logs, versions=versions, clock=now, **options)


def runs_in(versions: Path) -> list[str]:
    return sorted(os.listdir(versions)) if versions.exists() else []


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    return tmp_path / "versions"


# --- what is kept -----------------------------------------------------------------------------


def test_an_overwritten_file_is_kept_with_its_old_bytes_and_metadata(pair: Pair, versions: Path) -> None:
    build(pair.src, {"notes.txt": "old words", "sub": {"deep.txt": "old deep"}}, mtime_ns=BASE_NS)
    os.chmod(pair.src / "notes.txt", 0o640)
    assert run(pair, versions, T1).ok
    old = snapshot(pair.rep)
    write(pair.src / "notes.txt", "new words, longer", BASE_NS + 1)
    write(pair.src / "sub" / "deep.txt", "new deep", BASE_NS + 1)
    later = T1 + timedelta(days=1)

    report = run(pair, versions, later)

    assert report.ok and sorted(report.overwritten) == ["notes.txt", "sub/deep.txt"]
    assert_mirror(pair.src, pair.rep)
    kept = versions / name(later)
    assert runs_in(versions) == [name(later)]
    assert (kept / "notes.txt").read_text() == "old words"
    assert (kept / "sub" / "deep.txt").read_text() == "old deep"
    # The very file, moved: same bytes, mode and time as it had in the replica.
    got = snapshot(kept)
    for path in (b"notes.txt", b"sub/deep.txt"):
        assert got[path] == old[path]
    assert (got[b"sub"].mode, got[b"sub"].mtime_ns) == (old[b"sub"].mode, old[b"sub"].mtime_ns)
    messages = log_messages(pair.logs)
    assert f"KEPT notes.txt -> {kept}/" in messages
    assert messages.index(f"KEPT notes.txt -> {kept}/") + 1 == messages.index("OVERWRITTEN notes.txt")


def test_deleted_files_folder_trees_and_links_are_kept_whole(pair: Pair, versions: Path) -> None:
    build(
        pair.src,
        {
            "gone.txt": "bye",
            "tree": {"a.txt": "a", "deeper": {"b.txt": "b", "empty": {}}, "link": Link("../gone.txt")},
            "lonely": Link("/etc/passwd"),
            "stays": "here",
        },
        mtime_ns=BASE_NS,
    )
    os.chmod(pair.src / "tree" / "deeper", 0o750)
    run(pair, versions, T1)
    old = snapshot(pair.rep)
    shutil.rmtree(pair.src / "tree")
    os.unlink(pair.src / "gone.txt")
    os.unlink(pair.src / "lonely")
    later = T1 + timedelta(hours=6)

    report = run(pair, versions, later)

    assert report.ok
    assert_mirror(pair.src, pair.rep)
    kept = versions / name(later)
    got = snapshot(kept)
    deleted = [path for path in old if path not in snapshot(pair.rep)]
    assert sorted(path for path in got if path != b".") == sorted(deleted)
    for path in deleted:
        assert got[path] == old[path], path  # type, mode, time, owner, bytes or link target
    messages = log_messages(pair.logs)
    for shown in (
        "gone.txt",
        "lonely",
        "tree/",
        "tree/a.txt",
        "tree/deeper/",
        "tree/deeper/empty/",
        "tree/link",
    ):
        assert f"KEPT {shown} -> {kept}/" in messages
        assert f"DELETED {shown}" in messages


def test_a_name_that_changes_type_keeps_what_was_there(pair: Pair, versions: Path) -> None:
    build(pair.src, {"was_file": "file bytes", "was_folder": {"inner": "inner bytes"}}, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    os.unlink(pair.src / "was_file")
    build(pair.src, {"was_file": {"now": "a folder"}})
    shutil.rmtree(pair.src / "was_folder")
    write(pair.src / "was_folder", "now a file")
    later = T1 + timedelta(minutes=5)

    assert run(pair, versions, later).ok

    assert_mirror(pair.src, pair.rep)
    kept = versions / name(later)
    assert (kept / "was_file").read_text() == "file bytes"
    assert (kept / "was_folder" / "inner").read_text() == "inner bytes"


def test_nothing_is_kept_when_no_bytes_are_lost(pair: Pair, versions: Path) -> None:
    build(pair.src, {"same": "same", "mode": "mode"}, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    os.chmod(pair.src / "mode", 0o600)  # permissions only: fixed in place

    first = run(pair, versions, T1 + timedelta(hours=1))
    again = run(pair, versions, T1 + timedelta(hours=2), checksum=True)  # same bytes: not copied

    assert first.overwritten == ["mode"] and again.changed == 0
    assert runs_in(versions) == []  # no run folder is made for nothing
    assert not any(message.startswith("KEPT ") for message in log_messages(pair.logs))


def test_a_dry_run_moves_nothing(pair: Pair, versions: Path) -> None:
    build(pair.src, {"f": "old"}, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    write(pair.src / "f", "new!", BASE_NS + 1)
    write(pair.src / "added", "would be added")

    report = run(pair, versions, T1 + timedelta(hours=1), dry_run=True)

    assert report.overwritten == ["f"] and report.added == ["added"]
    assert (pair.rep / "f").read_text() == "old"
    assert runs_in(versions) == []


def test_two_runs_in_one_second_get_two_folders(pair: Pair, versions: Path) -> None:
    build(pair.src, {"f": "one"}, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    write(pair.src / "f", "two", BASE_NS + 1)
    run(pair, versions, T1)
    write(pair.src / "f", "six", BASE_NS + 2)

    run(pair, versions, T1)  # the same second again: the next free name

    assert runs_in(versions) == [name(T1), name(T1 + timedelta(seconds=1))]
    assert (versions / name(T1) / "f").read_text() == "one"
    assert (versions / name(T1 + timedelta(seconds=1)) / "f").read_text() == "two"


def test_a_version_that_cannot_be_kept_leaves_the_replica_entry_alone(
    pair: Pair, versions: Path, immutable: object
) -> None:
    build(pair.src, {"f": "precious", "g": "also"}, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    versions.mkdir()
    immutable(versions)  # type: ignore[operator]  # even root cannot create the run folder
    write(pair.src / "f", "overwrite me", BASE_NS + 1)
    os.unlink(pair.src / "g")

    report = run(pair, versions, T1 + timedelta(days=1))

    assert report.exit_code == 1
    assert [path for path, _ in report.failed] == ["g", "f"]
    assert all(reason.startswith("cannot keep the old version") for _, reason in report.failed)
    assert (pair.rep / "f").read_text() == "precious"  # never overwritten without its version
    assert (pair.rep / "g").read_text() == "also"


# --- what a run adds ---------------------------------------------------------------------------


def added_in(versions: Path, run_name: str) -> set[str]:
    """The paths in the list of additions of run ``run_name``: NUL-ended records."""
    data = (versions / f"{run_name}.added").read_bytes()
    assert data.endswith(b"\0")
    return {os.fsdecode(record) for record in data[:-1].split(b"\0")}


def test_the_first_run_into_an_empty_replica_lists_nothing(pair: Pair, versions: Path) -> None:
    tree: dict[str, Any] = {f"top{index}": "t" for index in range(100)}
    tree.update({f"d{folder}": {f"f{index}": "f" for index in range(50)} for folder in range(4)})
    build(pair.src, tree, mtime_ns=BASE_NS)

    report = run(pair, versions, T1)

    assert report.ok and len(report.added) == 100 + 4 + 4 * 50
    assert not versions.exists()  # nothing kept, and nothing before it to go back to


def test_a_run_that_only_adds_lists_the_tops_of_what_it_added_and_makes_no_run_folder(
    pair: Pair, versions: Path
) -> None:
    build(pair.src, {"old.txt": "old", "sub": {"s.txt": "s"}}, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    build(
        pair.src,
        {
            "new\nline.txt": "a name with a newline",
            "tree": {"a": "a", "deeper": {"b": "b", "empty": {}}},
            "link": Link("old.txt"),
        },
        mtime_ns=BASE_NS + 1,
    )
    write(pair.src / "sub" / "added.txt", "in a folder that was there")
    later = T1 + timedelta(days=1)

    report = run(pair, versions, later)

    assert report.ok and len(report.added) == 8
    assert_mirror(pair.src, pair.rep)
    assert runs_in(versions) == [f"{name(later)}.added"]  # a list, no run folder
    # What a new folder holds goes without saying: "tree" alone, not a line per entry.
    assert added_in(versions, name(later)) == {"new\nline.txt", "tree", "link", "sub/added.txt"}
    assert list_versions(str(versions)) == []  # inv versions lists run folders only


def test_runs_of_one_second_get_distinct_names_whether_they_keep_or_only_add(
    pair: Pair, versions: Path
) -> None:
    build(pair.src, {"f": "one"}, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    write(pair.src / "a", "added first")
    run(pair, versions, T1)
    write(pair.src / "b", "added second")
    run(pair, versions, T1)
    write(pair.src / "f", "two", BASE_NS + 1)
    write(pair.src / "c", "added third")

    run(pair, versions, T1)  # keeps f and adds c: the next name free of both

    first, second, third = (name(T1 + timedelta(seconds=offset)) for offset in range(3))
    assert runs_in(versions) == [f"{first}.added", f"{second}.added", third, f"{third}.added"]
    assert [added_in(versions, run_name) for run_name in (first, second, third)] == [{"a"}, {"b"}, {"c"}]
    assert (versions / third / "f").read_text() == "one"


def test_the_count_rule_counts_run_folders_only_and_lists_go_with_them(pair: Pair, versions: Path) -> None:
    clock = Clock(T1)

    def day(number: int) -> datetime:
        return T1 + timedelta(days=number)

    write(pair.src / "f", "version 0", BASE_NS)
    run(pair, versions, clock)
    clock.now = day(1)
    _change_and_run(pair, versions, clock, 1, "2")  # a run folder
    for number in (2, 3):  # lists only
        clock.now = day(number)
        write(pair.src / f"added{number}", f"added on day {number}")
        assert run(pair, versions, clock, keep_versions="2").ok
    clock.now = day(4)
    _change_and_run(pair, versions, clock, 4, "2")
    assert runs_in(versions) == [name(day(1)), f"{name(day(2))}.added", f"{name(day(3))}.added", name(day(4))]

    clock.now = day(5)
    _change_and_run(pair, versions, clock, 5, "2")  # day 1 goes; the lists after it still serve

    assert runs_in(versions) == [f"{name(day(2))}.added", f"{name(day(3))}.added", name(day(4)), name(day(5))]
    then = versions.parent / "then"
    restore(pair.rep, then, at=name(day(2)), versions=versions)
    assert sorted(os.listdir(then)) == ["f"] and (then / "f").read_text() == "version 1"

    clock.now = day(6)
    _change_and_run(pair, versions, clock, 6, "2")  # day 4 goes, and the lists before it

    assert runs_in(versions) == [name(day(5)), name(day(6))]
    pruned = [message for message in log_messages(pair.logs) if message.startswith("PRUNED ")]
    assert pruned == [
        f"PRUNED {versions / name(day(1))}/ (not one of the 2 newest)",
        f"PRUNED {versions / name(day(4))}/ (not one of the 2 newest)",
        f"PRUNED {versions / name(day(2))}.added (goes with the pruned run folders)",
        f"PRUNED {versions / name(day(3))}.added (goes with the pruned run folders)",
    ]


def test_under_an_age_rule_old_lists_go_even_without_run_folders(pair: Pair, versions: Path) -> None:
    clock = Clock(T1)
    write(pair.src / "f", "f", BASE_NS)
    run(pair, versions, clock)
    for number in (1, 20, 40):
        clock.now = T1 + timedelta(days=number)
        write(pair.src / f"added{number}", "new")
        assert run(pair, versions, clock, keep_versions="30d").ok

    assert runs_in(versions) == [f"{name(T1 + timedelta(days=number))}.added" for number in (20, 40)]
    assert f"PRUNED {versions / name(T1 + timedelta(days=1))}.added (older than 30 days)" in log_messages(
        pair.logs
    )


def test_a_list_that_cannot_be_written_is_a_warning_not_a_failure(
    pair: Pair, versions: Path, immutable: object
) -> None:
    build(pair.src, {"f": "f"}, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    versions.mkdir()
    immutable(versions)  # type: ignore[operator]
    write(pair.src / "new.txt", "new")

    report = run(pair, versions, T1 + timedelta(days=1))

    assert report.ok and report.added == ["new.txt"]
    assert (pair.rep / "new.txt").read_text() == "new"
    assert (
        f"WARNING cannot list the entries this run added in {versions}: Operation not permitted; "
        "a restore --at before this run will include them"
    ) in log_messages(pair.logs)
    assert runs_in(versions) == []


ADDING_CHILD = r"""
import json, os, sys
import synchro
from synchro import Hooks

args = json.loads(sys.argv[1])
seen = 0

def before_action(action):
    global seen
    if action.op.name == "COPY" and action.rep is None:
        if seen == args["stop_at"]:
            print("READY", flush=True)
            os.read(0, 1)  # the parent kills us here
        seen += 1

synchro.mirror(args["src"], args["rep"], versions=args["versions"], hooks=Hooks(before_action=before_action))
"""


def test_kill_9_while_adding_leaves_only_a_temporary_that_the_next_run_removes(
    pair: Pair, versions: Path
) -> None:
    build(pair.src, {"f": "f"}, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    build(pair.src, {f"new{index}": f"new {index}" for index in range(10)}, mtime_ns=BASE_NS + 1)
    child = start_python(
        ADDING_CHILD,
        json.dumps({"src": str(pair.src), "rep": str(pair.rep), "versions": str(versions), "stop_at": 5}),
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "READY\n", child.communicate(timeout=30)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    [temporary] = os.listdir(versions)  # no list in place, no run folder
    assert temporary.startswith(".synchro-tmp-") and temporary.endswith(".added")

    later = T1 + timedelta(days=1)
    assert run(pair, versions, later).ok

    assert_mirror(pair.src, pair.rep)
    assert runs_in(versions) == [f"{name(later)}.added"]  # the temporary is gone
    assert len(added_in(versions, name(later))) == 5  # what the killed run did not add


# --- across file systems ----------------------------------------------------------------------


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on another file system than ``tmp_path`` (tmpfs), or skip."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="synchro-test-", dir="/dev/shm"))
    try:
        if folder.stat().st_dev == tmp_path.stat().st_dev:
            pytest.skip("/dev/shm is on the same file system as the tests")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_across_file_systems_a_version_is_copied_then_removed(pair: Pair, other_fs: Path) -> None:
    versions = other_fs / "versions"
    build(pair.src, {"f": "old bytes", "d": {"g": "in a folder", "l": Link("f")}}, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    old = snapshot(pair.rep)
    write(pair.src / "f", "new bytes!", BASE_NS + 1)
    shutil.rmtree(pair.src / "d")

    report = run(pair, versions, T1 + timedelta(days=1))

    assert report.ok
    assert_mirror(pair.src, pair.rep)
    got = snapshot(versions / name(T1 + timedelta(days=1)))
    for path in (b"f", b"d", b"d/g", b"d/l"):
        assert got[path] == old[path], path


# --- retention --------------------------------------------------------------------------------


def _change_and_run(pair: Pair, versions: Path, clock: Clock, index: int, keep: str) -> synchro.Report:
    write(pair.src / "f", f"version {index}", BASE_NS + index)
    return run(pair, versions, clock, keep_versions=keep)


def test_retention_by_count_keeps_the_newest_run_folders(pair: Pair, versions: Path) -> None:
    clock = Clock(T1)
    write(pair.src / "f", "version 0", BASE_NS)
    run(pair, versions, clock)
    for index in range(1, 6):
        clock.now = T1 + timedelta(days=index)
        assert _change_and_run(pair, versions, clock, index, "3").ok

    assert runs_in(versions) == [name(T1 + timedelta(days=day)) for day in (3, 4, 5)]
    assert (versions / name(T1 + timedelta(days=3)) / "f").read_text() == "version 2"
    pruned = [message for message in log_messages(pair.logs) if message.startswith("PRUNED ")]
    assert pruned == [
        f"PRUNED {versions / name(T1 + timedelta(days=day))}/ (not one of the 3 newest)" for day in (1, 2)
    ]


def test_retention_by_age_uses_the_run_time(pair: Pair, versions: Path) -> None:
    clock = Clock(T1)
    write(pair.src / "f", "version 0", BASE_NS)
    run(pair, versions, clock)
    for index, day in enumerate((1, 10, 31), start=1):
        clock.now = T1 + timedelta(days=day)
        _change_and_run(pair, versions, clock, index, "30d")
    # At day 31 the day-1 folder is exactly 30 days old: kept.
    assert runs_in(versions) == [name(T1 + timedelta(days=day)) for day in (1, 10, 31)]

    clock.now = T1 + timedelta(days=31, seconds=1)
    _change_and_run(pair, versions, clock, 4, "30d")

    assert runs_in(versions) == [name(T1 + timedelta(days=day)) for day in (10, 31)] + [name(clock.now)]
    assert f"PRUNED {versions / name(T1 + timedelta(days=1))}/ (older than 30 days)" in log_messages(
        pair.logs
    )


def test_with_both_rules_a_folder_is_kept_while_either_keeps_it(pair: Pair, versions: Path) -> None:
    clock = Clock(T1)
    write(pair.src / "f", "version 0", BASE_NS)
    run(pair, versions, clock)
    for index, day in enumerate((1, 2, 3, 4), start=1):
        clock.now = T1 + timedelta(days=day)
        _change_and_run(pair, versions, clock, index, "30d,2")
    assert len(runs_in(versions)) == 4  # all young

    clock.now = T1 + timedelta(days=100)  # months without a change: the 2 newest stay
    run(pair, versions, clock, keep_versions="30d,2")

    assert runs_in(versions) == [name(T1 + timedelta(days=day)) for day in (3, 4)]


def test_a_failed_copy_keeps_the_replica_file_and_prunes_nothing(pair: Pair, versions: Path) -> None:
    clock = Clock(T1)
    build(pair.src, {"f": "0", "busy": "old busy"}, mtime_ns=BASE_NS)
    run(pair, versions, clock)
    for index in range(1, 3):
        clock.now = T1 + timedelta(days=index)
        _change_and_run(pair, versions, clock, index, "1")
    assert len(runs_in(versions)) == 1
    write(pair.src / "f", "changed", BASE_NS + 9)
    write(pair.src / "busy", "new busy", BASE_NS + 9)
    clock.now = T1 + timedelta(days=3)

    def busy(action: Action, copied: int) -> None:
        if action.name == "busy":  # written to while it is copied
            write(pair.src / "busy", "newer busy", BASE_NS + 10)

    report = synchro.mirror(
        pair.src,
        pair.rep,
        logpath=pair.logs,
        versions=versions,
        keep_versions="1",
        clock=clock,
        hooks=Hooks(during_copy=busy),
    )

    assert report.skipped == [("busy", "changed while copying")]
    # The copy was not installed, and the replica still has the old file.
    assert (pair.rep / "busy").read_text() == "old busy"
    assert (versions / name(clock.now) / "busy").read_text() == "old busy"

    write(pair.src / "f", "changed again", BASE_NS + 11)
    clock.now = T1 + timedelta(days=4)
    report = synchro.mirror(
        pair.src,
        pair.rep,
        logpath=pair.logs,
        versions=versions,
        keep_versions="1",
        clock=clock,
        hooks=Hooks(during_copy=_failing_read("f")),
    )

    assert report.exit_code == 1
    assert len(runs_in(versions)) == 2  # a failed run prunes nothing: day 3 stays beside day 4


def _failing_read(broken: str) -> Callable[[Action, int], None]:
    """A read error in the middle of ``broken``'s copy (either endpoint)."""

    def during_copy(action: Action, copied: int) -> None:
        if action.name == broken:
            raise OSError(5, "Input/output error")

    return during_copy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", KeepVersions(days=30)),
        ("10", KeepVersions(newest=10)),
        (10, KeepVersions(newest=10)),
        ("30d,10", KeepVersions(days=30, newest=10)),
        (" 10 , 7D ", KeepVersions(days=7, newest=10)),
        ("", KeepVersions()),
    ],
)
def test_keep_versions_values(text: object, expected: KeepVersions) -> None:
    assert parse_keep_versions(text) == expected


@pytest.mark.parametrize("text", ["ten", "30days", "0", "0d", "-1", "30d,20d", "1.5", "10,20"])
def test_bad_keep_versions_values_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^keep_versions: "):
        parse_keep_versions(text)


# --- refusals -----------------------------------------------------------------------------------


command = run_synchro


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("rep", "is the replica folder"),
        ("rep/VERSIONS", "is inside the replica"),
        ("src", "is the source folder"),
        ("src/VERSIONS", "is inside the source"),
        (".", "contains the replica"),
    ],
)
def test_an_overlapping_versions_folder_is_refused_with_exit_2(pair: Pair, where: str, problem: str) -> None:
    build(pair.src, {"f": "new"}, mtime_ns=BASE_NS + 1)
    write(pair.rep / "f", "old", BASE_NS)
    before = snapshot(pair.src), snapshot(pair.rep)

    result = command(
        pair.src, pair.rep, "1", pair.root / "logs", "--once", "--versions", where, cwd=pair.root
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"synchro: error: versions folder {where} {problem}")
    assert (snapshot(pair.src), snapshot(pair.rep)) == before  # nothing touched, nothing made
    assert sorted(os.listdir(pair.root)) == ["logs", "rep", "src"]
    with pytest.raises(ConfigError, match=problem):
        Synchro(pair.root / "logs", quiet=True).configure(pair.src, pair.rep, versions=pair.root / where)


def test_a_versions_folder_on_a_missing_drive_is_refused(pair: Pair) -> None:
    result = command(
        pair.src, pair.rep, "--once", "--versions", pair.root / "unmounted" / "VERSIONS", cwd=pair.root
    )

    assert result.returncode == 2
    assert "does not exist, nor its parent folder (is the drive mounted?)" in result.stderr


def test_keep_versions_alone_is_a_usage_error(pair: Pair) -> None:
    result = command(pair.src, pair.rep, "--once", "--keep-versions", "10", cwd=pair.root)

    assert result.returncode == 2
    assert "--keep-versions needs --versions PATH" in result.stderr


def test_the_ini_keys_and_their_checks(tmp_path: Path) -> None:
    config = parse_config(
        "[DEFAULT]\nkeep_versions = 30d\n[a]\nsource = s\nreplica = r\nversions = V/a\n"
        "[b]\nsource = s2\nreplica = r2\nkeep_versions = 5\nversions = ~/V/b\n[c]\nsource = s3\nreplica = r3\n",
        folder=str(tmp_path),
        environ={"HOME": "/home/ana"},
    )
    a, b, c = config.pairs
    assert (a.options.versions, a.options.keep_versions) == (str(tmp_path / "V" / "a"), KeepVersions(days=30))
    assert (b.options.versions, b.options.keep_versions) == ("/home/ana/V/b", KeepVersions(newest=5))
    assert c.options.versions is None  # an inherited keep_versions alone is fine

    def refused(text: str) -> str:
        with pytest.raises(ConfigError) as caught:
            parse_config(text, folder=str(tmp_path), origin="b.ini")
        return str(caught.value)

    assert refused("[a]\nsource = s\nreplica = r\nkeep_versions = 10\n") == (
        "b.ini: [a] keep_versions: the pair has no versions folder; add versions = PATH"
    )
    assert refused("[a]\nsource = s\nreplica = r\nversions = V\nkeep_versions = often\n").startswith(
        "b.ini: [a] keep_versions: expected an age in days (30d)"
    )
    shared = "[DEFAULT]\nversions = V\n[a]\nsource = s\nreplica = r\n[b]\nsource = s2\nreplica = r2\n"
    assert "share the versions folder" in refused(shared)
    inside = "[a]\nsource = s\nreplica = r\nversions = r2/V\n[b]\nsource = s2\nreplica = r2\n"
    assert "the versions folder of [a] (" in refused(inside) and "overlaps the replica of [b]" in refused(
        inside
    )


# --- inv backup and inv versions --------------------------------------------------------------


def test_inv_backup_keeps_versions_and_inv_versions_lists_them(tmp_path: Path) -> None:
    inv = Inv(tmp_path)
    (tmp_path / "docs").mkdir()
    build(tmp_path / "docs", {"a.txt": "first", "sub": {"b.txt": "bee"}}, mtime_ns=BASE_NS)
    (tmp_path / "backup").mkdir()
    ini = tmp_path / "backups.ini"
    ini.write_text(
        "[docs]\nsource = docs\nreplica = backup/docs\ncreate_replica = yes\n"
        "versions = backup/VERSIONS-docs\nkeep_versions = 30d,10\n",
        encoding="utf-8",
    )
    first, second = T1, T1 + timedelta(days=1)
    assert inv("backup", "--pair", "docs", now=first).returncode == 0
    write(tmp_path / "docs" / "a.txt", "second, longer", BASE_NS + 1)
    assert inv("backup", "--pair", "docs", now=second).returncode == 0
    write(tmp_path / "docs" / "a.txt", "third", BASE_NS + 2)
    shutil.rmtree(tmp_path / "docs" / "sub")
    third = T1 + timedelta(days=2)
    assert inv("backup", "--pair", "docs", now=third).returncode == 0

    listed = inv("versions", "--pair", "docs", "--path", "a.txt", now=third)
    overview = inv("versions", "--pair", "docs", now=third)
    nothing = inv("versions", "--pair", "docs", "--path", "never.txt", now=third)

    # The child's clock ticks from the given moment: the names are that moment, give or take a second.
    kept = runs_in(tmp_path / "backup" / "VERSIONS-docs")
    assert [folder[:16] for folder in kept] == [name(second)[:16], name(third)[:16]]
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["version", "size", "modified", "what"]
    assert [line.split()[0] for line in lines[1:]] == kept
    assert [" ".join(line.split()[1:3]) for line in lines[1:]] == ["5 B", "14 B"]
    assert all(line.endswith("  a.txt") for line in lines[1:])
    assert overview.stdout.splitlines()[1:] == [
        f"{kept[0]}   5 B  -         . (1 entry)",
        f"{kept[1]}  17 B  -         . (3 entries)",
    ]
    assert (
        nothing.stdout.strip() == f"no kept versions of never.txt in {tmp_path / 'backup' / 'VERSIONS-docs'}"
    )


# --- kill -9 during version moves -------------------------------------------------------------

CHILD = r"""
import json, os, sys
import synchro, synchro.features.versions
from synchro import Hooks

args = json.loads(sys.argv[1])
seen = 0

def wait_for_parent():
    print("READY", flush=True)
    os.read(0, 1)  # the parent kills us here

def before_action(action):
    global seen
    if action.op.name in ("DELETE", "COPY", "RMDIR") and action.rep is not None:
        if args["mode"] == "between-moves" and seen == args["stop_at"]:
            wait_for_parent()
        seen += 1

if args["mode"] == "after-the-copy":
    # Across file systems: stop once the version is copied, before the replica entry goes.
    real_copy = synchro.features.versions.Keeper._copy_over
    def copy_then_wait(self, *rest):
        done = real_copy(self, *rest)
        if seen > args["stop_at"]:
            wait_for_parent()
        return done
    synchro.features.versions.Keeper._copy_over = copy_then_wait

report = synchro.mirror(
    args["src"], args["rep"], logpath=args["logs"], versions=args["versions"],
    hooks=Hooks(before_action=before_action),
)
sys.exit(int(report.exit_code))
"""


def _all_bytes(*roots: Path) -> dict[bytes, set[bytes]]:
    """Every file's bytes under the roots, by path relative to its tree (version folders stripped)."""
    found: dict[bytes, set[bytes]] = {}
    for root in roots:
        if not root.exists():
            continue
        for path, entry in snapshot(root).items():
            if entry.kind != "file":
                continue
            if root.name == "versions":
                path = path.split(b"/", 1)[1]  # drop YYYY-MM-DD_HHMMSS/
            found.setdefault(path, set()).add(entry.data or b"")
    return found


@pytest.mark.parametrize(
    ("where", "mode", "stop_at"),
    [
        ("same-fs", "between-moves", 0),
        ("same-fs", "between-moves", 7),
        ("same-fs", "between-moves", 23),
        ("other-fs", "between-moves", 7),
        ("other-fs", "after-the-copy", 3),  # a deletion: the copy is made, the original still there
        ("other-fs", "after-the-copy", 20),  # an overwrite
    ],
)
def test_kill_9_during_version_moves_never_loses_both_copies(
    pair: Pair, tmp_path: Path, where: str, mode: str, stop_at: int, request: pytest.FixtureRequest
) -> None:
    versions = (request.getfixturevalue("other_fs") if where == "other-fs" else tmp_path) / "versions"
    tree = {f"d{folder}": {f"f{index}": f"old {folder}.{index}" for index in range(6)} for folder in range(3)}
    tree.update({f"top{index}": f"old top {index}" for index in range(6)})
    build(pair.src, tree, mtime_ns=BASE_NS)
    run(pair, versions, T1)
    before = _all_bytes(pair.rep)
    shutil.rmtree(pair.src / "d0")  # deleted: 6 files and a folder
    shutil.rmtree(pair.src / "d1")
    for index in range(6):  # overwritten
        write(pair.src / f"top{index}", f"new top {index}", BASE_NS + 1)
        write(pair.src / "d2" / f"f{index}", f"new 2.{index}", BASE_NS + 1)

    child = start_python(
        CHILD,
        json.dumps(
            {
                "src": str(pair.src),
                "rep": str(pair.rep),
                "logs": str(pair.logs),
                "versions": str(versions),
                "mode": mode,
                "stop_at": stop_at,
            }
        ),
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "READY\n", child.communicate(timeout=30)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL

    after_kill = _all_bytes(pair.rep, versions)
    for path, old in before.items():
        assert old <= after_kill.get(path, set()), f"{path!r}: its old bytes are nowhere"

    rerun = run(pair, versions, T1 + timedelta(days=1))

    assert rerun.ok, rerun.failed
    assert_mirror(pair.src, pair.rep)
    after_rerun = _all_bytes(pair.rep, versions)
    for path, old in before.items():
        assert old <= after_rerun.get(path, set()), f"{path!r}: lost by the rerun"
    assert not [path for path in snapshot(versions, content=False) if b".synchro-tmp-" in path]


# --- as a user, not root ----------------------------------------------------------------------


def test_a_user_keeps_read_only_folders_and_prunes_them_later(pair: Pair, tmp_path: Path) -> None:
    build(pair.src, {"ro": {"f": "in a read-only folder"}, "g": "g0"}, mtime_ns=BASE_NS)
    os.chmod(pair.src / "ro", 0o555)
    versions = tmp_path / "kept" / "versions"
    (tmp_path / "kept").mkdir()
    for path in (pair.src, pair.rep, tmp_path / "kept"):
        chown_tree(path)
    open_to_others(tmp_path)

    def mirror_at(moment: datetime) -> Callable[[], tuple[int, Any]]:
        def work() -> tuple[int, Any]:
            report = synchro.mirror(
                pair.src, pair.rep, versions=versions, keep_versions="1", clock=lambda: moment
            )
            return int(report.exit_code), report_payload(report)

        return work

    assert run_as_nobody(mirror_at(T1)).code == 0
    assert stat.S_IMODE(os.stat(pair.rep / "ro").st_mode) == 0o555
    os.chmod(pair.src / "ro", 0o755)
    shutil.rmtree(pair.src / "ro")

    deleted = run_as_nobody(mirror_at(T1 + timedelta(days=1)))

    assert deleted.code == 0, deleted.payload
    kept = versions / name(T1 + timedelta(days=1))
    assert (kept / "ro" / "f").read_text() == "in a read-only folder"
    assert stat.S_IMODE(os.stat(kept / "ro").st_mode) == 0o555
    write(pair.src / "g", "g1", BASE_NS + 1)

    pruning = run_as_nobody(mirror_at(T1 + timedelta(days=2)))

    assert pruning.code == 0, pruning.payload
    assert runs_in(versions) == [name(T1 + timedelta(days=2))]  # the read-only one is gone
