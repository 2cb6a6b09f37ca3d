"""Measure what a local replica's file system can hold: the run's :class:`Capabilities`.

Asking the file system's type is not enough: exFAT through the kernel
keeps times to 10 ms, through exfat-fuse to the second; a drive mounted
for one user lets that user set times and nobody else; NFS may squash
root's owner changes. So the probe tries each thing once, in a hidden
folder of the replica root (``.synchro-tmp-probe``, a name reserved for
temporaries), reads back what stuck, and removes the folder:

- one file ``cAsE``: is ``CaSe`` the same file (case), does ``fchmod``
  round-trip (permissions), does ``fchown`` to another owner stick (owners,
  root only; for another user: is a new file theirs at all), which step do
  two set times come back with (precision, or none: times);
- a link (links, and its own times), a FIFO (special files);
- a name with ``:`` (and when it is refused, each character Windows
  refuses), a name that is not UTF-8.

About thirty system calls: some 0.1 ms on tmpfs, a few ms through FUSE.
Nothing is cached: another drive may come under the same device number
between two runs of a long-lived process.

Every measurement that fails (``EPERM``, ``ENOSYS``, ``EIO``...) means
"cannot": that is the answer it asks for. Where the folder cannot be made
at all (a read-only or full drive, a folder that is not ours), the record
comes from the file system's name (:func:`guess`): FAT and exFAT are
known, anything else is taken for full POSIX. A dry run probes too: it
leaves nothing behind, and the replica root's times are put back.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable

from ..base import TEMP_PREFIX
from ..capabilities import (
    FULL_POSIX,
    WINDOWS_FORBIDDEN,
    WINDOWS_PRINTABLE,
    Capabilities,
    time_step,
)
from .flags import O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW
from .mounts import MOUNTINFO, fs_name

PROBE_NAME = f"{TEMP_PREFIX}probe"


_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
_DIR = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
_CASE, _CASE_SWAPPED = "cAsE", "CaSe"

# What the name of a file system says, for a replica that cannot be probed.
_FAT_LIKE = Capabilities(
    "fat",
    owners=False,
    permissions=False,
    symlinks=False,
    link_times=False,
    special_files=False,
    case_sensitive=False,
    forbidden_chars=WINDOWS_FORBIDDEN,
    utf8_only=True,
)
_KNOWN = {
    # 1 s covers both drivers: the kernel's keeps 10 ms, exfat-fuse whole seconds.
    "exfat": _FAT_LIKE._replace(time_precision_ns=10**9),
    "vfat": _FAT_LIKE._replace(time_precision_ns=2 * 10**9),
    "msdos": _FAT_LIKE._replace(time_precision_ns=2 * 10**9),
}


def guess(fs_type: str) -> Capabilities:
    """The record a file system's name implies (FULL_POSIX for any name not known)."""
    return _KNOWN.get(fs_type, FULL_POSIX)._replace(fs_type=fs_type)


def probe(folder_fd: int, *, as_root: bool, mountinfo: str = MOUNTINFO) -> Capabilities:
    """Measure what the file system of the folder open at ``folder_fd`` can hold.

    ``as_root``: whether this run mirrors owners (only root can give a file
    to someone else). Raises OSError only when the probe's own folder,
    once made, cannot be removed (the next probe removes it).
    """
    before = os.fstat(folder_fd)
    fs_type = fs_name(before.st_dev, mountinfo)
    try:
        probe_fd = _make_folder(folder_fd)
    except OSError:
        return guess(fs_type)
    try:
        return _measure(probe_fd, fs_type, as_root=as_root)
    finally:
        _remove(folder_fd, probe_fd)
        _put_back_times(folder_fd, before)


def _put_back_times(folder_fd: int, before: os.stat_result) -> None:
    """Making and removing a folder changed the root's times, which the plan
    compares with the source's: put them back."""
    if os.fstat(folder_fd).st_mtime_ns == before.st_mtime_ns:
        return  # a FAT root keeps no times (and fusefat dies when asked to set them)
    # Not the owner: the run's own DIRMETA for "./" meets the same refusal and says so.
    with contextlib.suppress(OSError):
        os.utime(folder_fd, ns=(before.st_atime_ns, before.st_mtime_ns))


