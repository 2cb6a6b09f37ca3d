"""Verify (README: "Versions, verify and restore"): every byte read, every difference listed, nothing changed.

Through the ``synchro`` command and ``inv verify`` in subprocesses, and the
library (:func:`synchro.features.verify.run_verify`) in process where memory or a
progress bar is measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest
from conftest import Pair, child_env, synchro_command
from test_progress import BAR, PROBE, run_in_terminal
from test_tasks import Inv
from treeutil import BASE_NS, Link, build, snapshot, write

import synchro
from synchro.features.verify import run_verify
from synchro.options import make_options
from synchro.pipeline.lock import ReplicaLock

# Each test runs on both local endpoints: folder descriptors and paths (Windows).
pytestmark = pytest.mark.usefixtures("each_endpoint")


def verify(pair: Pair, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*synchro_command(), str(pair.src), str(pair.rep), "--verify", *map(str, args)],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=pair.root,
        timeout=60,
        check=False,
    )


def differences(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines between VERIFY and SUMMARY."""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("VERIFY source=") and lines[-1].startswith("SUMMARY "), result.stdout
    return lines[1:-1]


TREE = {
    "a.txt": "alpha",
    "docs": {"b.txt": "beta", "deep": {"c.bin": bytes(range(256)) * 64}},
    "link": Link("a.txt"),
    "empty": {},
}


@pytest.fixture
def mirrored(pair: Pair) -> Pair:
    build(pair.src, TREE, mtime_ns=BASE_NS)
    assert synchro.mirror(pair.src, pair.rep).ok
    return pair


