"""The source reads the next small files ahead of their copies, on a disk and never in memory.

On a disk with a cold cache each small file's copy waits for its read;
told the files copied next, the local source asks the kernel to read them
now (``posix_fadvise(WILLNEED)``), so the disk serves many at once. These
tests check it on the real file system under ``tmp_path``: the pages of a
file evicted from the page cache are back after the hint, and only then; a
link or a FIFO put where a file was is neither followed nor waited on; and
through the API every small file of a run is read ahead before its copy,
never more than the window ahead.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from treeutil import BASE_NS, assert_rsync_clean, build, write

import synchro
import synchro.pipeline.engine
import synchro.pipeline.readahead
from synchro.endpoints.base import OnChunk, Source
from synchro.endpoints.local.fds import open_root
from synchro.endpoints.local.replica import LocalReplica
from synchro.endpoints.local.tree import LocalTree, reads_ahead
from synchro.pipeline.helper import ENV

PAGE = mmap.PAGESIZE
LIBC = ctypes.CDLL(None, use_errno=True)


def resident(path: Path) -> int:
    """Pages of the file in the page cache (mincore: looks, reads nothing)."""
    size = path.stat().st_size
    pages = (size + PAGE - 1) // PAGE
    vector = (ctypes.c_ubyte * pages)()
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.c_char.from_buffer(mapped)
        try:
            if LIBC.mincore(ctypes.c_void_p(ctypes.addressof(start)), ctypes.c_size_t(size), vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del start  # the mapping cannot close while a ctypes object holds it
    return sum(byte & 1 for byte in vector)


def evict(path: Path) -> None:
    """Write the file out and drop its pages from the cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def wait_resident(path: Path, pages: int) -> bool:
    """True once ``pages`` pages of the file are in the cache: the disk's reads
    were queued by the hint, and this waits for the disk, not for a thread."""
    deadline = time.monotonic() + 60
    while resident(path) < pages:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def on_disk(tmp_path: Path) -> Path:
    root = open_root(str(tmp_path))
    try:
        if not reads_ahead(root):
            pytest.skip("the test folder is in memory here")
    finally:
        os.close(root)
    return tmp_path


def test_a_tree_in_memory_never_reads_ahead(tmpfs: Path) -> None:
    write(tmpfs / "f", b"x" * PAGE)
    tree = LocalTree.open_at(str(tmpfs))
    try:
        assert not reads_ahead(tree.root)
        assert tree.read_ahead("", ["f"]) is False  # the applier stops asking
    finally:
        tree.close()


def test_the_files_told_are_read_into_the_cache(on_disk: Path) -> None:
    folder = on_disk / "src" / "d"
    folder.mkdir(parents=True)
    names = [f"f{index}" for index in range(8)]
    for name in names:
        write(folder / name, os.urandom(4 * PAGE))
    for name in names:
        evict(folder / name)
    if any(resident(folder / name) for name in names):
        pytest.skip("this file system keeps evicted pages")
    tree = LocalTree.open_at(str(on_disk / "src"))
    try:
        assert tree.read_ahead("d", names[:5]) is True
        assert all(wait_resident(folder / name, 4) for name in names[:5])
        assert [resident(folder / name) for name in names[5:]] == [0, 0, 0]  # only what it was told
    finally:
        tree.close()


def test_a_link_or_fifo_where_a_file_was_is_not_followed_or_waited_on(on_disk: Path) -> None:
    src = on_disk / "src"
    src.mkdir()
    outside = on_disk / "outside"
    write(outside, os.urandom(4 * PAGE))
    evict(outside)
    if resident(outside):
        pytest.skip("this file system keeps evicted pages")
    (src / "link").symlink_to(outside)
    os.mkfifo(src / "fifo")
    write(src / "file", os.urandom(4 * PAGE))
    evict(src / "file")
    tree = LocalTree.open_at(str(src))
    done: list[bool] = []
    reader = threading.Thread(
        target=lambda: done.append(tree.read_ahead("", ["link", "gone", "fifo", "file"]))
    )
    try:
        reader.start()
        reader.join(60)
        if reader.is_alive():  # stuck opening the FIFO: release it, then fail
            os.close(os.open(src / "fifo", os.O_WRONLY | os.O_NONBLOCK))
            reader.join()
            pytest.fail("read_ahead waited on a FIFO")
        assert done == [True]
        assert wait_resident(src / "file", 4)  # the names after the odd ones are read still
        assert resident(outside) == 0  # the link was not followed
    finally:
        tree.close()