def _measure(folder: int, fs_type: str, *, as_root: bool) -> Capabilities:
    fd = os.open(_CASE, _FILE, 0o600, dir_fd=folder)
    try:
        case_sensitive = not _exists(folder, _CASE_SWAPPED)
        owners = _owners(fd, as_root=as_root)
        permissions = _permissions(fd)
        precision = time_step(lambda ns: os.utime(fd, ns=(ns, ns)), lambda: os.fstat(fd).st_mtime_ns)
    finally:
        os.close(fd)
    symlinks = _succeeds(lambda: os.symlink(_CASE, "link", dir_fd=folder))
    link_precision = (
        time_step(
            lambda ns: os.utime("link", ns=(ns, ns), dir_fd=folder, follow_symlinks=False),
            lambda: os.stat("link", dir_fd=folder, follow_symlinks=False).st_mtime_ns,
        )
        if symlinks
        else None
    )
    # exfat-fuse answers EIO and leaves a regular file of that name: hence the check.
    special = _succeeds(lambda: os.mkfifo("fifo", dir_fd=folder)) and stat.S_ISFIFO(
        os.stat("fifo", dir_fd=folder, follow_symlinks=False).st_mode
    )
    return Capabilities(
        fs_type,
        owners=owners,
        permissions=permissions,
        symlinks=symlinks,
        link_times=link_precision is not None,
        special_files=special,
        time_precision_ns=precision or 1,
        case_sensitive=case_sensitive,
        max_name_bytes=os.fstatvfs(folder).f_namemax,
        forbidden_chars=_forbidden(folder),
        times=precision is not None,
        utf8_only=not _creates(folder, b"not-utf8-\xff"),
    )


def _owners(fd: int, *, as_root: bool) -> bool:
    st = os.fstat(fd)
    if not as_root:
        # Another user's run never gives files away; what it can lose is
        # its own ownership, on a drive mounted for someone else.
        return st.st_uid == os.geteuid()
    uid, gid = (1 if st.st_uid != 1 else 2), (1 if st.st_gid != 1 else 2)
    if not _succeeds(lambda: os.fchown(fd, uid, gid)):
        return False
    st = os.fstat(fd)
    return (st.st_uid, st.st_gid) == (uid, gid)


def _permissions(fd: int) -> bool:
    # exfat-fuse accepts any chmod and keeps 0777: only reading back tells.
    return _succeeds(lambda: os.fchmod(fd, 0o640)) and stat.S_IMODE(os.fstat(fd).st_mode) == 0o640


def _forbidden(folder: int) -> str:
    if _creates(folder, "a:b"):
        return ""  # POSIX: only "/" and NUL, which no source name holds
    refused = "".join(c for c in WINDOWS_PRINTABLE if not _creates(folder, f"x{c}y"))
    if not _creates(folder, "x\x01y"):
        refused += WINDOWS_FORBIDDEN[len(WINDOWS_PRINTABLE) :]
    return refused


def _creates(folder: int, name: str | bytes) -> bool:
    return _succeeds(lambda: os.close(os.open(name, _FILE, 0o600, dir_fd=folder)))


def _exists(folder: int, name: str) -> bool:
    return _succeeds(lambda: os.stat(name, dir_fd=folder, follow_symlinks=False))


def _succeeds(call: Callable[[], object]) -> bool:
    try:
        call()
    except OSError:
        return False
    return True


def _make_folder(root: int) -> int:
    """Make and open the probe's folder; a leftover of a run that crashed is removed first."""
    try:
        os.mkdir(PROBE_NAME, 0o700, dir_fd=root)
    except FileExistsError:
        try:
            leftover = os.open(PROBE_NAME, _DIR, dir_fd=root)
        except OSError:
            os.unlink(PROBE_NAME, dir_fd=root)  # not a folder: a file or a link of that name
        else:
            _remove(root, leftover)
        os.mkdir(PROBE_NAME, 0o700, dir_fd=root)
    return os.open(PROBE_NAME, _DIR, dir_fd=root)


def _remove(root: int, folder: int) -> None:
    """Remove the probe's folder, open at ``folder`` (closed here), and what it holds.

    The probe makes no sub-folder: one found there is not its own, and the
    rmdir fails rather than remove it.
    """
    try:
        for name in os.listdir(folder):
            os.unlink(name, dir_fd=folder)
    finally:
        os.close(folder)
    os.rmdir(PROBE_NAME, dir_fd=root)
