"""Real file systems for the replica: exFAT, FAT32 and case-folding ext4, made per test session.

Each kind is one image file in a temporary folder, made once per session
(``mkfs``), attached to a loop device and mounted; each test gets a fresh
empty folder inside it. Teardown unmounts, detaches and deletes. Where the
machine cannot (no tools, no loop devices, no FUSE, not root), the tests
that ask for it are skipped with the reason.

- exFAT: the kernel's exfat driver where ``/proc/filesystems`` lists it,
  else ``mount.exfat-fuse`` (Debian: exfatprogs, exfat-fuse). exFAT keeps
  no owners, permissions or links, and does not tell case apart.
  ``exfat_for_nobody`` is mounted for uid 65534, as a desktop mounts a USB
  drive for its user.
- FAT32: the kernel's vfat driver, else ``fusefat`` (Debian: dosfstools,
  fusefat). fusefat is a weak driver (no chmod, no folder renames, and it
  dies when asked to set the times of the drive's root), so the tests use
  it for the probe only, always in a sub-folder.
- ext4 with ``casefold`` (a case-insensitive folder by ``chattr +F``)
  where the kernel supports it.
- tmpfs: a RAM disk of its own for one test (``tmpfs``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IMAGE_MIB = 64


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own, mounted under ``tmp_path`` for one test."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount_point)], check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


@dataclass
class Volume:
    """A mounted image: ``folder()`` gives a new empty folder on it."""

    kind: str  # "exfat", "vfat", "casefold-ext4"
    mount_point: Path
    driver: str  # "kernel", "exfat-fuse", "fusefat"
    command: tuple[str, ...] = ()  # mounts it, given the mount point as last argument
    _names: Iterator[int] = field(default_factory=itertools.count)

    def folder(self) -> Path:
        # Plain names: exFAT and FAT refuse the brackets and colons of test ids.
        path = self.mount_point / f"t{next(self._names)}"
        path.mkdir()
        return path

    def remount(self) -> None:
        """Unmount and mount again: what was only in the driver's memory is gone."""
        _umount(self.mount_point)
        result = _run(*self.command, str(self.mount_point))
        assert result.returncode == 0, f"cannot mount {self.kind} again: {_last_line(result)}"


