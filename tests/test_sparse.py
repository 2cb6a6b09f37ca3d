"""Sparse files (VM images, databases) are copied with their holes kept, and the same bytes.

The detail tests call :func:`synchro.filecopy.copy_file` on real files of
the tests' own file system (``tmp_path``) and of a tmpfs mounted for the
test (both hold holes), in both directions and across the two; then each
face (the command, ``inv backup``, the API) copies one, and the features
that copy files (versions across file systems, restore) or read them
(``--checksum``, ``--verify``) are checked on one. A file system that
cannot hold holes (exFAT) and one that cannot say where the data is
(``/proc``) still get the exact bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import Pair, run_synchro
from test_tasks import Inv
from treeutil import BASE_NS, SECOND, log_messages, write

import synchro
from synchro import Hooks
from synchro.endpoints.local.filecopy import CHUNK, SMALL_FILE, copy_file
from synchro.faces import runner
from synchro.faces.config import load_config
from synchro.pipeline.plan import Action

MIB = 1 << 20
# What a copy may allocate beyond its source: file systems round to their
# own blocks and may count an extent block or two. A filled copy of the
# files here would be tens of MiB over.
SLACK = 256 * 1024

Extents = list[tuple[int, int]]  # (offset, length) of each data segment


def make_sparse(path: Path, size: int, extents: Extents, mtime_ns: int = BASE_NS) -> None:
    """A file of ``size`` bytes holding seeded bytes at ``extents``, holes elsewhere."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.ftruncate(fd, size)
        for index, (offset, length) in enumerate(extents):
            os.pwrite(fd, bytes((index * 7 + n) % 251 + 1 for n in range(256)) * (length // 256), offset)
    finally:
        os.close(fd)
    os.utime(path, ns=(BASE_NS - SECOND, mtime_ns))
    if allocated(path) >= size > 0:
        pytest.skip(f"the file system of {path.parent} does not keep holes")


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def same_bytes(left: Path, right: Path) -> bool:
    """Every byte, holes read as zeros (chunk by chunk: the files are large)."""
    if os.path.getsize(left) != os.path.getsize(right):
        return False
    with open(left, "rb") as one, open(right, "rb") as other:
        while True:
            a, b = one.read(4 * MIB), other.read(4 * MIB)
            if a != b:
                return False
            if not a:
                return True


def assert_sparse_copy(src: Path, rep: Path) -> None:
    assert same_bytes(src, rep)
    assert allocated(rep) <= allocated(src) + SLACK, (allocated(src), allocated(rep))
    st, rt = os.stat(src), os.stat(rep)
    assert (rt.st_mode, rt.st_mtime_ns) == (st.st_mode, st.st_mtime_ns)


def copy(src: Path, rep: Path, name: str, **hooks: Callable[[int], None]) -> int:
    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    rep_fd = os.open(rep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return copy_file(src_fd, rep_fd, name, keep_owner=True, **hooks)  # type: ignore[arg-type]
    finally:
        os.close(src_fd)
        os.close(rep_fd)


# --- real file systems --------------------------------------------------------------------------


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.fixture
def mounts() -> Iterator[Callable[[Path], Path]]:
    """``mount_tmpfs(path)``: a tmpfs on ``path`` (made), unmounted at teardown."""
    mounted: list[Path] = []

    def mount_tmpfs(path: Path) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        path.mkdir(parents=True, exist_ok=True)
        result = _run("mount", "-t", "tmpfs", "-o", "size=1g,mode=0755", "tmpfs", str(path))
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount_tmpfs
    for path in reversed(mounted):
        _run("umount", str(path))


@pytest.fixture
def exfat(tmp_path: Path) -> Iterator[Path]:
    """An exFAT file system (FUSE, on a loop device): it cannot hold holes."""
    needed = ("mkfs.exfat", "mount.exfat-fuse", "losetup")
    if os.geteuid() != 0 or any(shutil.which(tool) is None for tool in needed):
        pytest.skip(f"an exFAT mount needs root and {', '.join(needed)}")
    image, point = tmp_path / "exfat.img", tmp_path / "exfat"
    point.mkdir()
    with open(image, "wb") as stream:
        stream.truncate(96 * MIB)
    if _run("mkfs.exfat", str(image)).returncode != 0:
        pytest.skip("mkfs.exfat failed")
    loop = _run("losetup", "--find", "--show", str(image))
    if loop.returncode != 0:
        pytest.skip(f"no loop device: {loop.stderr.strip()}")
    device = loop.stdout.strip()
    try:
        mounted = _run("mount", "-t", "exfat-fuse", device, str(point))
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount exFAT: {mounted.stderr.strip()}")
        try:
            yield point
        finally:
            _run("umount", str(point))
    finally:
        _run("losetup", "--detach", device)


def places(tmp_path: Path, mount_tmpfs: Callable[[Path], Path], where: str) -> tuple[Path, Path]:
    """A source and a replica folder: ``disk`` is tmp_path's file system."""
    src_fs, _, rep_fs = where.partition("->")
    folders = []
    for side, fs in (("src", src_fs), ("rep", rep_fs)):
        folder = mount_tmpfs(tmp_path / f"{side}-tmpfs") if fs == "tmpfs" else tmp_path / side
        folder.mkdir(exist_ok=True)
        folders.append(folder)
    return folders[0], folders[1]


# --- the copy itself ----------------------------------------------------------------------------

SIZE = 64 * MIB
LAYOUTS: dict[str, tuple[int, Extents]] = {
    "hole-at-start": (SIZE, [(SIZE - 4 * MIB, 4 * MIB)]),
    "hole-in-the-middle": (SIZE, [(0, MIB), (SIZE - MIB, MIB)]),
    "hole-at-the-end": (SIZE, [(0, MIB + 4096)]),
    "all-hole": (SIZE, []),
    # Segments that start and end inside a block: their blocks come whole.
    "many-unaligned-extents": (SIZE, [(index * 6 * MIB + 1000, 64 * 1024) for index in range(10)]),
    # Small enough for the compiled copy, which leaves it to the one that keeps holes.
    "small": (SMALL_FILE // 2, [(100 * 1024, 4096)]),
}


@pytest.mark.parametrize("where", ["disk->disk", "tmpfs->tmpfs", "disk->tmpfs", "tmpfs->disk"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_holes_stay_holes_and_the_bytes_are_the_same(
    tmp_path: Path, mounts: Callable[[Path], Path], where: str, layout: str
) -> None:
    src, rep = places(tmp_path, mounts, where)
    size, extents = LAYOUTS[layout]
    make_sparse(src / "f", size, extents)

    assert copy(src, rep, "f") == size  # the file's size, holes included, as the report counts it

    assert_sparse_copy(src / "f", rep / "f")
    assert os.listdir(rep) == ["f"]  # no temporary left
    if extents:
        assert allocated(rep / "f") >= sum(length for _, length in extents)  # the data is there


def test_the_compiled_copy_leaves_a_small_sparse_file_to_the_one_that_keeps_holes(tmp_path: Path) -> None:
    compiled = pytest.importorskip(
        "synchro.endpoints.local._copy", reason="the compiled copy is not built here"
    )
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.mkdir()
    rep.mkdir()
    make_sparse(src / "f", SMALL_FILE, [(0, 4096)])
    write(src / "dense", b"d" * SMALL_FILE, BASE_NS)
    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    rep_fd = os.open(rep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        declined = compiled.copy_small(src_fd, rep_fd, "f", ".synchro-tmp-x", True, SMALL_FILE)
        assert declined == (6, 0)  # DECLINED: nothing done, not even the temporary
        assert os.listdir(rep) == []
        # A dense file of the same size stays on the compiled path.
        copied = compiled.copy_small(src_fd, rep_fd, "dense", ".synchro-tmp-y", True, SMALL_FILE)
        assert copied == (0, SMALL_FILE)
    finally:
        os.close(src_fd)
        os.close(rep_fd)


def test_a_replica_file_system_that_cannot_hold_holes_gets_the_bytes(tmp_path: Path, exfat: Path) -> None:
    """exFAT has no holes: the kernel (and the FUSE driver) fill them with zeros, through the command."""
    src = tmp_path / "src"
    src.mkdir()
    make_sparse(src / "image", 40 * MIB, [(0, 4096), (20 * MIB + 3, MIB)])
    rep = exfat / "backup"
    rep.mkdir()

    result = run_synchro(src, rep, "1", tmp_path, "--once")

    assert result.returncode == 0, result.stdout + result.stderr
    assert same_bytes(src / "image", rep / "image")
    assert allocated(rep / "image") >= 40 * MIB  # filled: exFAT cannot do otherwise


def test_a_source_that_cannot_say_where_its_data_is_is_copied_whole(tmp_path: Path) -> None:
    """/proc/cmdline has a size (Linux 6.2 on), no blocks, and no SEEK_DATA (EINVAL)."""
    proc = Path("/proc")
    st = os.stat(proc / "cmdline")
    if not (st.st_size > 0 and st.st_blocks == 0):
        pytest.skip("this kernel's /proc/cmdline has no size")
    fd = os.open(proc / "cmdline", os.O_RDONLY)
    try:
        with pytest.raises(OSError):
            os.lseek(fd, 0, os.SEEK_DATA)
    finally:
        os.close(fd)

    assert copy(proc, tmp_path, "cmdline") == st.st_size

    assert (tmp_path / "cmdline").read_bytes() == (proc / "cmdline").read_bytes()


# --- a source that changes while it is copied ---------------------------------------------------


def _write_into_a_hole(path: Path) -> None:
    """In place, same size: data where the copy has not looked yet."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"new", 30 * MIB)
    finally:
        os.close(fd)


def _punch_the_data_out(path: Path) -> None:
    """The data of the end segment becomes a hole again: same size, same blocks it had."""
    os.truncate(path, SIZE - 2 * MIB)
    os.truncate(path, SIZE)


def _shrink(path: Path) -> None:
    os.truncate(path, 20 * MIB)


def _grow(path: Path) -> None:
    with open(path, "ab") as stream:
        stream.write(b"more")


@pytest.mark.parametrize(
    "change",
    [_write_into_a_hole, _punch_the_data_out, _shrink, _grow],
    ids=["data-into-a-hole", "data-made-a-hole", "shrunk", "grown"],
)
def test_a_sparse_file_changed_while_it_is_copied_is_never_installed(
    pair: Pair, change: Callable[[Path], None]
) -> None:
    make_sparse(pair.src / "disk.img", SIZE, [(0, 2 * MIB), (SIZE - 2 * MIB, 2 * MIB)])
    seen: list[int] = []

    def during_copy(action: Action, copied: int) -> None:
        if action.path == "disk.img" and not seen:
            seen.append(copied)  # after the first chunk of the first segment
            change(pair.src / "disk.img")

    report = synchro.mirror(pair.src, pair.rep, logpath=pair.logs, hooks=Hooks(during_copy=during_copy))

    assert seen == [CHUNK]  # it did land in the middle of the copy
    assert report.exit_code == 0  # a warning, not a failure: the next run copies it
    assert "SKIPPED disk.img: changed while copying" in log_messages(pair.logs)
    assert os.listdir(pair.rep) == []  # neither the file nor a temporary
    again = synchro.mirror(pair.src, pair.rep)
    assert again.added == ["disk.img"]
    assert_sparse_copy(pair.src / "disk.img", pair.rep / "disk.img")


# --- the faces ----------------------------------------------------------------------------------

IMAGE = 256 * MIB
IMAGE_DATA = [(0, MIB), (100 * MIB + 12345, 3 * MIB), (IMAGE - 5 * MIB, MIB)]  # a hole at the end


def test_the_api_keeps_holes_in_the_large_file_threads(pair: Pair) -> None:
    """Files of 1 MiB or more are copied by the pool of threads (apply.BACKGROUND_MIN_SIZE)."""
    make_sparse(pair.src / "vm.img", IMAGE, IMAGE_DATA)
    make_sparse(pair.src / "db.sqlite", 32 * MIB, [(0, 8192), (16 * MIB, 8192)])

    report = synchro.mirror(pair.src, pair.rep)

    assert report.ok and sorted(report.added) == ["db.sqlite", "vm.img"]
    assert report.bytes_copied == IMAGE + 32 * MIB
    for name in ("vm.img", "db.sqlite"):
        assert_sparse_copy(pair.src / name, pair.rep / name)


def test_the_command_keeps_holes(pair: Pair) -> None:
    make_sparse(pair.src / "vm.img", IMAGE, IMAGE_DATA)

    result = run_synchro(pair.src, pair.rep, "1", pair.logs, "--once")

    assert result.returncode == 0, result.stderr
    assert " ADDED vm.img\n" in result.stdout
    assert_sparse_copy(pair.src / "vm.img", pair.rep / "vm.img")


def test_inv_backup_keeps_holes(tmp_path: Path) -> None:
    (tmp_path / "vms").mkdir()
    make_sparse(tmp_path / "vms" / "vm.img", IMAGE, IMAGE_DATA)
    (tmp_path / "backups.ini").write_text(
        "[vms]\nsource = vms\nreplica = backup\ncreate_replica = yes\n", encoding="utf-8"
    )

    result = Inv(tmp_path)("backup", "--pair", "vms")

    assert result.returncode == 0, result.stderr
    assert_sparse_copy(tmp_path / "vms" / "vm.img", tmp_path / "backup" / "vm.img")


# --- the features that copy or read files -------------------------------------------------------


def test_a_version_kept_on_another_file_system_keeps_its_holes(
    pair: Pair, mounts: Callable[[Path], Path]
) -> None:
    """Across file systems the old version is copied (not renamed) into the versions folder."""
    versions = mounts(pair.root / "versions-fs") / "versions"
    first = datetime(2026, 3, 1, 3, 0, 0)
    make_sparse(pair.src / "vm.img", SIZE, [(MIB, MIB)])
    assert synchro.mirror(pair.src, pair.rep, versions=versions, clock=lambda: first).ok
    old = pair.root / "old.img"
    make_sparse(old, SIZE, [(MIB, MIB)])  # the same bytes, to compare with the kept version
    make_sparse(pair.src / "vm.img", SIZE, [(MIB, MIB), (40 * MIB, MIB)], BASE_NS + SECOND)

    later = first + timedelta(days=1)
    report = synchro.mirror(pair.src, pair.rep, versions=versions, clock=lambda: later)

    assert report.ok and report.overwritten == ["vm.img"]
    kept = versions / f"{later:%Y-%m-%d_%H%M%S}" / "vm.img"
    assert same_bytes(kept, old)
    assert allocated(kept) <= allocated(old) + SLACK
    assert_sparse_copy(pair.src / "vm.img", pair.rep / "vm.img")


def test_a_restore_keeps_holes(tmp_path: Path) -> None:
    (tmp_path / "vms").mkdir()
    make_sparse(tmp_path / "vms" / "vm.img", SIZE, [(3 * MIB, MIB)])
    (tmp_path / "backups.ini").write_text("[vms]\nsource = vms\nreplica = backup\n", encoding="utf-8")
    (tmp_path / "backup").mkdir()
    assert synchro.mirror(tmp_path / "vms", tmp_path / "backup").ok

    report = runner.restore(load_config(tmp_path / "backups.ini").pair("vms"), to=str(tmp_path / "back"))

    assert not report.failed
    assert_sparse_copy(tmp_path / "vms" / "vm.img", tmp_path / "back" / "vm.img")


def test_checksum_and_verify_read_the_holes_as_zeros(pair: Pair) -> None:
    make_sparse(pair.src / "vm.img", SIZE, [(0, MIB)])
    assert synchro.mirror(pair.src, pair.rep).ok

    assert synchro.mirror(pair.src, pair.rep, checksum=True, verbose=True).untouched == ["vm.img"]
    exact = run_synchro(pair.src, pair.rep, "--verify")
    assert exact.returncode == 0, exact.stdout + exact.stderr

    # A byte in a hole of the replica: same size and time, other bytes.
    _write_into_a_hole(pair.rep / "vm.img")
    os.utime(pair.rep / "vm.img", ns=(BASE_NS, BASE_NS))
    rotten = run_synchro(pair.src, pair.rep, "--verify")
    assert rotten.returncode == 1
    assert rotten.stdout.splitlines()[1].startswith("CONTENT vm.img: bytes differ, same size and time ")
    assert synchro.mirror(pair.src, pair.rep, checksum=True).overwritten == ["vm.img"]
    assert_sparse_copy(pair.src / "vm.img", pair.rep / "vm.img")
