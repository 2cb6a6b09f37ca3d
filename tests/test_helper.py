"""A run shared with a helper process (synchro.pipeline.helper): same outcome, same safety.

``SYNCHRO_PROCESSES=2`` makes every run share its work even on one core,
``=1`` keeps it in one process: the two are compared on identical trees.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import Pair, child_env, requires_rsync, start_python
from treeutil import (
    BASE_NS,
    Link,
    assert_rsync_clean,
    build,
    entries,
    log_messages,
    snapshot,
    write,
)

import synchro
import synchro.endpoints.local.filecopy
import synchro.endpoints.local.replica
import synchro.pipeline.engine
import synchro.pipeline.helper
from synchro.endpoints.local.fds import open_root
from synchro.endpoints.local.replica import LOCAL
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


@pytest.fixture(autouse=True)
def copies_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies in each process's own thread, as on a RAM disk (tmp_path is on a disk).

    These tests hold a process inside a given copy; a copy in flight on
    another thread would leave its walk and its answers to the other
    process running (tests/test_copies_in_flight.py covers those).
    """
    monkeypatch.setattr(synchro.endpoints.local.replica, "concurrency_for", lambda fs_type: LOCAL)


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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gives: list[str], no_hang: None
) -> None:
    shared, single = twin_pairs(tmp_path)
    # The helper stops in its first copy until this process, done with its
    # own part, has asked to take a sub-tree back: it sees the request when
    # that sub-tree is done, so the others surely come back.
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
    # queued behind that first one surely comes back.
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
        assert taken and set(taken) <= set(gives), (taken, gives)
        assert_same_outcome(shared, single, one, other)
    os.close(release_r)
    os.close(release_w)


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
    assert any(m.startswith("WARNING the helper process stopped") for m in messages)
    added = [m for m in entries(messages) if m.startswith("ADDED ")]
    assert len(added) == len(set(added)) == report.counts["added"]


@requires_rsync
def test_a_helper_that_fails_while_applying_leaves_its_part_to_this_process(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, gives: list[str]
) -> None:
    build(pair.src, first_tree(), mtime_ns=BASE_NS)

    def failing(*args: object) -> object:
        def apply_part(*args: object) -> tuple[synchro.Report, str]:
            raise RuntimeError("the helper broke")

        return apply_part

    monkeypatch.setattr(synchro.pipeline.engine, "_helper_apply", failing)

    report = run(pair, "2", monkeypatch)

    assert gives
    assert report.exit_code == ExitCode.OK, report.failed
    assert_rsync_clean(pair.src, pair.rep)
    warnings = [m for m in log_messages(pair.logs) if m.startswith("WARNING ")]
    assert len(warnings) == 1 and "RuntimeError: the helper broke" in warnings[0]
    assert report.counts["added"] == sum(1 for m in log_messages(pair.logs) if m.startswith("ADDED "))


class CountingBar:
    """A progress bar that remembers what it was told."""

    def __init__(self, entries: int, nbytes: int) -> None:
        self.total = (entries, nbytes)
        self.done = [0, 0]
        self.closed = False

    def advance(self, entries: int, nbytes: int) -> None:
        self.done[0] += entries
        self.done[1] += nbytes

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
# SLOW_SIZE file (a temporary exists then) until a signal stops it.
CHILD = r"""
import os, sys
import synchro.endpoints.local.filecopy
main_pid = os.getpid()
never, kept_open = os.pipe()  # nothing is ever written: a read blocks until a signal
real = synchro.endpoints.local.filecopy._copy_data
def slow(src, dst, *args, **kwargs):
    if os.getpid() != main_pid and os.fstat(src).st_size == SIZE:
        print(f"READY {os.getpid()} {os.readlink(f'/proc/self/fd/{dst}')}", flush=True)
        os.read(never, 1)
    return real(src, dst, *args, **kwargs)
synchro.endpoints.local.filecopy._copy_data = slow
synchro.endpoints.local.filecopy._copy_small = None  # the copy in Python, where it can wait
import synchro.endpoints.local.replica as replica
replica.concurrency_for = lambda fs_type: replica.LOCAL  # copies in order: held in this one
from synchro.faces.cli import main
sys.exit(main(sys.argv[1:]))
""".replace("SIZE", str(SLOW_SIZE))


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


def wait_gone(pid: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not gone(pid):
        assert time.monotonic() < deadline, f"the helper {pid} is still running"
        time.sleep(0.02)


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
        assert (child.returncode, err) == expected[how]
        assert temporaries(pair.rep) == []
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
    deadline = time.monotonic() + 20
    while not got.endswith(b"SIGTERM") and time.monotonic() < deadline:
        if select.select([out_r], [], [], 0.5)[0]:
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
