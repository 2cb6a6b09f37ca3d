"""A run shared with a helper process (synchro.pipeline.helper): same outcome, same safety.

``SYNCHRO_PROCESSES=2`` makes every run share its work even on one core,
``=1`` keeps it in one process: the two are compared on identical trees.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import Pair, child_env, requires_rsync, start_python
from holds import hold_shared_runs
from treeutil import (
    BASE_NS,
    Link,
    assert_rsync_clean,
    build,
    entries,
    log_messages,
    normal,
    snapshot,
    strip_stamp,
    write,
)

import synchro
import synchro.endpoints.local.filecopy
import synchro.pipeline.apply
import synchro.pipeline.engine
import synchro.pipeline.helper
from synchro.endpoints.local.fds import open_root
from synchro.endpoints.local.tree import LocalTree
from synchro.errors import ExitCode
from synchro.options import make_options
from synchro.pipeline.helper import ENV, Helper
from synchro.pipeline.log import DailyLog
from synchro.pipeline.plan import Action, Op, PlanRules, Step
from synchro.pipeline.walk import Plan, Walk, build_plan

FOLDERS = 24


def first_tree() -> dict[str, Any]:
    return {
        f"d{i:02d}": {
            "sub": {f"f{j}": f"{i}-{j}" for j in range(4)},
            **{f"g{j}": "x" * (i + j) for j in range(4)},
            "link": Link("g1"),
        }
        for i in range(FOLDERS)
    }


def change(src: Path) -> None:
    """Every kind of change, in sub-trees of every kind (given away or not)."""
    for i in range(FOLDERS):
        folder = src / f"d{i:02d}"
        write(folder / "g0", f"rewritten {i}", BASE_NS + 1)
        os.unlink(folder / "g1")
        write(folder / "added", "new", BASE_NS)
        build(folder, {"newsub": {"n": "n", "deeper": {"m": "m"}}}, mtime_ns=BASE_NS)
    shutil.rmtree(src / "d03")  # a folder only in the replica: deleted whole
    shutil.rmtree(src / "d05")  # a folder that becomes a file: not given away
    write(src / "d05", "now a file", BASE_NS)
    os.unlink(src / "d06" / "g2")  # a file that becomes a folder, inside a sub-tree
    build(src / "d06", {"g2": {"inside": "i"}}, mtime_ns=BASE_NS)
    build(src, {"fresh": {"a": "a", "b": {"c": "c"}}}, mtime_ns=BASE_NS)  # new at the top
    os.chmod(src / "d07", 0o555)  # a read-only folder with changes inside


@pytest.fixture
def gives(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the sub-trees given to a helper, as the runs of the test give them."""
    given: list[str] = []
    real = Helper.give

    def give(self: Helper, steps: list[Step]) -> bool:
        accepted = real(self, steps)
        if accepted:
            given.append(steps[-1].rel)  # type: ignore[union-attr]
        return accepted

    monkeypatch.setattr(Helper, "give", give)
    return given


def twin_pairs(tmp_path: Path) -> tuple[Pair, Pair]:
    pairs = []
    for name in ("shared", "single"):
        root = tmp_path / name
        pair = Pair(root, root / "src", root / "rep", root)
        pair.src.mkdir(parents=True)
        pair.rep.mkdir()
        build(pair.src, first_tree(), mtime_ns=BASE_NS)
        pairs.append(pair)
    return pairs[0], pairs[1]


def run(pair: Pair, processes: str, monkeypatch: pytest.MonkeyPatch, **options: Any) -> synchro.Report:
    monkeypatch.setenv(ENV, processes)
    return pair.mirror(**options)


def assert_same_outcome(shared: Pair, single: Pair, one: synchro.Report, other: synchro.Report) -> None:
    """The shared run did what one process did: the same counts, the same replica, each entry logged once."""
    assert one.exit_code == other.exit_code == ExitCode.OK, (one.failed, other.failed)
    assert one.counts == other.counts
    assert one.bytes_copied == other.bytes_copied
    assert_rsync_clean(shared.src, shared.rep)
    assert snapshot(shared.rep) == snapshot(single.rep)
    lines = Counter(entries(log_messages(shared.logs)))
    assert lines == Counter(entries(log_messages(single.logs)))
    assert max(lines.values()) == 1


