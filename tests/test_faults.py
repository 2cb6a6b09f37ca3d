"""Faults: kill -9 and signals at chosen points, a full disk, replicas that cannot be written.

Every fault lands at a known point. The child processes stop in an engine
hook (before the Nth action of a kind, in the middle of a file's copy, while
listing a folder), say where they are on standard output, and block reading
their standard input: the parent kills or signals them there. Nothing waits
on a timer. After each fault a normal run must converge: no temporary left,
an exact mirror (``rsync -ani --delete`` prints nothing), and no file under a
real name was ever anything but the old replica version or the new source one.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    NOBODY,
    Pair,
    chown_tree,
    mirror_as_nobody,
    open_to_others,
    run_as_nobody,
    start_python,
)
from treeutil import (
    BASE_NS,
    Link,
    Snapshot,
    assert_mirror,
    assert_rsync_clean,
    build,
    log_lines,
    log_messages,
    normal,
    set_mtime,
    snapshot,
    strip_stamp,
    summary,
    write,
)

import synchro
import synchro.pipeline.apply
import synchro.pipeline.engine
import synchro.pipeline.log
from synchro import Hooks
from synchro.options import make_options
from synchro.pipeline.log import DailyLog
from synchro.pipeline.plan import Action

MiB = 1 << 20

# The child: runs synchro (API or command) with a hook that stops at one point.
CHILD = r"""
import json, os, sys
import synchro, synchro.pipeline.engine, synchro.endpoints.local.tree
from synchro import Hooks

args = json.loads(sys.argv[1])
stop = args["stop"]

def wait_for_parent(where):
    print("READY " + where, flush=True)
    os.read(0, 1)  # the parent kills us here, or writes a byte to let us go on

seen = 0
def before_action(action):  # before the Nth action of a kind
    global seen
    if action.op.name == stop["op"] and "bytes" not in stop:
        if seen == stop["n"]:
            wait_for_parent(f"{action.op.name} {action.path}")
        seen += 1

def during_copy(action, copied):  # in the middle of one file's copy
    if action.path == stop.get("path") and copied >= stop["bytes"] and not stop.get("done"):
        stop["done"] = True
        wait_for_parent(f"COPYING {action.path} {copied}")

if stop["op"] == "SCAN":  # while listing the Nth folder of the plan
    real_list = synchro.endpoints.local.tree.LocalTree.list
    def slow_list(tree, rel):
        global seen
        if seen == stop["n"]:
            wait_for_parent(f"SCAN {rel}")
        seen += 1
        return real_list(tree, rel)
    synchro.endpoints.local.tree.LocalTree.list = slow_list
hooks = Hooks(before_action=before_action, during_copy=during_copy)

if "cli" in args:
    # The command makes its own Hooks(); the engine asks for them by name.
    synchro.pipeline.engine.Hooks = lambda: hooks
    from synchro.faces.cli import main
    sys.exit(main(args["cli"]))