def flip_a_byte(path: Path, offset: int) -> None:
    """Bit rot: one byte changed in place, size and times put back."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_an_exact_replica_exits_0(mirrored: Pair) -> None:
    result = verify(mirrored)

    assert (result.returncode, result.stderr) == (0, "")
    assert differences(result) == []
    assert result.stdout.splitlines()[0] == f"VERIFY source={mirrored.src} replica={mirrored.rep}"
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith(
        "SUMMARY compared=7 missing=0 extra=0 content=0 metadata=0 failed=0 bytes=32786 seconds="
    )
    assert summary.endswith(" exit=0")


def test_a_flipped_byte_with_the_same_size_and_time_is_found(mirrored: Pair) -> None:
    flip_a_byte(mirrored.rep / "docs" / "deep" / "c.bin", 10_000)
    quick = synchro.mirror(mirrored.src, mirrored.rep, dry_run=True)
    assert quick.changed == 0  # the size-and-time check cannot see it

    result = verify(mirrored)

    assert result.returncode == 1
    [line] = differences(result)
    assert line.startswith("CONTENT docs/deep/c.bin: bytes differ, same size and time (blake2b ")
    assert " content=1 " in result.stdout.splitlines()[-1]


def test_every_kind_of_difference_is_listed(mirrored: Pair) -> None:
    src, rep = mirrored.src, mirrored.rep
    os.unlink(rep / "a.txt")  # missing file
    os.rmdir(rep / "empty")  # missing folder
    write(rep / "stray.txt", "not in the source")  # extra
    build(rep, {"stray": {"inside": "x"}})  # extra folder: one line, not one per entry
    write(rep / "docs" / "b.txt", "BETA", BASE_NS)  # same size and time, other bytes
    os.chmod(rep / "docs" / "deep" / "c.bin", 0o600)  # metadata: mode
    os.utime(rep / "docs" / "deep", ns=(BASE_NS, BASE_NS + 5))  # metadata: time of a folder
    os.unlink(rep / "link")
    os.symlink("elsewhere", rep / "link")  # another target
    os.utime(rep / "link", ns=(BASE_NS, BASE_NS), follow_symlinks=False)
    os.utime(rep, ns=(BASE_NS, BASE_NS))  # the root's time, changed by the edits above, put back
    write(src / "new.txt", "only in the source", BASE_NS)
    os.utime(src, ns=(BASE_NS, BASE_NS))

    result = verify(mirrored)

    assert result.returncode == 1
    shown = differences(result)
    assert shown[1].startswith("CONTENT docs/b.txt: bytes differ, same size and time (blake2b ")
    source_time, replica_time = (
        f"{datetime.fromtimestamp(BASE_NS // 10**9):%Y-%m-%d %H:%M:%S}.{(BASE_NS + extra) % 10**9:09d}"
        for extra in (0, 5)
    )
    assert shown[:1] + shown[2:] == [  # in tree order
        "MISSING a.txt",
        f"METADATA docs/deep/: modified {source_time} in the source, {replica_time} in the replica",
        "METADATA docs/deep/c.bin: mode 0644 in the source, 0600 in the replica",
        "MISSING empty/",
        "CONTENT link: link to 'a.txt' in the source, to 'elsewhere' in the replica",
        "MISSING new.txt",
        "EXTRA stray/",
        "EXTRA stray.txt",
    ]
    assert result.stdout.splitlines()[-1].startswith(
        "SUMMARY compared=5 missing=3 extra=2 content=2 metadata=2 failed=0 "
    )


def test_a_type_change_and_a_leftover_temporary(mirrored: Pair) -> None:
    os.unlink(mirrored.rep / "a.txt")
    os.mkdir(mirrored.rep / "a.txt")
    write(mirrored.rep / ".synchro-tmp-0123456789ab", "half a copy")
    os.utime(mirrored.rep, ns=(BASE_NS, BASE_NS))

    shown = differences(verify(mirrored))

    assert shown == [
        "EXTRA .synchro-tmp-0123456789ab: leftover temporary of an interrupted run",
        "CONTENT a.txt: a file in the source, a folder in the replica",
    ]


def test_verify_follows_the_mirror_rules(pair: Pair) -> None:
    build(pair.src, {"keep.txt": "k", "cache": {"big.tmp": "t"}, "x.tmp": "t"}, mtime_ns=BASE_NS)
    os.mkfifo(pair.src / "fifo")  # never mirrored, never compared (and never opened)
    assert synchro.mirror(pair.src, pair.rep, exclude=["*.tmp", "cache/"]).ok
    write(pair.rep / "old.tmp", "excluded entries of the replica are kept by the mirror")
    os.utime(pair.rep, ns=(os.stat(pair.src).st_mtime_ns,) * 2)

    kept = verify(pair, "--exclude", "*.tmp", "--exclude", "cache/")
    deleting = verify(pair, "--exclude", "*.tmp", "--exclude", "cache/", "--delete-excluded")
    everything = verify(pair)

    assert (kept.returncode, differences(kept)) == (0, [])
    assert differences(deleting) == ["EXTRA old.tmp"]
    assert differences(everything) == ["MISSING cache/", "EXTRA old.tmp", "MISSING x.tmp"]


def test_verify_changes_nothing_not_even_access_times(mirrored: Pair) -> None:
    flip_a_byte(mirrored.rep / "a.txt", 0)
    before = {root: snapshot(root) for root in (mirrored.src, mirrored.rep)}
    files = [path for path in mirrored.root.rglob("*") if path.is_file() and not path.is_symlink()]
    for path in files:
        # An access time older than the modification time: a plain read would update it (relatime).
        os.utime(path, ns=(BASE_NS - 10**12, path.stat().st_mtime_ns))
    atimes = {path: path.stat().st_atime_ns for path in files}

    assert verify(mirrored).returncode == 1

    assert {path: path.stat().st_atime_ns for path in files} == atimes
    assert {root: snapshot(root) for root in (mirrored.src, mirrored.rep)} == before


def test_big_files_are_read_in_bounded_memory(pair: Pair) -> None:
    size = 48 << 20
    for root in (pair.src, pair.rep):
        with open(root / "big", "wb") as handle:
            handle.truncate(size)  # sparse: cheap to make, read in full all the same
        os.utime(root / "big", ns=(BASE_NS, BASE_NS))
    with open(pair.rep / "big", "r+b") as handle:
        handle.seek(size - 3)
        handle.write(b"!")  # the last chunk differs
    os.utime(pair.rep / "big", ns=(BASE_NS, BASE_NS))
    os.utime(pair.rep, ns=(os.stat(pair.src).st_mtime_ns,) * 2)
    os.chmod(pair.rep, os.stat(pair.src).st_mode & 0o7777)

    tracemalloc.start()
    try:
        report = run_verify(pair.src, pair.rep, make_options())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert [difference.line.split(" (")[0] for difference in report.differences] == [
        "CONTENT big: bytes differ, same size and time"
    ]
    assert report.bytes_read == 2 * size
    assert peak < 8 << 20, f"peak {peak} bytes for two files of {size}"


@pytest.fixture
def draw_at_once(tmp_path: Path) -> dict[str, str]:
    """An environment whose bars are drawn at once (a run of milliseconds shows one)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import synchro.faces.progress\nsynchro.faces.progress.DELAY = 0\n", encoding="utf-8"
    )
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    return env


