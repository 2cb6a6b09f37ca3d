"""Sub-trees only in the source are planned while they are applied (``Op.TREE``).

A new folder deletes nothing, so the walk leaves it as one action and the
applier lists and plans it folder by folder: a first copy holds the folders
still to do, not the tree. These tests hold that to what the plan-first run
did: the guard still sees every deletion before anything is copied, a
folder gone before its listing is VANISHED, the report keeps a bounded
number of paths, and the memory of a first copy does not grow with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Pair, child_env
from holds import hold_handed_folders
from treeutil import assert_mirror, build, entries, log_messages, snapshot

import synchro
import synchro.pipeline.apply
import synchro.pipeline.report
from synchro import Hooks, mirror
from synchro.endpoints.local.tree import LocalTree
from synchro.pipeline.helper import ENV, Helper
from synchro.pipeline.plan import Action, Op, PlanRules
from synchro.pipeline.walk import plan_trees

PROCESSES = pytest.mark.parametrize("processes", ["1", "2"], ids=["one-process", "two-processes"])


def nested(folders: int, subfolders: int, files: int) -> dict[str, object]:
    return {
        f"d{i:03d}": {f"s{j:02d}": {f"f{k:03d}": "x" for k in range(files)} for j in range(subfolders)}
        for i in range(folders)
    }


def test_a_first_copy_is_planned_as_its_top_folder_only(pair: Pair) -> None:
    build(pair.src, {"top.txt": "t", **nested(3, 4, 5)})
    src, rep = LocalTree.open_at(str(pair.src)), LocalTree.open_at(str(pair.rep))
    try:
        plan = plan_trees(src, rep, PlanRules())
    finally:
        src.close()
        rep.close()

    ops = [(action.op, action.path) for action in plan.actions]
    assert sorted(ops) == sorted(
        [(Op.COPY, "top.txt"), (Op.DIRMETA, "")]
        + [(op, f"d{i:03d}") for i in range(3) for op in (Op.MKDIR, Op.TREE)]
    )
    # Each sub-tree's TREE comes right after its MKDIR: parents before children.
    for index, (op, path) in enumerate(ops):
        if op is Op.TREE:
            assert ops[index - 1] == (Op.MKDIR, path)


@PROCESSES
def test_the_guard_refuses_before_any_deferred_sub_tree_is_copied(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, processes: str
) -> None:
    """The deletions are in folders walked after the new sub-trees: nothing of those is copied."""
    monkeypatch.setenv(ENV, processes)
    build(pair.src, {"zz-both": {f"f{i:02d}": "x" for i in range(20)}})
    assert pair.mirror().ok
    for index in range(15):
        os.unlink(pair.src / "zz-both" / f"f{index:02d}")
    build(pair.src, {"aa-new": nested(2, 3, 4), **{f"new{i}": {"sub": {"g": "y"}} for i in range(8)}})
    before = snapshot(pair.rep)
    start = len(log_messages(pair.logs))

    report = pair.mirror()

    assert report.exit_code == 3
    assert report.counts["added"] == 0
    assert snapshot(pair.rep) == before
    messages = entries(log_messages(pair.logs)[start:])
    assert not any(message.startswith(("ADDED", "DELETED")) for message in messages)
    assert report.message.startswith("deletion guard: this run would delete 15 of the replica's 20 files")
    assert pair.mirror(max_delete="100%").ok
    assert_mirror(pair.src, pair.rep)


@pytest.mark.parametrize(
    ("op", "path", "vanished"),
    [
        # The deferred sub-tree's folder is made, then gone before it is listed.
        pytest.param(Op.TREE, "d", ["d/"], id="before-its-listing"),
        # A folder inside it, gone before its MKDIR: one line, not two.
        pytest.param(Op.MKDIR, "d/sub", ["d/sub/"], id="inside-before-its-mkdir"),
    ],
)
def test_a_source_folder_gone_before_its_deferred_listing_is_vanished(
    pair: Pair, op: Op, path: str, vanished: list[str]
) -> None:
    build(pair.src, {"d": {"a": "1", "sub": {"b": "2", "deeper": {"c": "3"}}}, "stays": "s"})
    gone = pair.src / path

    def before_action(action: Action) -> None:
        if action.op is op and action.path == path and gone.exists():
            shutil.rmtree(gone)

    report = mirror(pair.src, pair.rep, logpath=pair.logs, hooks=Hooks(before_action=before_action))

    assert report.exit_code == 0
    assert report.failed == []
    assert report.vanished == vanished
    messages = entries(log_messages(pair.logs))
    assert [m for m in messages if m.startswith("VANISHED")] == [
        f"VANISHED {vanished[0]}: "
        + ("cannot read source folder: No such file or directory" if op is Op.TREE else "")
        + ("gone from the source before it was copied" if op is Op.MKDIR else "")
    ]
    again = pair.mirror()
    assert again.ok
    assert_mirror(pair.src, pair.rep)


def test_a_first_copy_shares_its_new_folders_with_the_helper(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_hang: None
) -> None:
    """The walk gave the helper nothing it kept: the folders handed over once
    the guard has passed are copied by both processes, each file once."""
    monkeypatch.setenv(ENV, "2")
    build(pair.src, {"top.txt": "t", **nested(4, 2, 3)})  # 4 + 8 folders and 25 files
    copies = tmp_path / "copies"
    out = os.open(copies, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    real = synchro.pipeline.apply._carry_out

    def carry_out(action: Action, ctx: object, **kwargs: bool) -> None:
        if action.op is Op.COPY:  # one write each: the two processes' lines never mix
            os.write(out, f"{os.getpid()} {action.path}\n".encode())
        real(action, ctx, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(synchro.pipeline.apply, "_carry_out", carry_out)
    handed: list[str] = []  # in listing order, not by name
    real_hand_over = Helper.hand_over

    def hand_over(self: Helper, units: list[list[Action]]) -> list[list[Action]]:
        offered = real_hand_over(self, units)
        handed.extend(unit[0].path for unit in offered)
        return offered

    monkeypatch.setattr(Helper, "hand_over", hand_over)
    close = hold_handed_folders(monkeypatch.setattr)
    try:
        report = pair.mirror()
    finally:
        close()
        os.close(out)

    assert report.ok, report.failed
    assert report.counts["added"] == 37
    assert_mirror(pair.src, pair.rep)
    by: dict[str, list[str]] = {}
    for line in copies.read_text().splitlines():
        pid, path = line.split(" ", 1)
        by.setdefault(pid, []).append(path)
    run = by.pop(str(os.getpid()))
    [helper] = by.values()  # one other process copied files
    tops = [f"d{i:03d}" for i in range(4)]
    assert sorted(handed) == tops  # the walk's sub-trees were all taken back
    files = [f"{top}/s{j:02d}/f{k:03d}" for top in tops for j in range(2) for k in range(3)]
    assert sorted(run + helper) == sorted([*files, "top.txt"])  # each once

    def folders(paths: list[str]) -> set[str]:
        return {path.partition("/")[0] for path in paths if "/" in path}

    assert folders(run).isdisjoint(folders(helper))  # a folder handed over is copied by one process
    assert handed[0] in folders(helper)  # it took the first
    assert handed[-1] in folders(run)  # the run took the last
    added = [m for m in entries(log_messages(pair.logs)) if m.startswith("ADDED ")]
    assert len(added) == len(set(added)) == 37


@PROCESSES
def test_the_report_keeps_the_first_paths_and_counts_them_all(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, processes: str
) -> None:
    monkeypatch.setenv(ENV, processes)
    monkeypatch.setattr(synchro.pipeline.report, "PATHS_KEPT", 7)
    build(pair.src, nested(4, 2, 3))  # 4 + 8 folders and 24 files
    report = pair.mirror()

    assert report.ok
    assert report.counts["added"] == 36 and report.changed == 36
    assert len(report.added) == 7 and len(set(report.added)) == 7
    assert report.summary().startswith("SUMMARY added=36 ")
    assert sum(message.startswith("ADDED ") for message in entries(log_messages(pair.logs))) == 36
    for name in sorted(os.listdir(pair.src)):
        shutil.rmtree(pair.src / name)
    deleted = pair.mirror(max_delete="100%")
    assert deleted.counts["deleted"] == 36 and len(deleted.deleted) == 7


def test_a_dry_run_of_a_first_copy_logs_what_the_copy_does(tmp_path: Path) -> None:
    """Exclusions inside deferred sub-trees, and a dry run that lists them as it goes."""
    src = tmp_path / "src"
    src.mkdir()
    build(src, {"keep": nested(2, 2, 2), "skip.tmp": "x", "deep": {"a": {"b.tmp": "y", "c": "z"}}})
    dry = mirror(
        src, tmp_path / "dry", dry_run=True, create_replica=True, exclude=["*.tmp"], logpath=tmp_path / "1"
    )
    real = mirror(src, tmp_path / "real", create_replica=True, exclude=["*.tmp"], logpath=tmp_path / "2")

    assert not (tmp_path / "dry").exists()
    assert dry.ok and real.ok and dry.counts == real.counts
    assert sorted(dry.added) == sorted(real.added)
    assert "deep/a/c" in real.added and not any(path.endswith(".tmp") for path in real.added)
    assert not (tmp_path / "real" / "deep" / "a" / "b.tmp").exists()


# The child: a first copy in one process, then its peak resident memory in
# KiB. VmHWM, not ru_maxrss: that one keeps the parent's peak across the
# exec (pytest's own tens of MiB would hide the child's).
CHILD = """
import sys
import synchro
report = synchro.mirror(sys.argv[1], sys.argv[2])
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(report.counts["added"], peak)
"""


def first_copy_peak(root: Path, folders: int) -> tuple[int, int]:
    """The files added and the peak RSS (KiB) of a first copy of ``folders`` x 10 x 100 empty files."""
    src, rep = root / "src", root / "rep"
    for i in range(folders):
        for j in range(10):
            folder = src / f"d{i:03d}" / f"s{j:02d}"
            folder.mkdir(parents=True)
            for k in range(100):
                os.close(os.open(folder / f"f{k:03d}", os.O_CREAT | os.O_WRONLY, 0o644))
    rep.mkdir()
    env = child_env() | {ENV: "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(rep)], env=env, capture_output=True, text=True, check=True
    )
    added, peak = done.stdout.split()
    return int(added), int(peak)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_first_copys_memory_does_not_grow_with_the_tree(tmp_path: Path) -> None:
    small = first_copy_peak(tmp_path / "small", 5)  # 5,000 files
    large = first_copy_peak(tmp_path / "large", 40)  # 40,000 files

    assert (small[0], large[0]) == (5 * 1010 + 5, 40 * 1010 + 40)
    # Holding the plan (an action per file) and every path of the report
    # took 16 MiB more for the large tree (measured: 17.8 and 33.3 MiB);
    # the folders still to do and the report's first 10,000 paths do not.
    assert large[1] - small[1] < 4 * 1024, (small, large)