report = synchro.mirror(args["src"], args["rep"], logpath=args["logs"], hooks=hooks)
sys.exit(int(report.exit_code))
"""


def start_child(stop: dict[str, Any], **args: Any) -> tuple[subprocess.Popen[str], str]:
    """Start the child and wait until it stops at ``stop``; return it and where it stopped."""
    child = start_python(CHILD, json.dumps({"stop": stop, **args}))
    assert child.stdout is not None
    for line in child.stdout:  # the command prints log lines before the hook fires
        if line.startswith("READY "):
            return child, line[6:].rstrip("\n")
    child.kill()
    _, err = child.communicate(timeout=30)
    pytest.fail(f"the child did not reach its hook {stop}: {err}")


def temporaries(root: Path) -> list[bytes]:
    return [path for path in snapshot(root, content=False) if b".synchro-tmp-" in path]


def assert_no_torn_entry(replica: Path, old: Snapshot, new: Snapshot) -> None:
    """Every file and link under a real name is the old replica version or the new source one."""
    for path, entry in snapshot(replica).items():
        if entry.kind not in ("file", "link") or b".synchro-tmp-" in path:
            continue
        versions = [
            version.data
            for version in (old.get(path), new.get(path))
            if version and version.kind == entry.kind
        ]
        assert entry.data in versions, f"{path!r} is neither the old nor the new version"


def assert_converges(pair: Pair) -> None:
    """A normal run after the fault: exit 0, no temporary, an exact mirror, then nothing to do."""
    rerun = synchro.mirror(pair.src, pair.rep, logpath=pair.logs)
    assert rerun.exit_code == 0, (rerun.failed, rerun.message)
    assert temporaries(pair.rep) == []
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    again = synchro.mirror(pair.src, pair.rep)
    assert (again.added, again.overwritten, again.deleted) == ([], [], [])


# --- a run with every kind of action -------------------------------------------------------------


def changed_pair(pair: Pair) -> Snapshot:
    """Mirror an old tree, then change the source so that the next run copies,
    deletes (whole folders too), changes types, rewrites a link, writes into
    a read-only folder and sets folder times. Returns the replica's snapshot."""
    build(
        pair.src,
        {
            **{f"f{index:02d}": f"old {index}" for index in range(20)},
            "gone": {**{f"g{index}": "g" for index in range(10)}, "sub": {"s0": "s", "s1": "s", "s2": "s"}},
            **{f"x{index}": "x" for index in range(4)},
            "to-folder": "a file first",
            "to-file": {"a": "a", "b": "b"},
            "ro": {"r0": "r", "r1": "r", "r2": "r"},
            "link": Link("a"),
            "keep": {f"k{index}": "k" for index in range(5)},
        },
        mtime_ns=BASE_NS,
    )
    write(pair.src / "big.bin", os.urandom(3 * MiB), BASE_NS)
    os.chmod(pair.src / "ro", 0o555)
    assert synchro.mirror(pair.src, pair.rep).exit_code == 0
    old = snapshot(pair.rep)

    for index in range(20):
        write(pair.src / f"f{index:02d}", f"new version {index}", BASE_NS + 1)
    write(pair.src / "big.bin", os.urandom(3 * MiB), BASE_NS + 1)
    shutil.rmtree(pair.src / "gone")
    for index in range(4):
        os.unlink(pair.src / f"x{index}")
    os.unlink(pair.src / "to-folder")
    build(pair.src, {"to-folder": {"inner": "now a folder"}})
    shutil.rmtree(pair.src / "to-file")
    write(pair.src / "to-file", "now a file")
    os.chmod(pair.src / "ro", 0o755)
    write(pair.src / "ro" / "r1", "r1 rewritten", BASE_NS + 1)
    os.chmod(pair.src / "ro", 0o555)
    os.unlink(pair.src / "link")
    os.symlink("b", pair.src / "link")
    build(pair.src, {"added": {**{f"n{index}": f"n{index}" for index in range(10)}, "deep": {"d0": "d"}}})
    os.chmod(pair.src / "added" / "deep", 0o555)
    for folder in ["to-folder", "added/deep", "added", "ro", "keep", "."]:
        set_mtime(pair.src / folder, BASE_NS + 2)
    return old


# --- kill -9 at chosen points, then a normal run ------------------------------------------------

KILL_POINTS = [
    pytest.param({"op": "COPY", "n": 0}, id="before-the-first-file"),
    pytest.param({"op": "COPY", "n": 12}, id="after-12-files"),
    pytest.param({"op": "COPY", "n": 30}, id="after-30-files"),
    pytest.param({"op": "COPY", "path": "big.bin", "bytes": MiB}, id="in-the-middle-of-a-large-file"),
    pytest.param({"op": "DELETE", "n": 0}, id="before-the-first-deletion"),
    pytest.param({"op": "DELETE", "n": 8}, id="after-8-deletions"),
    pytest.param({"op": "RMDIR", "n": 1}, id="between-folder-removals"),
    pytest.param({"op": "DIRMETA", "n": 2}, id="during-folder-time-updates"),
]