@requires_rsync
def test_a_shared_run_does_exactly_what_one_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gives: list[str]
) -> None:
    shared, single = twin_pairs(tmp_path)
    for step in ("first", "second"):
        if step == "second":
            change(shared.src)
            change(single.src)
        gives.clear()
        one = run(shared, "2", monkeypatch)
        other = run(single, "1", monkeypatch)
        assert gives, "the helper took no sub-tree: the test proves nothing"
        assert_same_outcome(shared, single, one, other)
    assert "d05" not in gives  # its name changes type: removed and made here
    messages = log_messages(shared.logs)
    assert messages[-1].startswith("SUMMARY ") and messages[-1] == log_messages(single.logs)[-1]


@requires_rsync
def test_this_process_takes_back_what_the_helper_has_not_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: None, gives: list[str], no_hang: None
) -> None:
    shared, single = twin_pairs(tmp_path)
    # The helper keeps every sub-tree given (at least two: it may hold two
    # at once), and has begun its first when this process asks for one
    # back (the holds). It stops in its first copy until this process, done
    # with its own part, has asked: it sees the request when that sub-tree
    # is done, so the others surely come back.
    ready_r, ready_w = os.pipe()
    main = os.getpid()
    real_copy, real_send, real_steal = synchro.endpoints.local.filecopy._copy_data, Helper._send, Helper.steal
    stolen: list[str] = []

    def copy(src: int, dst: int, *args: Any, **kwargs: Any) -> int:
        if os.getpid() != main:
            os.read(ready_r, 1)
        return real_copy(src, dst, *args, **kwargs)

    def send(self: Helper, message: tuple[str, object]) -> None:
        real_send(self, message)
        if message[0] == "steal" and not stolen:
            os.write(ready_w, b"." * 4096)  # enough for every copy the helper still makes

    def steal(self: Helper) -> list[Action] | None:
        before = set(self.stolen)
        actions = real_steal(self)
        if actions is not None:
            [index] = self.stolen - before
            rel = self.given[index]
            stolen.append(rel)
            # The helper's own plan of that sub-tree, nothing of anything else.
            assert actions and all(a.path == rel or a.path.startswith(f"{rel}/") for a in actions)
            # A new folder comes back as its MKDIR and its deferred TREE, planned here.
            assert [a.op for a in actions] == [Op.MKDIR, Op.TREE]
        return actions

    monkeypatch.setattr(synchro.endpoints.local.filecopy, "_copy_data", copy)
    monkeypatch.setattr(
        synchro.endpoints.local.filecopy, "_copy_small", None
    )  # the copy in Python, where it can wait
    monkeypatch.setattr(Helper, "_send", send)
    monkeypatch.setattr(Helper, "steal", steal)
    one = run(shared, "2", monkeypatch)
    other = run(single, "1", monkeypatch)
    os.close(ready_r)
    os.close(ready_w)

    assert len(gives) >= 2 and stolen and set(stolen) < set(gives)
    assert_same_outcome(shared, single, one, other)


@requires_rsync
def test_at_the_end_of_its_walk_this_process_plans_what_the_helper_has_not_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gives: list[str], no_hang: None
) -> None:
    shared, single = twin_pairs(tmp_path)
    # The helper stops in the first sub-tree it plans until this process,
    # at the end of its walk, has taken back all it could: the sub-tree
    # queued behind that first one (it may hold two at once) surely comes
    # back. This process takes nothing back before the helper has taken its
    # first sub-tree (the hold), so that one is surely the helper's.
    unhold = hold_shared_runs(monkeypatch.setattr, keep="first")
    release_r, release_w = os.pipe()
    main = os.getpid()
    real_run, real_take_back = Walk.run, Helper.take_back
    taken: list[str] = []
    blocked = [False]

    def walk_run(self: Walk, steps: list[Step]) -> None:
        if os.getpid() != main and not blocked[0]:
            blocked[0] = True  # in the helper (a fresh copy of this list in each run)
            os.read(release_r, 1)
        real_run(self, steps)

    def take_back(self: Helper) -> list[Step] | None:
        steps = real_take_back(self)
        if steps is None:
            os.write(release_w, b".")
        else:
            taken.append(steps[-1].rel)  # type: ignore[union-attr]
        return steps

    monkeypatch.setattr(Walk, "run", walk_run)
    monkeypatch.setattr(Helper, "take_back", take_back)
    for step in ("first", "second"):  # new folders (given with their MKDIR), then changes of every kind
        if step == "second":
            change(shared.src)
            change(single.src)
        gives.clear()
        taken.clear()
        one = run(shared, "2", monkeypatch)
        other = run(single, "1", monkeypatch)
        assert taken and set(taken) < set(gives), (taken, gives)
        assert_same_outcome(shared, single, one, other)
    os.close(release_r)
    os.close(release_w)
    unhold()


