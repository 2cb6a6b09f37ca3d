"""The log's and the status file's locks (synchro/pipeline/lock.py FileLock, on ``filelock``).

Exclusion between processes and its waits are filelock's own (tested
there); these tests hold what synchro relies on: two processes exclude each
other, a killed holder's lock is free again, the file is never truncated,
and anything but a regular file at the lock's name (a symlink, a FIFO, a
folder) is refused at once with a clear error, its target untouched, no
descriptor left open: through the daily log, one warning and a run that
goes on. The replica's run lock is in tests/test_replica_lock.py.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import Pair, run_synchro, start_python
from treeutil import build

from synchro.features import status
from synchro.pipeline.lock import FileLock

# A child that takes the lock, says so, and holds it until its standard input closes.
HOLD = """
import sys
from synchro.pipeline.lock import FileLock
with FileLock(sys.argv[1], timeout=0):
    print("held", flush=True)
    sys.stdin.read()
print("released", flush=True)
"""


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def start_holder(path: Path) -> subprocess.Popen[str]:
    child = start_python(HOLD, str(path))
    assert child.stdout is not None
    assert child.stdout.readline() == "held\n", child.communicate()
    return child


def test_two_processes_exclude_each_other(tmp_path: Path, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    child = start_holder(path)
    try:
        with pytest.raises(TimeoutError):
            FileLock(str(path), timeout=0).acquire()
    finally:
        out, _ = child.communicate("")  # closing its stdin releases the lock
    assert (out, child.returncode) == ("released\n", 0)

    lock = FileLock(str(path), timeout=0)
    with lock:
        assert lock.is_locked
    assert not lock.is_locked


def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path: Path, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    child = start_holder(path)
    with pytest.raises(TimeoutError):
        FileLock(str(path), timeout=0).acquire()

    child.kill()  # SIGKILL: no clean-up of its own
    child.communicate()
    assert child.returncode == -signal.SIGKILL

    with FileLock(str(path), timeout=0):
        pass
    assert path.exists()  # nobody deletes a lock file


def test_an_existing_lock_file_is_neither_truncated_nor_deleted(tmp_path: Path, no_hang: None) -> None:
    path = tmp_path / "x.lock"
    path.write_text("someone's notes")
    with FileLock(str(path), timeout=0):
        pass
    assert path.read_text() == "someone's notes"


KINDS = {
    "symlink": "a symbolic link",
    "dangling-symlink": "a symbolic link",
    "fifo": "a FIFO",
    "folder": "a folder",
}


def plant(path: Path, kind: str) -> Path:
    """Put ``kind`` at ``path``; return the file a symlink points to."""
    target = path.parent / "precious"
    if kind == "symlink":
        target.write_text("data")
        path.symlink_to(target)
    elif kind == "dangling-symlink":
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)  # nobody reads or writes it: a blocking open would wait forever
    else:
        path.mkdir()
    return target


@pytest.mark.parametrize("kind", list(KINDS))
def test_what_is_not_a_regular_file_is_refused_at_once_and_followed_nowhere(
    tmp_path: Path, kind: str, no_hang: None
) -> None:
    path = tmp_path / "x.lock"
    target = plant(path, kind)
    before = open_fds()

    with pytest.raises(OSError) as caught:
        FileLock(str(path)).acquire()  # no timeout: a wait would be a hang

    assert caught.value.strerror == f"x.lock is {KINDS[kind]}, not a regular file"
    assert open_fds() == before
    if kind == "symlink":
        assert target.read_text() == "data"
        fd = os.open(target, os.O_RDONLY)  # and nothing holds a lock on the target
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    else:
        assert not target.exists()


@pytest.mark.parametrize("kind", list(KINDS))
def test_what_is_not_a_regular_file_at_the_log_lock_is_one_warning_and_the_run_goes_on(
    pair: Pair, kind: str, no_hang: None
) -> None:
    build(pair.src, {f"f{index}": "x" for index in range(600)})  # more than one batch of lines
    (pair.logs / "LOGS").mkdir()
    target = plant(pair.logs / "LOGS" / ".lock", kind)

    result = run_synchro(pair.src, pair.rep, "1", pair.logs, "--once", "-q")

    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == (
        f"synchro: warning: cannot write the log in {pair.logs}/LOGS: .lock is {KINDS[kind]}, "
        "not a regular file; the run goes on without it\n"
    )
    assert len(os.listdir(pair.rep)) == 600
    assert not [name for name in os.listdir(pair.logs / "LOGS") if name.startswith("LOG-")]
    if kind == "symlink":
        assert target.read_text() == "data"


# --- the status file's lock ----------------------------------------------------------------------


def test_a_status_lock_held_too_long_is_a_status_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hang: None
) -> None:
    monkeypatch.setattr(status, "LOCK_TIMEOUT", 0)  # one try: nothing really waits
    moment = datetime(2026, 3, 1, 12, 0).astimezone()
    run = status.RunRecord(start=moment, end=moment, exit_code=0)
    child = start_holder(tmp_path / status.STATUS_LOCK)
    try:
        with pytest.raises(status.StatusError) as caught:
            status.record_run(tmp_path, "docs", run)
    finally:
        child.communicate("")
    assert str(caught.value) == f"status file {tmp_path / 'status.json'}: its lock was held for more than 0 s"
    assert not (tmp_path / "status.json").exists()

    status.record_run(tmp_path, "docs", run)  # released: the update goes through
    assert status.read_status(tmp_path)["docs"].last == run


def test_a_fifo_at_the_status_lock_is_a_status_error_not_a_hang(tmp_path: Path, no_hang: None) -> None:
    os.mkfifo(tmp_path / status.STATUS_LOCK)
    moment = datetime(2026, 3, 1, 12, 0).astimezone()
    run = status.RunRecord(start=moment, end=moment + timedelta(seconds=1), exit_code=0)

    with pytest.raises(status.StatusError) as caught:
        status.record_run(tmp_path, "docs", run)

    assert str(caught.value) == (
        f"status file {tmp_path / 'status.json'}: {status.STATUS_LOCK} is a FIFO, not a regular file"
    )
    assert not (tmp_path / "status.json").exists()