@pytest.mark.parametrize("stop", KILL_POINTS)
def test_kill_9_at_any_point_leaves_old_or_new_versions_and_the_next_run_converges(
    pair: Pair, stop: dict[str, Any]
) -> None:
    old = changed_pair(pair)
    new = snapshot(pair.src)

    child, where = start_child(stop, src=str(pair.src), rep=str(pair.rep), logs=str(pair.logs))
    op, path, *copied = where.split(" ")
    at_kill = snapshot(pair.rep)
    child.kill()  # SIGKILL: no cleanup of any kind runs
    child.communicate(timeout=30)

    assert child.returncode == -signal.SIGKILL
    assert op == ("COPYING" if "bytes" in stop else stop["op"])
    if op in ("DELETE", "RMDIR"):  # stopped just before it: still there, and so is the rest
        assert path.encode() in at_kill
    if op == "COPYING":  # the half-written file is only a temporary; the old version stays
        part = (new[b"big.bin"].data or b"")[: int(copied[0])]
        assert [at_kill[name].data for name in temporaries(pair.rep)] == [part]
        assert at_kill[b"big.bin"].data == old[b"big.bin"].data
    assert_no_torn_entry(pair.rep, old, new)
    assert all(strip_stamp(line) for line in log_lines(pair.logs))  # whole lines only

    assert_converges(pair)  # the kernel released the lock of the killed run


# --- SIGINT and SIGTERM at chosen points, in single and ongoing mode --------------------------------

SIGNAL_POINTS = [
    pytest.param("single", {"op": "SCAN", "n": 2}, signal.SIGINT, id="single-while-scanning-SIGINT"),
    pytest.param("single", {"op": "COPY", "n": 5}, signal.SIGTERM, id="single-between-files-SIGTERM"),
    pytest.param("single", {"op": "DELETE", "n": 3}, signal.SIGINT, id="single-during-deletions-SIGINT"),
    pytest.param(
        "single", {"op": "DIRMETA", "n": 1}, signal.SIGTERM, id="single-during-folder-times-SIGTERM"
    ),
    pytest.param("ongoing", {"op": "SCAN", "n": 0}, signal.SIGTERM, id="ongoing-while-scanning-SIGTERM"),
    pytest.param(
        "ongoing",
        {"op": "COPY", "path": "big.bin", "bytes": MiB},
        signal.SIGINT,
        id="ongoing-in-the-middle-of-a-copy-SIGINT",
    ),
    pytest.param("ongoing", {"op": "RMDIR", "n": 0}, signal.SIGTERM, id="ongoing-during-deletions-SIGTERM"),
    pytest.param(
        "ongoing", {"op": "DIRMETA", "n": 0}, signal.SIGINT, id="ongoing-during-folder-times-SIGINT"
    ),
]


@pytest.mark.parametrize(("mode", "stop", "signum"), SIGNAL_POINTS)
def test_a_signal_at_any_point_stops_cleanly_and_releases_the_lock(
    pair: Pair, mode: str, stop: dict[str, Any], signum: int
) -> None:
    old = changed_pair(pair)
    new = snapshot(pair.src)
    command = [str(pair.src), str(pair.rep), "0.25", str(pair.logs), "-q"]
    if mode == "single":
        command.append("--once")

    child, _ = start_child(stop, cli=command)
    child.send_signal(signum)
    _, err = child.communicate(timeout=30)

    code, said = (130, "interrupted") if signum == signal.SIGINT else (143, "terminated")
    assert child.returncode == code
    assert temporaries(pair.rep) == []  # removed on the way out, not left for the next run
    assert_no_torn_entry(pair.rep, old, new)
    messages = log_messages(pair.logs)
    by = "Ctrl+C" if signum == signal.SIGINT else "SIGTERM"
    stopped = messages.index(f"INTERRUPTED the run was stopped by {by}; the replica holds no partial file")
    assert messages[stopped + 1].startswith("SUMMARY ")
    assert messages[stopped + 1].endswith(f" exit={code}")
    assert messages[stopped + 2 :] == (
        [f"INTERRUPTED ongoing mode stopped by {by}"] if mode == "ongoing" else []
    )
    # Quiet, the stop is still said on stderr: the log's lines about it, then the command's.
    lines = err.splitlines()
    assert lines[-1] == f"synchro: {said}"
    assert [normal(strip_stamp(line)) for line in lines[-len(messages) + stopped - 1 : -1]] == messages[
        stopped:
    ]

    assert_converges(pair)  # the lock was released: the next run takes it