def test_the_deletion_guard_counts_the_helpers_deletions(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, gives: list[str]
) -> None:
    build(pair.src, {f"d{i:02d}": {f"f{j}": "x" for j in range(5)} for i in range(20)})
    assert run(pair, "2", monkeypatch).exit_code == ExitCode.OK
    before = snapshot(pair.rep)
    for i in range(20):
        for j in range(5):
            os.unlink(pair.src / f"d{i:02d}" / f"f{j}")
    gives.clear()

    report = run(pair, "2", monkeypatch)

    assert gives
    assert report.exit_code == ExitCode.GUARD
    assert "would delete 100 of the replica's 100 files" in report.message
    assert snapshot(pair.rep) == before  # nothing deleted by either process


def helper_fails_at_once(self: Helper, *args: object) -> None:
    os._exit(3)


@requires_rsync
def test_a_helper_that_dies_leaves_its_part_to_this_process(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, gives: list[str]
) -> None:
    build(pair.src, first_tree(), mtime_ns=BASE_NS)
    monkeypatch.setattr(Helper, "_serve", helper_fails_at_once)

    report = run(pair, "2", monkeypatch)

    assert report.exit_code == ExitCode.OK, report.failed
    assert_rsync_clean(pair.src, pair.rep)
    messages = log_messages(pair.logs)
    # Whether it was gone before the first sub-tree was given or after.
    assert sum(m.startswith("WARNING the helper process stopped") for m in messages) == 1
    added = [m for m in entries(messages) if m.startswith("ADDED ")]
    assert len(added) == len(set(added)) == report.counts["added"]


@requires_rsync
def test_a_helper_that_fails_while_applying_leaves_its_part_to_this_process(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, held: None, gives: list[str]
) -> None:
    build(pair.src, first_tree(), mtime_ns=BASE_NS)
    main = os.getpid()
    real = synchro.pipeline.apply._carry_out
    carried = [0]

    def carry_out(action: Action, ctx: Any, **kwargs: Any) -> None:
        if os.getpid() != main:
            carried[0] += 1  # in the helper
            if carried[0] == 5:
                raise RuntimeError("the helper broke")
        real(action, ctx, **kwargs)

    monkeypatch.setattr(synchro.pipeline.apply, "_carry_out", carry_out)

    report = run(pair, "2", monkeypatch)

    assert gives
    # Four changes made, each with its line: nothing is missing from the log.
    assert report.exit_code == ExitCode.OK, report.failed
    assert report.unlogged == 0
    assert_rsync_clean(pair.src, pair.rep)
    messages = log_messages(pair.logs)
    warnings = [m for m in messages if m.startswith("WARNING ")]
    assert len(warnings) == 1 and "RuntimeError: the helper broke" in warnings[0]
    added = [m for m in messages if m.startswith("ADDED ")]
    assert len(added) == len(set(added)) == report.counts["added"] == len(snapshot(pair.rep)) - 1  # not "."


# --- a helper killed outright: the log says what it may lack --------------------------

PER_FOLDER = 100  # files added in each folder: a sub-tree's first slice is SLICE copies
KILLED_AFTER = 10  # copies the helper makes before it is killed, with no line sent
HANG_GUARD_S = 120  # a broken hold fails the test after this long instead of hanging the suite


def tree_for_a_killed_helper(pair: Pair) -> int:
    """Folders on both sides, new files in them: every action of a given
    sub-tree is an ADDED file. Returns the number of files added."""
    build(pair.src, {f"d{i:02d}": {} for i in range(FOLDERS)}, mtime_ns=BASE_NS)
    assert synchro.mirror(pair.src, pair.rep).exit_code == ExitCode.OK
    for i in range(FOLDERS):
        build(pair.src / f"d{i:02d}", {f"f{j:03d}": f"{i} {j}" for j in range(PER_FOLDER)}, mtime_ns=BASE_NS)
    return FOLDERS * PER_FOLDER


