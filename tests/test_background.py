"""Large files are copied by a small pool of threads; the guarantees stay the same."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from conftest import start_python
from treeutil import assert_mirror, assert_rsync_clean

from synchro import ExitCode, mirror
from synchro.endpoints.local.replica import LOCAL

BIG = LOCAL.in_flight_min_size * 3


def make_big(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = bytes((seed + index) % 251 for index in range(4096))
    path.write_bytes(block * (BIG // len(block)) + bytes([seed]))
    os.utime(path, ns=(1_700_000_000_000_000_000 + seed, 1_700_000_000_123_456_789 + seed))


def test_large_files_are_mirrored_exactly_and_logged(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    for index in range(6):
        make_big(src / f"d{index % 2}" / f"big{index}", index)
    (src / "d0" / "small.txt").write_text("small")
    rep.mkdir()

    report = mirror(src, rep, logpath=tmp_path)

    assert report.exit_code == ExitCode.OK
    assert sorted(report.added) == sorted(
        ["d0/", "d1/", "d0/small.txt"] + [f"d{index % 2}/big{index}" for index in range(6)]
    )
    assert report.bytes_copied == 6 * (BIG + 1) + len("small")
    assert_mirror(src, rep)
    assert_rsync_clean(src, rep)

    # Overwrites go the same way, and folder times still come last.
    for index in (1, 4):
        make_big(src / f"d{index % 2}" / f"big{index}", index + 100)
    report = mirror(src, rep)
    assert sorted(report.overwritten) == ["d0/big4", "d1/big1"]
    assert_mirror(src, rep)
    assert_rsync_clean(src, rep)


# The command, with the first large copy (in a thread of the pool) held
# until the run is stopping: the test knows a copy is under way, and the
# run cannot end before the signal has reached it.
HELD_COPY = r"""
import itertools, os, sys, threading
import synchro.endpoints.local.filecopy as filecopy
import synchro.pipeline.apply as apply
ready = int(sys.argv.pop(1))
release_r, release_w = os.pipe()
first = itertools.count()
real_copy, real_close = filecopy._copy_data, apply._Background.close
def copy_data(src, dst, *args, **kwargs):
    if threading.current_thread() is not threading.main_thread() and next(first) == 0:
        os.write(ready, b".")  # its temporary is open in the replica
        os.read(release_r, 1)
    return real_copy(src, dst, *args, **kwargs)
def close(self):
    os.write(release_w, b".")  # the run is stopping: the copy may end
    real_close(self)
filecopy._copy_data = copy_data
apply._Background.close = close
from synchro.faces.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_large_copies_leaves_only_whole_logged_files(tmp_path: Path, no_hang: None) -> None:
    src, rep, logs = tmp_path / "src", tmp_path / "rep", tmp_path / "logs"
    for index in range(8):
        make_big(src / f"big{index}", index)
    rep.mkdir()
    logs.mkdir()
    ready_r, ready_w = os.pipe()
    child = start_python(
        HELD_COPY, *map(str, (ready_w, src, rep, "24", logs, "--once", "-q")), pass_fds=(ready_w,)
    )
    os.close(ready_w)
    assert os.read(ready_r, 1) == b".", child.communicate(timeout=60)
    os.close(ready_r)

    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    code = child.returncode

    # Quiet: what needs a person (START, INTERRUPTED, SUMMARY) on standard error, then the one-line message.
    assert code == ExitCode.TERMINATED and err.endswith("synchro: terminated\n"), err
    assert " INTERRUPTED the run was stopped by SIGTERM;" in err
    names = sorted(os.listdir(rep))
    assert not [name for name in names if name.startswith(".synchro-tmp-")]
    for name in names:
        assert (rep / name).read_bytes() == (src / name).read_bytes()
    log = next((logs / "LOGS").glob("LOG-*.txt")).read_text()
    logged = sorted(line.rsplit(" ", 1)[1] for line in log.splitlines() if " ADDED big" in line)
    assert logged == names
    # The lock is released and the next run converges.
    assert mirror(src, rep).exit_code == ExitCode.OK
    assert_mirror(src, rep)
    assert_rsync_clean(src, rep)