# --- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_fs() -> Iterator[Callable[[Path, str], None]]:
    """``small_fs(path, size)``: mount a tmpfs of ``size`` on ``path``, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> None:
        path.mkdir(exist_ok=True)
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a small file system needs root and mount(8)")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(path)

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def resize(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def test_a_full_replica_disk_fails_the_file_keeps_its_old_version_and_converges_later(
    pair: Pair, small_fs: Callable[[Path, str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    small_fs(pair.rep, "2m")
    build(pair.src, {"small": "s" * 1000, "doc": "old version"}, mtime_ns=BASE_NS)
    assert pair.mirror().exit_code == 0
    write(pair.src / "doc", os.urandom(3 * MiB), BASE_NS + 1)  # does not fit
    write(pair.src / "later", "fits", BASE_NS)
    start = len(log_messages(pair.logs))
    # The large copy runs in a thread beside the small one: it waits until
    # "later" is in, or "later" could find the disk full too (whichever
    # order the folder lists them in).
    later_in = threading.Event()
    real_changed, real_run = synchro.pipeline.apply._changed, synchro.pipeline.apply._Copy.run

    def changed(ctx: Any, action: Any, note: str = "") -> None:
        real_changed(ctx, action, note)
        if action.path == "later":
            later_in.set()

    def run(self: Any) -> int:  # a copy in a thread of the pool
        later_in.wait(60)  # the timeout only keeps a broken run from hanging the suite
        return real_run(self)

    monkeypatch.setattr(synchro.pipeline.apply, "_changed", changed)
    monkeypatch.setattr(synchro.pipeline.apply._Copy, "run", run)

    report = pair.mirror()

    assert report.exit_code == 1
    assert report.failed == [("doc", "No space left on device")]
    assert report.added == ["later"]
    messages = log_messages(pair.logs)[start:]
    assert "FAILED doc: No space left on device" in messages
    assert messages[-1].endswith(" exit=1")
    assert (pair.rep / "doc").read_text() == "old version"
    assert temporaries(pair.rep) == []

    resize(pair.rep, "8m")  # space is freed
    assert_converges(pair)


def test_an_injected_enospc_from_the_writer_behaves_the_same(pair: Pair) -> None:
    """The same promise where no small file system can be mounted: the write
    fails in the middle of the copy with ENOSPC."""
    build(pair.src, {"doc": "old version", "other": "o"}, mtime_ns=BASE_NS)
    pair.mirror()
    write(pair.src / "doc", os.urandom(3 * MiB), BASE_NS + 1)
    write(pair.src / "other", "o2", BASE_NS + 1)

    def disk_full(action: Action, copied: int) -> None:
        if action.path == "doc":
            assert [os.path.getsize(pair.rep / os.fsdecode(t)) for t in temporaries(pair.rep)] == [copied]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    report = synchro.mirror(pair.src, pair.rep, logpath=pair.logs, hooks=Hooks(during_copy=disk_full))

    assert report.exit_code == 1
    assert report.failed == [("doc", "No space left on device")]
    assert report.overwritten == ["other"]
    assert "FAILED doc: No space left on device" in log_messages(pair.logs)
    assert (pair.rep / "doc").read_text() == "old version"
    assert temporaries(pair.rep) == []
    assert_converges(pair)


def test_a_full_log_disk_never_stops_the_run_nor_cuts_a_line(
    pair: Pair, small_fs: Callable[[Path, str], None], capfd: pytest.CaptureFixture[str]
) -> None:
    logs = pair.root / "logdisk"
    small_fs(logs, "64k")
    build(pair.src, {f"file-{index:03d}-" + "z" * 60: "" for index in range(300)})
    (logs / "LOGS").mkdir()
    filler = logs / "filler"  # leaves 8 KiB: the run's 30 KiB of lines stop midway
    write(filler, b"f" * (56 << 10))

    report = synchro.mirror(pair.src, pair.rep, logpath=logs)

    assert report.exit_code == 0  # the mirror itself is done
    assert_mirror(pair.src, pair.rep)
    err = capfd.readouterr().err
    assert err.count("\n") == 1, err  # one warning, one line
    assert err.startswith(f"synchro: warning: cannot write the log in {logs}/LOGS: No space left on device;")
    for name in os.listdir(logs / "LOGS"):  # what did get in is whole lines, never half of one
        text = (logs / "LOGS" / name).read_bytes()
        assert text == b"" or text.endswith(b"\n")
        assert all(strip_stamp(line) for line in text.decode().splitlines())

    os.unlink(filler)  # space is freed: the next run logs again
    write(pair.src / "one-more", "x")
    synchro.mirror(pair.src, pair.rep, logpath=logs)
    messages = log_messages(logs)
    assert "ADDED one-more" in messages
    assert messages[-1].startswith("SUMMARY added=1 ")


# --- replicas that cannot be written, as an unprivileged user ---------------------------------------


@pytest.fixture
def nobody_pair(pair: Pair) -> Pair:
    """The pair with a replica and a log folder owned by nobody, reachable by nobody."""
    logs = pair.root / "nobody-logs"
    logs.mkdir()
    os.chown(logs, NOBODY, NOBODY)
    os.chown(pair.rep, NOBODY, NOBODY)
    open_to_others(pair.root)
    return Pair(pair.root, pair.src, pair.rep, logs)


def failed_lines(pair: Pair, start: int = 0) -> list[str]:
    return sorted(m for m in log_messages(pair.logs)[start:] if m.startswith("FAILED "))


def test_a_replica_nobody_may_write_fails_every_entry_clearly(nobody_pair: Pair) -> None:
    pair = nobody_pair
    build(pair.src, {"a": "a", "d": {"b": "b"}}, mtime_ns=BASE_NS)
    os.chown(pair.rep, 0, 0)  # root's replica: read-only for nobody

    child = mirror_as_nobody(pair.src, pair.rep, logpath=pair.logs)

    assert child.code == 1
    assert failed_lines(pair) == [
        "FAILED ./: Operation not permitted",  # the replica root's time cannot be set either
        "FAILED a: Permission denied",
        "FAILED d/: Permission denied",
        "FAILED d/b: its folder could not be created",
    ]
    assert log_messages(pair.logs)[-1].endswith(" exit=1")
    assert os.listdir(pair.rep) == []


def test_a_read_only_mounted_replica_fails_every_entry_and_goes_on(
    pair: Pair, small_fs: Callable[[Path, str], None]
) -> None:
    small_fs(pair.rep, "1m")
    build(pair.src, {"old": "o", "keep": "k"}, mtime_ns=BASE_NS)
    pair.mirror()
    write(pair.src / "new", "n", BASE_NS)
    write(pair.src / "keep", "changed", BASE_NS + 1)
    os.unlink(pair.src / "old")
    subprocess.run(["mount", "-o", "remount,ro", str(pair.rep)], check=True)  # even root cannot write
    start = len(log_messages(pair.logs))

    report = pair.mirror()

    assert report.exit_code == 1
    assert failed_lines(pair, start) == [
        "FAILED ./: Read-only file system",
        "FAILED keep: Read-only file system",
        "FAILED new: Read-only file system",
        "FAILED old: Read-only file system",
    ]
    subprocess.run(["mount", "-o", "remount,rw", str(pair.rep)], check=True)
    assert_converges(pair)


def test_replica_files_whose_folder_nobody_may_write_fail_alone(nobody_pair: Pair) -> None:
    pair = nobody_pair
    build(
        pair.src,
        {"gone": {"sub": {"s1": "1", "s2": "2"}, "g": "g"}, "fine": {"old": "o"}, "top": "t"},
        mtime_ns=BASE_NS,
    )
    synchro.mirror(pair.src, pair.rep, logpath=pair.root)
    chown_tree(pair.rep)
    os.chown(pair.rep / "gone" / "sub", 0, 0)  # root's: its files cannot be deleted by nobody
    shutil.rmtree(pair.src / "gone")
    os.unlink(pair.src / "fine" / "old")
    write(pair.src / "new", "n", BASE_NS)

    child = mirror_as_nobody(pair.src, pair.rep, logpath=pair.logs, max_delete="100%")

    assert child.code == 1
    assert failed_lines(pair) == [
        "FAILED gone/: Directory not empty",
        "FAILED gone/sub/: Directory not empty",
        "FAILED gone/sub/s1: Permission denied",
        "FAILED gone/sub/s2: Permission denied",
    ]
    assert sorted(child.payload["deleted"]) == ["fine/old", "gone/g"]
    assert child.payload["added"] == ["new"]
    assert sorted(os.listdir(pair.rep / "gone" / "sub")) == ["s1", "s2"]
    assert log_messages(pair.logs)[-1].endswith(" exit=1")


def test_read_only_folders_of_the_owner_are_updated_and_deleted(nobody_pair: Pair) -> None:
    """A read-only source folder is mirrored read-only. The owner of the
    replica (not root) can still change and delete what it holds: synchro
    adds u+w to such a folder of its own for the change, as rsync does, and
    puts the mode back afterwards."""
    pair = nobody_pair
    build(
        pair.src,
        {"ro": {"a": "a", "b": "b", "inner": {"x": "x"}}, "gone": {"ro": {"y": "y"}}},
        mtime_ns=BASE_NS,
    )
    for folder in ["ro/inner", "ro", "gone/ro", "gone"]:
        os.chmod(pair.src / folder, 0o555)
        set_mtime(pair.src / folder, BASE_NS)
    assert mirror_as_nobody(pair.src, pair.rep).code == 0
    assert stat.S_IMODE(os.stat(pair.rep / "ro" / "inner").st_mode) == 0o555
    write(pair.src / "ro" / "a", "a changed", BASE_NS + 1)  # root writes in 0555 folders
    os.unlink(pair.src / "ro" / "b")
    write(pair.src / "ro" / "inner" / "new", "n", BASE_NS)
    for folder in ["ro/inner", "ro"]:
        set_mtime(pair.src / folder, BASE_NS)
    shutil.rmtree(pair.src / "gone")  # root: the modes do not stop it

    child = mirror_as_nobody(pair.src, pair.rep, logpath=pair.logs, max_delete="100%")

    assert child.code == 0, child.payload
    assert sorted(child.payload["deleted"]) == ["gone/", "gone/ro/", "gone/ro/y", "ro/b"]
    assert child.payload["added"] == ["ro/inner/new"]
    assert child.payload["overwritten"] == ["ro/a"]
    assert_mirror(pair.src, pair.rep, owner=False)  # the modes are back to 0555


# --- the daily log never stops a run -----------------------------------------------------------------


def test_an_unwritable_log_folder_is_one_warning_and_the_run_goes_on(
    nobody_pair: Pair, capfd: pytest.CaptureFixture[str]
) -> None:
    pair = nobody_pair
    build(pair.src, {f"f{index}": "x" for index in range(700)})  # more than one batch of lines
    logs = pair.root / "root-logs"
    (logs / "LOGS").mkdir(parents=True)
    open_to_others(logs / "LOGS")  # readable, not writable, by nobody

    def work() -> tuple[int, Any]:
        from synchro.faces.cli import main

        return main([str(pair.src), str(pair.rep), "1", str(logs), "--once", "-q"]), None

    child = run_as_nobody(work)

    assert child.code == 0
    assert len(os.listdir(pair.rep)) == 700
    err = capfd.readouterr().err.splitlines()
    assert err[0] == (
        f"synchro: warning: cannot write the log in {logs}/LOGS: Permission denied; the run goes on without it"
    )
    # Quiet, a WARNING still reaches stderr (with its run's START): the status file could not be written either.
    assert [strip_stamp(line).split(" ")[0] for line in err[1:]] == ["START", "WARNING"]
    assert strip_stamp(err[2]) == f"WARNING status file {logs}/LOGS/status.json: Permission denied"
    assert os.listdir(logs / "LOGS") == []


def test_lines_that_could_not_be_written_wait_and_the_oldest_are_dropped_with_a_count(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """While the log cannot be written its lines wait (at most MAX_PENDING; the
    oldest beyond are dropped and counted), and are written when it can be again."""
    build(pair.src, {f"f{index:02d}": "x" for index in range(30)})
    monkeypatch.setattr(synchro.pipeline.log, "MAX_PENDING", 10)
    real_append = DailyLog._append
    full = True

    def append_unless_full(self: DailyLog) -> None:
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_append(self)

    monkeypatch.setattr(DailyLog, "_append", append_unless_full)
    log = DailyLog(pair.logs)

    report = synchro.pipeline.engine.run_cycle(pair.src, pair.rep, make_options(), log)

    assert report.exit_code == 0
    assert log_lines(pair.logs) == []
    full = False  # space is freed
    log.close()

    messages = log_messages(pair.logs)
    assert messages[0] == "WARNING 22 log lines could not be written and were dropped"  # of 32
    assert [m.split(" ")[0] for m in messages[1:]] == ["ADDED"] * 9 + ["SUMMARY"]
    assert messages[-1].startswith("SUMMARY added=30 ")
    assert capsys.readouterr().err == (
        f"synchro: warning: cannot write the log in {pair.logs}/LOGS: No space left on device; "
        "the run goes on without it\n"
    )


def test_a_closed_console_never_stops_the_run(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    """Like ``synchro ... | head -1``: the console's pipe closes during the run."""
    build(pair.src, {f"f{index}": "x" for index in range(50)})

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            if self.tell() > 100:
                raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
            return super().write(text)

    report = synchro.mirror(pair.src, pair.rep, logpath=pair.logs, console=ClosedPipe())

    assert report.exit_code == 0
    assert_mirror(pair.src, pair.rep)
    assert log_messages(pair.logs)[-1] == summary(added=50, nbytes=50)
    assert capsys.readouterr().err == ""  # a reader that went away is no problem to report