def assert_the_log_says_what_it_lacks(pair: Pair, files: int, report_added: int | None = None) -> None:
    """KILLED_AFTER changes have no line; the WARNING and the SUMMARY say up to a slice may lack one."""
    messages = log_messages(pair.logs)
    added = [m for m in messages if m.startswith("ADDED ")]
    assert len(added) == len(set(added)) == files - KILLED_AFTER
    assert len(snapshot(pair.rep, content=False)) == 1 + FOLDERS + files  # ".", and every file is there
    assert_rsync_clean(pair.src, pair.rep)
    [warning] = [m for m in messages if m.startswith("WARNING ")]
    assert warning.startswith("WARNING the helper process stopped: it ended early (killed by signal 9); ")
    assert f"up to {synchro.pipeline.helper.SLICE} changes it made there have no line in this log" in warning
    assert re.search(r"it was applying d\d\d/,", warning), warning
    assert messages[-1].startswith(f"SUMMARY added={files - KILLED_AFTER} ")
    assert messages[-1].endswith(
        f" exit=1 (up to {synchro.pipeline.helper.SLICE} changes have no line in this log)"
    )
    if report_added is not None:
        assert report_added == files - KILLED_AFTER


@requires_rsync
def test_a_helper_killed_while_applying_leaves_a_warning_and_exit_1(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, held: None, no_hang: None
) -> None:
    files = tree_for_a_killed_helper(pair)
    main = os.getpid()
    real = synchro.pipeline.apply._carry_out
    carried = [0]

    def carry_out(action: Action, ctx: Any, **kwargs: Any) -> None:
        real(action, ctx, **kwargs)
        if os.getpid() != main:
            carried[0] += 1  # in the helper: its changes are made, their outcome not yet sent
            if carried[0] == KILLED_AFTER:
                os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(synchro.pipeline.apply, "_carry_out", carry_out)

    report = run(pair, "2", monkeypatch)

    assert report.exit_code == ExitCode.FAILED
    assert report.failed == []
    assert report.unlogged == synchro.pipeline.helper.SLICE
    assert_the_log_says_what_it_lacks(pair, files, report.counts["added"])
    assert len(report.added) == len(set(report.added)) == files - KILLED_AFTER
    again = pair.mirror()  # nothing left to do
    assert again.exit_code == ExitCode.OK and again.changed == 0


# The command, with the helper stopping after KILLED_AFTER copies (before it
# sends their outcome) until it is killed.
# Its pid goes to the test on a pipe of its own (its descriptor is the first
# argument): the console is the command's.
KILLED_CHILD = r"""
import os, sys
sys.path.insert(0, TESTS)
from holds import hold_shared_runs
import synchro.pipeline.apply
hold_shared_runs(setattr)
main_pid = os.getpid()
tell = int(sys.argv.pop(1))
never, kept_open = os.pipe()  # nothing is ever written: a read blocks until the kill
real = synchro.pipeline.apply._carry_out
carried = 0
def carry_out(action, ctx, **kwargs):
    global carried
    real(action, ctx, **kwargs)
    if os.getpid() != main_pid:
        carried += 1
        if carried == KILLED_AFTER:
            os.write(tell, f"{os.getpid()}\n".encode())
            os.read(never, 1)
synchro.pipeline.apply._carry_out = carry_out
from synchro.faces.cli import main
sys.exit(main(sys.argv[1:]))
""".replace("TESTS", repr(str(Path(__file__).parent))).replace("KILLED_AFTER", str(KILLED_AFTER))


@requires_rsync
def test_the_command_says_when_a_killed_helper_took_lines_with_it(pair: Pair) -> None:
    files = tree_for_a_killed_helper(pair)
    told_r, told_w = os.pipe()
    child = start_python(
        KILLED_CHILD,
        *map(str, (told_w, pair.src, pair.rep, "24", pair.logs, "--once")),
        env={**child_env(), ENV: "2"},
        pass_fds=(told_w,),
    )
    os.close(told_w)
    try:
        # A broken hold must fail the test, not hang the suite: the wait is
        # bounded (generously: it only ends early when something is wrong).
        ready, _, _ = select.select([told_r], [], [], HANG_GUARD_S)
        if not ready:
            pytest.fail(f"the helper neither reached its hold nor ended within {HANG_GUARD_S} s")
        with os.fdopen(told_r) as told:
            helper = told.readline()  # "" if the command ended without reaching the hold
        if not helper:
            pytest.fail(f"the helper never reached its hold: {child.communicate(timeout=60)}")

        os.kill(int(helper), signal.SIGKILL)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:  # a broken run: not left behind, holding its pipes
            child.kill()
            child.communicate()

    assert child.returncode == 1, err
    assert err == ""
    assert_the_log_says_what_it_lacks(pair, files)
    # The console says it too: it shows the log, the helper's lines among the others'.
    assert [normal(strip_stamp(line)) for line in out.splitlines()] == log_messages(pair.logs)