def test_a_bar_on_a_terminal_and_whole_lines(mirrored: Pair, draw_at_once: dict[str, str]) -> None:
    os.unlink(mirrored.rep / "a.txt")
    os.utime(mirrored.rep, ns=(BASE_NS, BASE_NS))

    code, output, err = run_in_terminal([str(mirrored.src), str(mirrored.rep), "--verify"], draw_at_once)
    piped = subprocess.run(
        [sys.executable, "-c", PROBE, str(mirrored.src), str(mirrored.rep), "--verify"],
        capture_output=True,
        text=True,
        env=draw_at_once,
        timeout=60,
        check=False,
    )

    assert code == 1, err
    assert BAR.search(output)
    assert err.split() == ["LOADED", "tqdm"]
    assert "MISSING a.txt" in output.replace("\r", "\n").splitlines()
    assert "SUMMARY compared=6 missing=1 " in output
    assert piped.returncode == 1
    assert piped.stderr.split() == ["LOADED"]  # no terminal: no tqdm
    assert piped.stdout.splitlines()[1:-1] == ["MISSING a.txt"]


def test_a_replica_being_written_is_not_verified(mirrored: Pair) -> None:
    with ReplicaLock(str(mirrored.rep)):
        result = verify(mirrored)

    assert result.returncode == 4
    assert result.stdout == ""
    assert (
        result.stderr
        == f"synchro: error: replica {mirrored.rep} is locked by another synchro run; try again later\n"
    )


@pytest.mark.parametrize("missing", ["source", "replica"])
def test_a_missing_folder_is_one_line_and_exit_2(pair: Pair, missing: str) -> None:
    os.rmdir(pair.src if missing == "source" else pair.rep)

    result = verify(pair)

    assert result.returncode == 2
    assert result.stderr.startswith(f"synchro: error: {missing} folder does not exist: ")
    assert result.stderr.count("\n") == 1


def test_inv_verify(tmp_path: Path) -> None:
    inv = Inv(tmp_path)
    (tmp_path / "docs").mkdir()
    build(tmp_path / "docs", {"a.txt": "alpha", "sub": {"b.txt": "beta"}}, mtime_ns=BASE_NS)
    (tmp_path / "backups.ini").write_text(
        "[docs]\nsource = docs\nreplica = mirror\ncreate_replica = yes\n", encoding="utf-8"
    )
    assert inv("backup", "--pair", "docs").returncode == 0

    exact = inv("verify", "--pair", "docs")
    flip_a_byte(tmp_path / "mirror" / "sub" / "b.txt", 2)
    rotten = inv("verify", "--pair", "docs")
    unknown = inv("verify", "--pair", "doc")

    assert (exact.returncode, exact.stderr) == (0, ""), exact.stderr
    assert exact.stdout.splitlines()[-1].startswith("SUMMARY compared=3 missing=0 ")
    assert rotten.returncode == 1
    assert rotten.stdout.splitlines()[1].startswith("CONTENT sub/b.txt: bytes differ, same size and time ")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr.strip() == "synchro: error: unknown pair 'doc' in backups.ini; its pairs are: docs"