def test_a_console_that_fails_is_one_warning_and_the_run_goes_on(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unlike a closed pipe, a console that fails (a full disk under ``> file``) is said once."""
    build(pair.src, {f"f{index}": "x" for index in range(50)})

    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            if self.tell() > 100:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(text)

    report = synchro.mirror(pair.src, pair.rep, logpath=pair.logs, console=FullDisk())

    assert report.exit_code == 0
    assert log_messages(pair.logs)[-1] == summary(added=50, nbytes=50)
    assert capsys.readouterr().err == (
        "synchro: warning: cannot write to the console: No space left on device; "
        "the log file still gets every line\n"
    )


def test_a_console_that_cannot_show_a_name_gets_it_escaped(pair: Pair) -> None:
    """A console in ASCII or Latin-1 (``LANG``, ``PYTHONIOENCODING``) cannot show
    every name: the line is escaped there, whole in the log file, and the run goes on."""
    write(pair.src / "日本.txt", "x")
    write(pair.src / "plain", "y")
    raw = io.BytesIO()
    console = io.TextIOWrapper(raw, encoding="ascii", write_through=True)

    report = synchro.mirror(pair.src, pair.rep, logpath=pair.logs, console=console)

    assert report.exit_code == 0
    shown = [strip_stamp(line) for line in raw.getvalue().decode("ascii").splitlines()]
    assert sorted(line for line in shown if line.startswith("ADDED ")) == [
        "ADDED \\u65e5\\u672c.txt",
        "ADDED plain",
    ]
    assert "ADDED 日本.txt" in log_messages(pair.logs)
    assert_mirror(pair.src, pair.rep)
