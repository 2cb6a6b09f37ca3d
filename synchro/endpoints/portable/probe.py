"""What a replica reached through paths can hold: the portable endpoint's :class:`Capabilities`.

As the descriptor-based probe does (:mod:`synchro.endpoints.local.probe`),
it tries each thing once in a hidden folder of the replica root and reads
back what stuck. On Windows, what Windows refuses in a name is known
rather than tried: the ``\\\\?\\`` paths this endpoint uses would let NTFS
store ``CON`` or ``a.`` , which no other program could then open or delete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable

from ..base import TEMP_PREFIX
from ..capabilities import PROBE_BASE_NS, WINDOWS_FORBIDDEN, Capabilities, time_step
from .attributes import WINDOWS

PROBE_NAME = f"{TEMP_PREFIX}probe"


def probe(root: str, *, as_root: bool) -> Capabilities:
    """Measure the file system of folder ``root`` (a long path). Raises OSError
    only when the probe's folder, once made, cannot be removed."""
    before = os.stat(root)
    folder = os.path.join(root, PROBE_NAME)
    try:
        if os.path.lexists(folder):
            shutil.rmtree(folder)  # a leftover of a run that crashed (never follows a link)
        os.mkdir(folder, 0o700)
    except OSError:
        return Capabilities(fs_name(root), owners=False, symlinks=False, special_files=False)
    try:
        return _measure(folder, fs_name(root), as_root=as_root)
    finally:
        shutil.rmtree(folder)
        with contextlib.suppress(OSError):
            # The root's time is compared with the source's: put it back.
            os.utime(root, ns=(before.st_atime_ns, before.st_mtime_ns))


def _measure(folder: str, fs_type: str, *, as_root: bool) -> Capabilities:
    probe_file = os.path.join(folder, "cAsE")
    with open(probe_file, "wb"):
        pass
    case_sensitive = not os.path.lexists(os.path.join(folder, "CaSe"))
    precision = time_step(
        lambda ns: os.utime(probe_file, ns=(ns, ns)), lambda: os.lstat(probe_file).st_mtime_ns
    )
    link = os.path.join(folder, "link")
    # Wine "makes" a link that nothing can find afterwards: only one that is there counts.
    symlinks = _succeeds(lambda: os.symlink("cAsE", link)) and _is_link(link)
    link_times = (
        symlinks
        and not WINDOWS
        and _succeeds(lambda: os.utime(link, ns=(PROBE_BASE_NS, PROBE_BASE_NS), follow_symlinks=False))
    )
    if WINDOWS:
        # Read-only, hidden and system (attributes.py); no owners, no FIFOs.
        return Capabilities(
            fs_type,
            owners=False,
            symlinks=symlinks,
            link_times=link_times,
            special_files=False,
            time_precision_ns=precision or 1,
            times=precision is not None,
            case_sensitive=case_sensitive,
            forbidden_chars=WINDOWS_FORBIDDEN,
            windows_names=True,
        )
    return Capabilities(
        fs_type,
        owners=as_root and _owners(probe_file),
        permissions=_succeeds(lambda: os.chmod(probe_file, 0o640))
        and stat.S_IMODE(os.lstat(probe_file).st_mode) == 0o640,
        symlinks=symlinks,
        link_times=link_times,
        special_files=_succeeds(lambda: os.mkfifo(os.path.join(folder, "fifo"))),
        time_precision_ns=precision or 1,
        times=precision is not None,
        case_sensitive=case_sensitive,
        max_name_bytes=os.statvfs(folder).f_namemax,
        forbidden_chars="" if _creates(os.path.join(folder, "a:b")) else WINDOWS_FORBIDDEN,
        utf8_only=not _creates(os.path.join(os.fsencode(folder), b"not-utf8-\xff")),
    )


def _is_link(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _owners(path: str) -> bool:
    st = os.lstat(path)
    uid, gid = (1 if st.st_uid != 1 else 2), (1 if st.st_gid != 1 else 2)
    if not _succeeds(lambda: os.lchown(path, uid, gid)):
        return False
    st = os.lstat(path)
    return (st.st_uid, st.st_gid) == (uid, gid)


def _creates(path: str | bytes) -> bool:
    return _succeeds(lambda: open(path, "xb").close())


def _succeeds(call: Callable[[], object]) -> bool:
    try:
        call()
    except OSError:
        return False
    return True


def fs_name(root: str) -> str:
    """The file system's name, for messages: ``ntfs``, ``ext4``..."""
    if WINDOWS:
        return _volume_fs(root)
    from ..local.mounts import fs_name as mounted

    return mounted(os.stat(root).st_dev)


def _volume_fs(root: str) -> str:
    import ctypes  # Windows only

    drive = os.path.splitdrive(root.removeprefix("\\\\?\\"))[0] + "\\"
    name = ctypes.create_unicode_buffer(64)
    kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined,unused-ignore]
    if kernel32.GetVolumeInformationW(drive, None, 0, None, None, None, name, len(name)):
        return name.value.lower() or "windows"
    return "windows"