class CountingBar:
    """A progress bar that remembers what it was told."""

    def __init__(self, entries: int, nbytes: int) -> None:
        self.total = (entries, nbytes)
        self.done = [0, 0]
        self.closed = False

    def advance(self, entries: int, nbytes: int) -> None:
        self.done[0] += entries
        self.done[1] += nbytes

    def grow(self, entries: int, nbytes: int) -> None:
        self.total = (self.total[0] + entries, self.total[1] + nbytes)

    def close(self) -> None:
        self.closed = True


def test_the_bar_counts_the_helpers_progress_too(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, gives: list[str]
) -> None:
    build(pair.src, first_tree(), mtime_ns=BASE_NS)
    monkeypatch.setenv(ENV, "2")
    bars: list[CountingBar] = []

    def factory(entries: int, nbytes: int) -> CountingBar:
        bars.append(CountingBar(entries, nbytes))
        return bars[-1]

    report = synchro.pipeline.engine.run_cycle(
        pair.src, pair.rep, make_options(), DailyLog(pair.logs), progress=factory
    )

    assert gives and report.exit_code == ExitCode.OK
    [bar] = bars
    assert bar.closed
    assert bar.total[1] == report.bytes_copied > 0
    # Every entry of both processes, the folders' own times included.
    assert tuple(bar.done) == bar.total
    assert bar.total[0] >= report.counts["added"]


