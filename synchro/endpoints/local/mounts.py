"""The name of the file system a folder lives on, for messages.

``/proc/self/mountinfo`` names each mount's type; a folder's ``st_dev``
finds its line. FUSE file systems mounted on a block device all say
``fuseblk`` there (exfat-fuse, ntfs-3g): when the device can be read (by
root), its boot sector tells which it is.
"""

from __future__ import annotations

import os
import stat
from typing import NamedTuple

MOUNTINFO = "/proc/self/mountinfo"


class Mount(NamedTuple):
    fs_type: str  # as mountinfo says: "ext4", "tmpfs", "fuseblk", "fuse.sshfs"
    source: str  # the device or the server: "/dev/sdb1", "tmpfs"


def mount_of(st_dev: int, mountinfo: str = MOUNTINFO) -> Mount | None:
    """The mount whose device is ``st_dev``; None where mountinfo cannot tell (not Linux)."""
    wanted = f"{os.major(st_dev)}:{os.minor(st_dev)}"
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as lines:
            for line in lines:
                # "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
                fields = line.split()
                if len(fields) > 2 and fields[2] == wanted and " - " in line:
                    fs_type, source, *_ = line.split(" - ", 1)[1].split()
                    return Mount(fs_type, _unescape(source))
    except OSError:
        return None
    return None


def fs_name(st_dev: int, mountinfo: str = MOUNTINFO) -> str:
    """A short name of the file system on device ``st_dev``: "ext4", "exfat", "vfat"..."""
    mount = mount_of(st_dev, mountinfo)
    if mount is None:
        return "unknown"
    if mount.fs_type == "fuseblk":
        return sniff(mount.source) or mount.fs_type
    return mount.fs_type


# Boot-sector signatures: (offset, bytes, name).
_SIGNATURES = (
    (3, b"EXFAT   ", "exfat"),
    (3, b"NTFS    ", "ntfs"),
    (82, b"FAT32   ", "vfat"),
    (54, b"FAT12   ", "vfat"),
    (54, b"FAT16   ", "vfat"),
)


def sniff(device: str) -> str | None:
    """The file system on a block device from its boot sector; None when unreadable or unknown."""
    if not device.startswith("/dev/"):
        return None
    try:
        # Not O_NOFOLLOW: /dev/mapper and /dev/disk names are links to the device.
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None  # only root may read a disk: the name stays "fuseblk"
    try:
        if not stat.S_ISBLK(os.fstat(fd).st_mode):
            return None
        sector = os.pread(fd, 512, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    for offset, signature, name in _SIGNATURES:
        if sector[offset : offset + len(signature)] == signature:
            return name
    return None


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field
