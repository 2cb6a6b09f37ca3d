"""Large files are copied by a small pool of threads; the guarantees stay the same."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_sigterm_during_large_copies_leaves_only_whole_logged_files(tmp_path: Path) -> None:
    src, rep, logs = tmp_path / "src", tmp_path / "rep", tmp_path / "logs"
    for index in range(8):
        make_big(src / f"big{index}", index)
    rep.mkdir()
    logs.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-m", "synchro", str(src), str(rep), "24", str(logs), "--once", "-q"],
        stderr=subprocess.PIPE,
    )
    # Stop it as soon as a copy is under way (or once it is done: the
    # promises below hold either way).
    deadline = time.monotonic() + 30
    while child.poll() is None and time.monotonic() < deadline:
        if any(name.startswith(".synchro-tmp-") for name in os.listdir(rep)):
            break
        time.sleep(0.001)
    child.send_signal(signal.SIGTERM)
    code = child.wait(timeout=60)
    assert child.stderr is not None
    child.stderr.close()

    assert code in (ExitCode.TERMINATED, ExitCode.OK)
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