def test_the_command_shows_the_helpers_lines_once(pair: Pair) -> None:
    build(pair.src, first_tree(), mtime_ns=BASE_NS)
    env = {**child_env(), ENV: "2"}
    done = subprocess.run(
        [sys.executable, "-m", "synchro", pair.src, pair.rep, "24", pair.logs, "--once", "-v"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    shown = [line[20:] for line in done.stdout.splitlines() if line[20:].startswith("ADDED ")]
    logged = [m for m in log_messages(pair.logs) if m.startswith("ADDED ")]
    assert len(shown) == len(set(shown)) > 4 * FOLDERS
    assert sorted(shown) == sorted(logged)
    # One process writes both, in one order: the helper's lines among this process's, as they come.
    assert [normal(strip_stamp(line)) for line in done.stdout.splitlines()] == log_messages(pair.logs)


# --- the walk's rules for what may be given ------------------------------------------


class TakeAll:
    """A Share that takes every sub-tree it is offered."""

    def __init__(self) -> None:
        self.units: list[list[Step]] = []

    def wants(self) -> bool:
        return True

    def give(self, steps: list[Step]) -> bool:
        self.units.append(steps)
        return True


def plan_here(pair: Pair, units: list[list[Step]]) -> Plan:
    plan = Plan()
    src_fd, rep_fd = open_root(str(pair.src)), open_root(str(pair.rep))
    try:
        walk = Walk(LocalTree(src_fd), LocalTree(rep_fd), PlanRules(keep_owner=True), plan)
        for unit in units:
            walk.run(unit)
    finally:
        os.close(src_fd)
        os.close(rep_fd)
    return plan


def test_the_given_sub_trees_and_the_rest_make_the_whole_plan(pair: Pair) -> None:
    build(pair.src, first_tree(), mtime_ns=BASE_NS)
    assert synchro.mirror(pair.src, pair.rep).exit_code == ExitCode.OK
    change(pair.src)
    rules = PlanRules(keep_owner=True)
    whole = build_plan(str(pair.src), str(pair.rep), rules)
    share = TakeAll()

    part = build_plan(str(pair.src), str(pair.rep), rules, share=share)
    rest = plan_here(pair, share.units)

    def key(action: Any) -> tuple[Op, str]:
        return (action.op, action.path)

    assert part.given == [unit[-1].rel for unit in share.units]  # type: ignore[union-attr]
    assert Counter(map(key, part.actions + rest.actions)) == Counter(map(key, whole.actions))
    assert sorted(part.deletions + rest.deletions) == sorted(whole.deletions)
    given = set(part.given)
    assert "d05" not in given  # its name changes type
    # Only sub-trees directly below a folder on both sides: never one inside a new folder.
    assert all("/" not in rel or rel.rpartition("/")[0] not in {"fresh", "d06/g2"} for rel in given)
    new = [unit for unit in share.units if unit[-1].side.name == "SOURCE"]  # type: ignore[union-attr]
    assert new, "no new folder was given: the test proves less than it says"
    for unit in new:
        assert len(unit) == 2 and unit[0].op is Op.MKDIR  # type: ignore[union-attr]


# --- stopping a shared run --------------------------------------------------------------

SLOW_SIZE = 77_777

# The command, with the helper stopping in the middle of its first copy of a
# SLOW_SIZE file (a temporary exists then) until a signal stops it. It says
# READY once the command, done with its own part, waits for it: the signal
# finds both at a known point.
CHILD = r"""
import os, sys
sys.path.insert(0, TESTS)
from holds import hold_shared_runs
import synchro.endpoints.local.filecopy
from synchro.pipeline.helper import Helper
hold_shared_runs(setattr)  # the helper keeps what it is given, and begins it
main_pid = os.getpid()
never, kept_open = os.pipe()  # nothing is ever written: a read blocks until a signal
waiting_r, waiting_w = os.pipe()  # a byte when the command has done its own part
real_steal = Helper.steal
def steal(self):
    os.write(waiting_w, b".")
    return real_steal(self)
Helper.steal = steal
real = synchro.endpoints.local.filecopy._copy_data
def slow(src, dst, *args, **kwargs):
    if os.getpid() != main_pid and os.fstat(src).st_size == SIZE:
        os.read(waiting_r, 1)
        print(f"READY {os.getpid()} {os.readlink(f'/proc/self/fd/{dst}')}", flush=True)
        os.read(never, 1)
    return real(src, dst, *args, **kwargs)
synchro.endpoints.local.filecopy._copy_data = slow
synchro.endpoints.local.filecopy._copy_small = None  # the copy in Python, where it can wait
from synchro.faces.cli import main
sys.exit(main(sys.argv[1:]))
""".replace("SIZE", str(SLOW_SIZE)).replace("TESTS", repr(str(Path(__file__).parent)))


def start_stopped_helper(pair: Pair) -> tuple[subprocess.Popen[str], int, Path]:
    """The command, stopped with its helper in the middle of a copy: (command, helper's pid, its temporary)."""
    build(
        pair.src,
        {f"d{i:02d}": {"slow.dat": "s" * SLOW_SIZE, "small": "x"} for i in range(FOLDERS)},
        mtime_ns=BASE_NS,
    )
    child = start_python(
        CHILD,
        *map(str, (pair.src, pair.rep, "24", pair.logs, "--once", "-q")),
        env={**child_env(), ENV: "2"},
        start_new_session=True,  # its own process group, for the Ctrl+C case
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("READY "):
            _, pid, temporary = line.rstrip("\n").split(" ", 2)
            return child, int(pid), Path(temporary)
    child.kill()
    pytest.fail(f"the helper never copied a slow file: {child.communicate(timeout=30)[1]}")


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(") ")[2].startswith("Z")  # a zombie waiting for init


def wait_gone(pid: int) -> None:
    """Wait until process ``pid`` (not a child of this one) has ended."""
    try:
        ended = os.pidfd_open(pid)  # readable once the process has ended
    except ProcessLookupError:
        return
    try:
        # The timeout only keeps a broken run from hanging the suite.
        assert select.select([ended], [], [], 120)[0], f"the helper {pid} is still running"
    finally:
        os.close(ended)


def temporaries(root: Path) -> list[bytes]:
    return [path for path in snapshot(root, content=False) if b".synchro-tmp-" in path]


@requires_rsync
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl+C", "kill -9"])
def test_stopping_a_shared_run_stops_the_helper_cleanly(pair: Pair, how: str) -> None:
    child, helper, temporary = start_stopped_helper(pair)
    assert temporary.exists() and temporary.name.startswith(".synchro-tmp-")

    if how == "SIGTERM":
        child.send_signal(signal.SIGTERM)  # to the command only, as systemd or kill would
    elif how == "Ctrl+C":
        os.killpg(child.pid, signal.SIGINT)  # to the whole foreground group, as a terminal does
    else:
        child.kill()
    _, err = child.communicate(timeout=30)
    wait_gone(helper)

    expected = {"SIGTERM": (143, "synchro: terminated\n"), "Ctrl+C": (130, "synchro: interrupted\n")}
    assert not temporary.exists()  # the helper removed its half-written file
    if how in expected:
        code, said = expected[how]
        # Quiet: what needs a person on standard error (the run's START, its
        # INTERRUPTED line and SUMMARY), then the one-line message.
        assert child.returncode == code and err.endswith(said), err
        assert " INTERRUPTED the run was stopped by " in err
        assert temporaries(pair.rep) == []
        # Every entry made by either process has its line, the helper's
        # folder made before it was stopped included.
        made = {
            os.fsdecode(path) + ("/" if entry.kind == "dir" else "")
            for path, entry in snapshot(pair.rep, content=False).items()
            if path != b"."
        }
        added = {m.removeprefix("ADDED ") for m in log_messages(pair.logs) if m.startswith("ADDED ")}
        assert made == added and any(path.endswith("/") for path in made)
    else:
        # The command's lines in memory died with it; the helper, stopped by
        # the kernel's signal, writes its own: the folder it made. The run's
        # START was written before the helper changed anything.
        folder = temporary.parent.name
        messages = log_messages(pair.logs)
        assert f"ADDED {folder}/" in messages
        assert messages[0] == f"START source={pair.src} replica={pair.rep} mode=single"
    # After kill -9 the command itself may leave one temporary: the next run removes it.
    report = synchro.mirror(pair.src, pair.rep, logpath=pair.logs)
    assert report.exit_code == ExitCode.OK
    assert_rsync_clean(pair.src, pair.rep)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("way", ["compiled", "ctypes"])
def test_the_helper_asks_for_sigterm_when_its_parent_dies(way: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if way == "compiled":
        copy_module = pytest.importorskip(
            "synchro.endpoints.local._copy"
        )  # built where a compiler is (tests/test_build.py)
        assert hasattr(copy_module, "parent_death_signal")
    else:
        monkeypatch.setitem(
            sys.modules, "synchro.endpoints.local._copy", None
        )  # an install without the compiled module
    ready_r, ready_w = os.pipe()
    out_r, out_w = os.pipe()
    never_r, never_w = os.pipe()  # nothing is ever written to it
    parent = os.fork()
    if parent == 0:  # stands for the command: starts a "helper", then dies
        code = 1
        try:
            helper = os.fork()
            if helper == 0:
                code = 2
                signal.signal(signal.SIGTERM, lambda *_: os._exit(os.write(out_w, b"SIGTERM") and 0))
                synchro.pipeline.helper._parent_death_signal(signal.SIGTERM)
                os.write(out_w, f"{os.getpid()} ".encode())
                os.write(ready_w, b".")
                os.read(never_r, 1)  # waits for the signal
            else:
                code = 0 if os.read(ready_r, 1) == b"." else 3
        finally:
            os._exit(code)
    for fd in (ready_w, out_w, never_r):
        os.close(fd)
    _, status = os.waitpid(parent, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    got = b""
    # Until the helper says it got the signal, or ends without a word (then
    # every end of out_w is closed). The timeout only keeps a broken run
    # from hanging the suite.
    while not got.endswith(b"SIGTERM") and select.select([out_r], [], [], 120)[0]:
        chunk = os.read(out_r, 100)
        if not chunk:
            break
        got += chunk
    pid = int(got.split()[0])
    if not got.endswith(b"SIGTERM"):
        os.kill(pid, signal.SIGKILL)
    for fd in (ready_r, out_r, never_w):
        os.close(fd)
    assert got.endswith(b"SIGTERM"), "the helper outlived its parent"


def test_a_refused_run_leaves_no_helper_behind(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    pids: list[int] = []
    real = Helper._start

    def start(self: Helper) -> bool:
        started = real(self)
        pids.append(self.pid)
        return started

    monkeypatch.setattr(Helper, "_start", start)
    build(pair.src, {f"d{i:02d}": {f"f{j}": "x" for j in range(5)} for i in range(20)})
    assert run(pair, "2", monkeypatch).exit_code == ExitCode.OK
    for i in range(20):
        shutil.rmtree(pair.src / f"d{i:02d}")
        (pair.src / f"d{i:02d}").mkdir()

    assert run(pair, "2", monkeypatch).exit_code == ExitCode.GUARD
    assert pids and all(gone(pid) for pid in pids)
