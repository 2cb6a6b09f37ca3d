"""The file locks (synchro/pipeline/lock.py): our own flock, shared by processes and users.

Every test works on real files in ``tmp_path``; waits use an injected clock
and sleep, so nothing here really waits for a timeout.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from conftest import open_to_others, run_as_nobody, start_python

from synchro.features import status
from synchro.pipeline.lock import POLL_SECONDS, Flock, LockTimeout

# A child that takes the lock, says so, and holds it until its standard input closes.
HOLD = """
import sys
from synchro.pipeline.lock import Flock
with Flock(sys.argv[1], timeout=0):
    print("held", flush=True)
    sys.stdin.read()
print("released", flush=True)
"""


class FakeTime:
    """An injected clock and sleep: sleeping moves the clock, nothing really waits.

    ``meanwhile`` runs after each sleep, with the sleeps so far: what another
    process does while the waiter sleeps.
    """

    def __init__(self, meanwhile: Callable[[list[float]], None] | None = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._meanwhile = meanwhile

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self._meanwhile is not None:
            self._meanwhile(self.sleeps)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def start_holder(path: Path) -> subprocess.Popen[str]:
    child = start_python(HOLD, str(path))
    assert child.stdout is not None
    assert child.stdout.readline() == "held\n", child.communicate()
    return child


# --- exclusion -----------------------------------------------------------------------------------


def test_two_processes_exclude_each_other(tmp_path: Path, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    child = start_holder(path)
    try:
        with pytest.raises(LockTimeout) as caught:
            Flock(path, timeout=0).acquire()
        assert caught.value.lock_file == str(path)
        assert isinstance(caught.value, TimeoutError)
    finally:
        out, _ = child.communicate("")  # closing its stdin releases the lock
    assert out == "released\n"
    assert child.returncode == 0

    with Flock(path, timeout=0) as lock:
        assert lock.is_locked
    assert not lock.is_locked


def test_two_locks_of_one_process_exclude_each_other(tmp_path: Path, no_hang: None) -> None:
    """Each object opens the file anew: a ReplicaLock taken in this process locks out a
    run of this process too (what `test_restore` relies on)."""
    path = tmp_path / "x.lock"
    with Flock(path, timeout=0), pytest.raises(LockTimeout):
        Flock(path, timeout=0).acquire()
    with Flock(path, timeout=0):
        pass


def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path: Path, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    child = start_holder(path)
    with pytest.raises(LockTimeout):
        Flock(path, timeout=0).acquire()

    child.kill()  # SIGKILL: no clean-up of its own
    child.communicate()
    assert child.returncode == -signal.SIGKILL

    with Flock(path, timeout=0):
        pass
    assert path.exists()  # nobody deletes a lock file


# --- timeouts ------------------------------------------------------------------------------------


def test_a_timeout_of_zero_tries_once_and_never_sleeps(tmp_path: Path, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    time = FakeTime()
    with Flock(path):
        waiter = Flock(path, timeout=0, sleep=time.sleep, monotonic=time.monotonic)
        with pytest.raises(LockTimeout) as caught:
            waiter.acquire()
    assert time.sleeps == []
    assert caught.value.lock_file == str(path)
    assert not waiter.is_locked


def test_a_positive_timeout_polls_and_gives_up_once_the_clock_passes_it(
    tmp_path: Path, no_hang: None
) -> None:
    path = tmp_path / "x.lock"
    time = FakeTime()
    before = open_fds()
    with Flock(path):
        waiter = Flock(path, timeout=2 * POLL_SECONDS, sleep=time.sleep, monotonic=time.monotonic)
        with pytest.raises(LockTimeout):
            waiter.acquire()
    assert time.sleeps == [POLL_SECONDS, POLL_SECONDS]
    assert open_fds() == before


def test_a_positive_timeout_gets_the_lock_once_the_holder_lets_go(tmp_path: Path, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    holder = Flock(path)
    holder.acquire()

    def meanwhile(sleeps: list[float]) -> None:
        if len(sleeps) == 3:
            holder.release()

    time = FakeTime(meanwhile)
    with Flock(path, timeout=30, sleep=time.sleep, monotonic=time.monotonic) as waiter:
        assert waiter.is_locked
        assert time.sleeps == [POLL_SECONDS] * 3
        with pytest.raises(LockTimeout):  # and it is held for real
            Flock(path, timeout=0).acquire()


def test_the_last_poll_sleeps_only_what_is_left_of_the_timeout(tmp_path: Path, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    time = FakeTime()
    with Flock(path), pytest.raises(LockTimeout):
        Flock(path, timeout=0.0625, sleep=time.sleep, monotonic=time.monotonic).acquire()
    assert time.sleeps == [POLL_SECONDS, pytest.approx(0.0625 - POLL_SECONDS)]


# --- interruptions -------------------------------------------------------------------------------


def test_ctrl_c_while_waiting_without_timeout_propagates_and_closes_the_file(tmp_path: Path) -> None:
    """KeyboardInterrupt from a signal handler, as Ctrl+C does, while blocked in flock(LOCK_EX)."""
    path = tmp_path / "x.lock"
    fired: list[bool] = []

    def ctrl_c(signum: int, frame: FrameType | None) -> None:
        fired.append(True)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, ctrl_c)
    try:
        with Flock(path):
            waiter = Flock(path)  # waits as long as needed
            before = open_fds()
            with pytest.raises(KeyboardInterrupt):
                signal.setitimer(signal.ITIMER_REAL, 0.05)
                try:
                    waiter.acquire()
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)  # not left to fire later
            assert fired == [True]
            assert open_fds() == before
            assert not waiter.is_locked
    finally:
        signal.signal(signal.SIGALRM, previous)
    with Flock(path, timeout=0):  # nothing of the waiter holds it
        pass


def test_ctrl_c_while_polling_propagates_and_closes_the_file(tmp_path: Path, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    time = FakeTime()

    def sleep(seconds: float) -> None:
        time.sleep(seconds)
        raise KeyboardInterrupt

    with Flock(path):
        waiter = Flock(path, timeout=30, sleep=sleep, monotonic=time.monotonic)
        before = open_fds()
        with pytest.raises(KeyboardInterrupt):
            waiter.acquire()
        assert open_fds() == before
    assert time.sleeps == [POLL_SECONDS]


# --- the lock file -------------------------------------------------------------------------------


def test_the_lock_file_is_made_readable_and_writable_by_all_whatever_the_umask(
    tmp_path: Path, no_hang: None
) -> None:
    path = tmp_path / "x.lock"
    old = os.umask(0o077)
    try:
        with Flock(path):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666
    assert path.read_bytes() == b""


def test_an_existing_lock_file_is_neither_truncated_nor_deleted(tmp_path: Path, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    path.write_text("someone's notes")
    path.chmod(0o600)
    with Flock(path):
        pass
    assert path.read_text() == "someone's notes"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # not ours to change


def test_the_lock_is_not_reentrant(tmp_path: Path, no_hang: None) -> None:
    lock = Flock(tmp_path / "x.lock")
    with lock:
        with pytest.raises(RuntimeError, match="not re-entrant"):
            lock.acquire()
        assert lock.is_locked  # the first hold is intact
        with pytest.raises(LockTimeout):
            Flock(tmp_path / "x.lock", timeout=0).acquire()
    lock.release()  # harmless when not held


def test_a_lock_file_deleted_while_waiting_is_not_trusted(tmp_path: Path, no_hang: None) -> None:
    """A waiter that opened the file before it was deleted must not lock that orphan
    while a newcomer locks the new file of the same name."""
    path = tmp_path / "x.lock"
    holder = Flock(path)
    holder.acquire()

    def meanwhile(sleeps: list[float]) -> None:
        path.unlink()  # a clean-up of the temporary folder, say
        holder.release()

    time = FakeTime(meanwhile)
    with Flock(path, timeout=30, sleep=time.sleep, monotonic=time.monotonic), pytest.raises(LockTimeout):
        Flock(path, timeout=0).acquire()  # the waiter holds the file named there now
    assert path.exists()


def test_a_symlink_at_the_lock_path_is_refused_and_its_target_untouched(
    tmp_path: Path, no_hang: None
) -> None:
    target = tmp_path / "precious"
    target.write_text("data")
    target.chmod(0o600)
    path = tmp_path / "x.lock"
    path.symlink_to(target)
    before = open_fds()

    with pytest.raises(OSError) as caught:
        Flock(path, timeout=0).acquire()

    assert caught.value.errno == errno.ELOOP
    assert target.read_text() == "data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert open_fds() == before
    fd = os.open(target, os.O_RDONLY)  # and nothing holds a lock on the target
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_a_dangling_symlink_at_the_lock_path_is_refused_and_creates_nothing(
    tmp_path: Path, no_hang: None
) -> None:
    path = tmp_path / "x.lock"
    path.symlink_to(tmp_path / "planted")
    with pytest.raises(OSError) as caught:
        Flock(path).acquire()
    assert caught.value.errno == errno.ELOOP
    assert not (tmp_path / "planted").exists()


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_what_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    if kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)  # opening it for reading must not wait for a writer
    before = open_fds()
    with pytest.raises(OSError, match="not a regular file"):
        Flock(path, timeout=0).acquire()
    assert open_fds() == before


# --- other users ---------------------------------------------------------------------------------


def lock_as_nobody(path: str | Path) -> tuple[int, Any]:
    """In a child as uid 65534: take the lock at ``path`` once; say what happened."""
    try:
        with Flock(path, timeout=0):
            return 0, "locked"
    except LockTimeout:
        return 0, "timeout"
    except OSError as error:
        return 0, f"error: {error.strerror}"


@pytest.mark.parametrize("mode", [0o666, 0o644], ids=["0o666", "0o644"])
def test_another_user_can_lock_a_file_root_made_in_the_sticky_folder(tmp_path: Path, mode: int) -> None:
    """flock needs only read access: the file is opened read-only and without O_CREAT,
    which fs.protected_regular would refuse on another user's file in a sticky folder."""
    folder = tmp_path / "locks"
    folder.mkdir()
    folder.chmod(0o1777)
    open_to_others(folder)
    path = folder / "x.lock"
    with Flock(path):
        path.chmod(mode)
        assert run_as_nobody(lambda: lock_as_nobody(path)).payload == "timeout"  # excluded while held
    assert os.stat(path).st_uid == 0

    assert run_as_nobody(lambda: lock_as_nobody(path)).payload == "locked"


def test_another_user_is_refused_cleanly_a_lock_file_they_cannot_read(tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    folder.mkdir()
    folder.chmod(0o1777)
    open_to_others(folder)
    path = folder / "x.lock"
    path.touch(mode=0o600)

    assert run_as_nobody(lambda: lock_as_nobody(path)).payload == "error: Permission denied"


# --- the status file's lock ----------------------------------------------------------------------


def test_a_status_lock_held_too_long_is_a_status_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hang: None
) -> None:
    monkeypatch.setattr(status, "LOCK_TIMEOUT", 0)  # one try: nothing really waits
    moment = datetime(2026, 3, 1, 12, 0).astimezone()
    run = status.RunRecord(start=moment, end=moment, exit_code=0)
    with Flock(tmp_path / status.STATUS_LOCK), pytest.raises(status.StatusError) as caught:
        status.record_run(tmp_path, "docs", run)
    assert str(caught.value) == f"status file {tmp_path / 'status.json'}: its lock was held for more than 0 s"
    assert not (tmp_path / "status.json").exists()

    status.record_run(tmp_path, "docs", run)  # released: the update goes through
    assert status.read_status(tmp_path)["docs"].last == run