def _kernel_has(fs_type: str) -> bool:
    try:
        with open("/proc/filesystems", encoding="ascii") as listing:
            return any(line.split()[-1] == fs_type for line in listing if line.strip())
    except OSError:
        return False


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[-1] if lines else f"exit code {result.returncode}"


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@contextlib.contextmanager
def _image(folder: Path, name: str, *mkfs: str, loop: bool = True) -> Iterator[str]:
    """A new image file made by ``mkfs``, attached to a loop device: yields the device
    (or, with ``loop=False``, the image file itself)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system image needs root")
    _need(mkfs[0], "losetup")
    image = folder / name
    with open(image, "wb") as f:
        f.truncate(IMAGE_MIB * 1024 * 1024)  # sparse: mkfs writes what it needs
    try:
        made = _run(*mkfs, str(image))
        if made.returncode != 0:
            pytest.skip(f"{mkfs[0]} failed: {_last_line(made)}")
        if not loop:
            yield str(image)
            return
        attached = _run("losetup", "--find", "--show", str(image))
        if attached.returncode != 0:
            pytest.skip(f"cannot attach a loop device: {_last_line(attached)}")
        device = attached.stdout.strip()
        try:
            yield device
        finally:
            _run("losetup", "--detach", device)
    finally:
        image.unlink()


@contextlib.contextmanager
def _mounted(mount_point: Path, what: str, *command: str) -> Iterator[None]:
    mount_point.mkdir()
    result = _run(*command, str(mount_point))
    if result.returncode != 0:
        pytest.skip(f"cannot mount {what}: {_last_line(result)}")
    try:
        yield
    finally:
        _umount(mount_point)


def _umount(mount_point: Path) -> None:
    if _run("umount", str(mount_point)).returncode != 0:
        # A FUSE daemon that died leaves a mount only a lazy unmount removes.
        _run("umount", "--lazy", str(mount_point))


def _fuse_ready() -> None:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse: FUSE file systems cannot be mounted here")


@contextlib.contextmanager
def _exfat(tmp: Path, options: str = "") -> Iterator[Volume]:
    opts = ["-o", options] if options else []
    with _image(tmp, "exfat.img", "mkfs.exfat") as device:
        if _kernel_has("exfat"):
            driver, command = "kernel", ["mount", "-t", "exfat", *opts, device]
        else:
            _need("mount.exfat-fuse")
            _fuse_ready()
            # exfat-fuse wants a block device (on a plain image file it says
            # "Block device required"): hence the loop device.
            driver, command = "exfat-fuse", ["mount.exfat-fuse", *opts, device]
        mount_point = tmp / "exfat"
        with _mounted(mount_point, f"exFAT ({driver})", *command):
            yield Volume("exfat", mount_point, driver, tuple(command))


@pytest.fixture(scope="session")
def exfat_volume(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Volume]:
    with _exfat(tmp_path_factory.mktemp("exfat-volume")) as volume:
        yield volume


@pytest.fixture(scope="session")
def exfat_volume_for_nobody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Volume]:
    """exFAT mounted by root for uid/gid 65534 (as udisks mounts a drive for the desktop's user)."""
    with _exfat(tmp_path_factory.mktemp("exfat-nobody"), "uid=65534,gid=65534") as volume:
        yield volume


@pytest.fixture
def exfat(exfat_volume: Volume) -> Path:
    """A new empty folder on the session's exFAT file system."""
    return exfat_volume.folder()


@pytest.fixture(scope="session")
def vfat_volume(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Volume]:
    tmp = tmp_path_factory.mktemp("vfat-volume")
    mount_point = tmp / "vfat"
    if _kernel_has("vfat"):
        with (
            _image(tmp, "vfat.img", "mkfs.vfat", "-F", "32") as device,
            _mounted(mount_point, "FAT32 (kernel)", "mount", "-t", "vfat", device),
        ):
            yield Volume("vfat", mount_point, "kernel", ("mount", "-t", "vfat", device))
        return
    _need("fusefat")
    _fuse_ready()
    # fusefat reads the image file itself: no loop device (a machine has few).
    with (
        _image(tmp, "vfat.img", "mkfs.vfat", "-F", "32", loop=False) as image,
        _mounted(mount_point, "FAT32 (fusefat)", "fusefat", "-o", "rw+", image),
    ):
        yield Volume("vfat", mount_point, "fusefat", ("fusefat", "-o", "rw+", image))


@pytest.fixture
def vfat(vfat_volume: Volume) -> Path:
    """A new empty folder on the session's FAT32 file system (never its root: see above)."""
    return vfat_volume.folder()


@pytest.fixture(scope="session")
def casefold_volume(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Volume]:
    if not os.path.exists("/sys/fs/ext4/features/casefold"):
        pytest.skip("this kernel's ext4 has no casefold support")
    tmp = tmp_path_factory.mktemp("casefold-volume")
    mount_point = tmp / "ext4"
    with (
        _image(tmp, "ext4.img", "mkfs.ext4", "-q", "-O", "casefold") as device,
        _mounted(mount_point, "ext4 with casefold", "mount", "-t", "ext4", device),
    ):
        yield Volume("casefold-ext4", mount_point, "kernel", ("mount", "-t", "ext4", device))


@pytest.fixture
def casefold(casefold_volume: Volume) -> Path:
    """A new empty case-insensitive folder (``chattr +F``) on an ext4 made with casefold."""
    _need("chattr")
    folder = casefold_volume.folder()
    result = _run("chattr", "+F", str(folder))
    if result.returncode != 0:
        pytest.skip(f"chattr +F failed: {_last_line(result)}")
    return folder
