"""Local copies: small files in order in each process, large ones in flight; all of them through FUSE.

On a local replica a small file's copy is a few system calls, and a thread
would only add hand-offs; on a disk with a cold cache the waits for its
reads are overlapped by reading ahead (tests/test_read_ahead.py) instead.
A file of a mebibyte or more goes to a thread, where the kernel copies it
without the GIL. On a FUSE file system every call is a round trip to its
daemon, and copies of any size go in flight to overlap them. Either way
the mirror and the log are those of a run done in order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fsfixtures import Volume
from treeutil import BASE_NS, assert_rsync_clean, build, log_messages, write

import synchro
import synchro.pipeline.engine
from synchro.endpoints.base import OnChunk, Source
from synchro.endpoints.local.mounts import fs_name
from synchro.endpoints.local.replica import LOCAL, THROUGH_DAEMON, LocalReplica, concurrency_for
from synchro.pipeline.helper import ENV


class Watched(LocalReplica):
    """The local replica as it is, recording the copies it was asked to run on a thread."""

    jobs: list[str] = []  # noqa: RUF012  # the copies run as jobs, in the order submitted

    def copy_job(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None):  # type: ignore[no-untyped-def]
        Watched.jobs.append(f"{folder}/{name}")
        return super().copy_job(source, folder, name, on_chunk)


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    Watched.jobs = []
    monkeypatch.setattr(
        synchro.pipeline.engine, "replica_at", lambda path, options=None, say=None: Watched(path)
    )
    monkeypatch.setenv(ENV, "1")  # one process: every job is recorded here
    return Watched.jobs


def small_tree(src: Path) -> list[str]:
    src.mkdir()
    build(
        src, {f"d{i}": {f"f{j}": f"{i}-{j}" * (j + 1) for j in range(15)} for i in range(4)}, mtime_ns=BASE_NS
    )
    return sorted(f"d{i}/f{j}" for i in range(4) for j in range(15))


def test_the_mount_type_decides() -> None:
    for mount_type in ("fuseblk", "fuse", "fuse.sshfs", "fuse.exfat"):
        assert concurrency_for(mount_type) is THROUGH_DAEMON
    for mount_type in ("ext4", "xfs", "btrfs", "exfat", "vfat", "nfs4", "tmpfs", "fusectl"):
        assert concurrency_for(mount_type) is LOCAL
    assert THROUGH_DAEMON.in_flight_min_size == 0 < THROUGH_DAEMON.copies_in_flight
    assert LOCAL.in_flight_min_size == 1 << 20
    assert THROUGH_DAEMON.fork_helper and LOCAL.fork_helper


def test_on_exfat_through_fuse_every_file_is_copied_in_flight(
    tmp_path: Path, exfat_volume: Volume, exfat: Path, watched: list[str]
) -> None:
    src, rep = tmp_path / "src", exfat / "rep"
    files = small_tree(src)
    rep.mkdir()

    report = synchro.mirror(src, rep, logpath=tmp_path)

    assert report.exit_code == 0 and len(report.added) == 4 + len(files)
    # The kernel's own exFAT driver writes to the page cache: in order there.
    assert sorted(watched) == (files if exfat_volume.driver == "exfat-fuse" else [])
    assert_rsync_clean(src, rep, "--no-perms", "--no-owner", "--no-group", "--modify-window=1")
    added = [line for line in log_messages(tmp_path) if line.startswith("ADDED ")]
    assert len(added) == len(set(added)) == 4 + len(files)


def test_on_a_disk_small_files_are_copied_in_order_and_large_ones_in_flight(
    tmp_path: Path, watched: list[str]
) -> None:
    if fs_name((tmp_path).stat().st_dev) in ("tmpfs", "ramfs"):
        pytest.skip("the test folder is in memory here")
    src, rep = tmp_path / "src", tmp_path / "rep"
    files = small_tree(src)
    write(src / "d1" / "large", b"L" * (1 << 20), BASE_NS)
    write(src / "d2" / "larger", b"M" * (3 << 20), BASE_NS)
    rep.mkdir()

    report = synchro.mirror(src, rep, logpath=tmp_path)

    assert report.exit_code == 0 and len(report.added) == 4 + len(files) + 2
    assert sorted(watched) == ["d1/large", "d2/larger"]
    assert_rsync_clean(src, rep)
    added = [line for line in log_messages(tmp_path) if line.startswith("ADDED ")]
    assert len(added) == len(set(added)) == 4 + len(files) + 2


def test_on_tmpfs_small_files_are_copied_in_order(tmp_path: Path, tmpfs: Path, watched: list[str]) -> None:
    src, rep = tmp_path / "src", tmpfs / "rep"
    files = small_tree(src)
    rep.mkdir()

    report = synchro.mirror(src, rep, logpath=tmp_path)

    assert report.exit_code == 0 and len(report.added) == 4 + len(files)
    assert watched == []
    assert_rsync_clean(src, rep)


def test_a_run_shared_with_the_helper_on_a_disk_is_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the command, shared with the helper where the machine allows it:
    # a replica on a disk is mirrored exactly, each file logged once.
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.mkdir()
    build(src, {f"d{i}": {f"f{j}": "x" * j for j in range(40)} for i in range(12)}, mtime_ns=BASE_NS)
    rep.mkdir()
    monkeypatch.setenv(ENV, "2")

    report = synchro.mirror(src, rep, logpath=tmp_path)

    assert report.exit_code == 0 and len(report.added) == 12 + 12 * 40
    assert_rsync_clean(src, rep)
    added = [line for line in log_messages(tmp_path) if line.startswith("ADDED ")]
    assert len(added) == len(set(added)) == 12 + 12 * 40