class Recording(LocalTree):
    """The local source as it is, recording the files it is told to read ahead."""

    events: list[tuple[str, str]] = []  # noqa: RUF012

    def read_ahead(self, folder: str, names: Sequence[str]) -> bool:
        Recording.events.extend(("ahead", f"{folder}/{name}") for name in names)
        return super().read_ahead(folder, names)


class Copying(LocalReplica):
    """The local replica as it is, recording the copies it begins."""

    def copy_file(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None) -> int:
        Recording.events.append(("copy", f"{folder}/{name}"))
        return super().copy_file(source, folder, name, on_chunk)

    def copy_job(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None):  # type: ignore[no-untyped-def]
        Recording.events.append(("copy", f"{folder}/{name}"))
        return super().copy_job(source, folder, name, on_chunk)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    Recording.events = []
    monkeypatch.setattr(
        synchro.pipeline.engine, "open_source", lambda path, opener: Recording.open_at(path, opener=opener)
    )
    monkeypatch.setattr(
        synchro.pipeline.engine, "replica_at", lambda path, options=None, say=None: Copying(path)
    )
    monkeypatch.setattr(synchro.pipeline.readahead, "AHEAD", 4)  # refilled many times
    monkeypatch.setenv(ENV, "1")  # one process: every event is recorded here
    return Recording.events


def check_window(events: list[tuple[str, str]], small: set[str], window: int) -> None:
    """Every small file read ahead once, before its copy; never more than ``window`` ahead.

    A copy begins (and may have the window refilled) just before it is
    recorded here: that one copy more may be under way.
    """
    ahead: set[str] = set()
    copied: set[str] = set()
    for word, path in events:
        if word == "ahead":
            assert path in small and path not in ahead, path
            ahead.add(path)
        else:
            assert path not in copied, path
            copied.add(path)
            if path in small:
                assert path in ahead, f"{path} copied before it was read ahead"
        assert len(ahead - copied) <= window + 1
    assert ahead == small and small <= copied


def test_a_first_copy_reads_every_small_file_ahead_of_its_copy(
    on_disk: Path, recorded: list[tuple[str, str]]
) -> None:
    src, rep = on_disk / "src", on_disk / "rep"
    src.mkdir()
    # Nested: a folder's files, then its sub-folders', each listed while applying.
    tree = {
        "top.txt": "t",
        "a": {f"f{i}": f"a{i}" for i in range(7)} | {"b": {f"g{i}": f"b{i}" for i in range(6)}, "empty": ""},
        "c": {"h": "c", "d": {"e": {f"k{i}": f"e{i}" for i in range(9)}}},
    }
    build(src, tree, mtime_ns=BASE_NS)
    write(src / "a" / "large", b"L" * (2 << 20), BASE_NS)  # read by its own copy, in order
    rep.mkdir()

    report = synchro.mirror(src, rep, logpath=on_disk)

    assert report.exit_code == 0
    assert_rsync_clean(src, rep)
    # Not a/empty: nothing to read.
    small = {"/top.txt", "c/h"} | {f"a/f{i}" for i in range(7)} | {f"a/b/g{i}" for i in range(6)}
    small |= {f"c/d/e/k{i}" for i in range(9)}
    check_window(recorded, small, 4)
    assert ("copy", "a/large") in recorded


def test_a_changed_tree_reads_its_changed_files_ahead_of_their_copies(
    on_disk: Path, recorded: list[tuple[str, str]]
) -> None:
    src, rep = on_disk / "src", on_disk / "rep"
    src.mkdir()
    build(src, {f"d{i}": {f"f{j}": f"{i}-{j}" for j in range(5)} for i in range(4)}, mtime_ns=BASE_NS)
    rep.mkdir()
    synchro.mirror(src, rep, logpath=on_disk)
    recorded.clear()
    changed = {"d0/f1", "d1/f0", "d1/f4", "d3/f2", "d3/f3"}
    for path in changed:
        write(src / path, "changed", BASE_NS + 10**9)
    write(src / "d2" / "new", "new", BASE_NS)

    report = synchro.mirror(src, rep, logpath=on_disk)

    assert report.exit_code == 0 and len(report.overwritten) == 5 and len(report.added) == 1
    assert_rsync_clean(src, rep)
    check_window(recorded, changed | {"d2/new"}, 4)


def test_a_dry_run_reads_nothing_ahead(on_disk: Path, recorded: list[tuple[str, str]]) -> None:
    src, rep = on_disk / "src", on_disk / "rep"
    src.mkdir()
    build(src, {"d": {"f": "x", "g": "y"}}, mtime_ns=BASE_NS)
    rep.mkdir()

    report = synchro.mirror(src, rep, logpath=on_disk, dry_run=True)

    assert report.exit_code == 0 and len(report.added) == 3
    assert recorded == []
