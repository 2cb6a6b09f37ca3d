"""What a file's permissions are on each system, as :class:`~synchro.endpoints.base.Meta` carries them.

On POSIX they are the permission bits. Windows holds no such bits: a file
is read-only or not (``os.chmod`` sets and clears that attribute), and
it may be hidden or a system file, which the seed's users lost in every
copy ("hidden files"). Those two attributes travel in bits of the mode
that Windows never uses (set-group-ID for system, sticky for hidden), so
that the planner, which compares modes, sees a change of either, and a
copy or an ``ATTRS`` action puts them back; nothing else reads them.
"""

from __future__ import annotations

import os
import stat

WINDOWS = os.name == "nt"

HIDDEN_BIT = stat.S_ISVTX
SYSTEM_BIT = stat.S_ISGID
# stat.FILE_ATTRIBUTE_* exist on every system (plain numbers).
_HIDDEN = stat.FILE_ATTRIBUTE_HIDDEN
_SYSTEM = stat.FILE_ATTRIBUTE_SYSTEM
_READONLY = stat.FILE_ATTRIBUTE_READONLY
_REPARSE_POINT = stat.FILE_ATTRIBUTE_REPARSE_POINT


def mode_of(st: os.stat_result) -> int:
    """The permission bits of ``st``, with Windows' hidden and system attributes."""
    mode = stat.S_IMODE(st.st_mode)
    if WINDOWS:
        attributes = _attributes(st)
        if attributes & _HIDDEN:
            mode |= HIDDEN_BIT
        if attributes & _SYSTEM:
            mode |= SYSTEM_BIT
    return mode


def mode_difference(source: int, replica: int) -> str:
    """How two modes differ, as a user of this system reads them: ``mode 0644 in the
    source, 0600 in the replica``; on Windows the attributes they carry."""
    if not WINDOWS:
        return f"mode {source:04o} in the source, {replica:04o} in the replica"
    return f"{_attribute_words(source)} in the source, {_attribute_words(replica)} in the replica"


def _attribute_words(mode: int) -> str:
    words = [
        word
        for held, word in (
            (not mode & stat.S_IWRITE, "read-only"),
            (mode & HIDDEN_BIT, "hidden"),
            (mode & SYSTEM_BIT, "system"),
        )
        if held
    ]
    return f"attributes {', '.join(words)}" if words else "no attributes"


def has_reparse_point(st: os.stat_result) -> bool:
    """A link, a junction or another reparse point (Windows)."""
    return WINDOWS and bool(_attributes(st) & _REPARSE_POINT)


def is_reparse_point(st: os.stat_result) -> bool:
    """A junction (or another reparse point that is not a symlink): never entered or followed.

    Python 3.10 and 3.11 have no ``os.path.isjunction``; ``lstat`` shows a
    junction as a folder, and only this attribute tells it.
    """
    return WINDOWS and bool(_attributes(st) & _REPARSE_POINT) and not stat.S_ISLNK(st.st_mode)


def set_mode(path: str, mode: int, *, fresh: bool = False) -> None:
    """Give the file or folder at ``path`` (never a link) the permissions of ``mode``.

    On Windows: read-only when ``mode`` has no write bit, and the hidden and
    system attributes as its bits say (other attributes are left alone).
    ``fresh``: a file this run just made, which has none of them yet.
    """
    if not WINDOWS:
        os.chmod(path, stat.S_IMODE(mode))
        return
    if fresh and mode & stat.S_IWRITE and not mode & (HIDDEN_BIT | SYSTEM_BIT):
        return  # most files: nothing to set, and no call to find it out
    _set_attributes(path, mode)


def make_writable(path: str) -> None:
    """Clear Windows' read-only attribute, which refuses a replace or a delete of the file."""
    if WINDOWS:
        current = _attributes(os.lstat(path))
        if current & _READONLY:
            _win_set(path, current & ~_READONLY)


def _set_attributes(path: str, mode: int) -> None:
    current = _attributes(os.lstat(path))
    wanted = current & ~(_HIDDEN | _SYSTEM | _READONLY)
    if mode & HIDDEN_BIT:
        wanted |= _HIDDEN
    if mode & SYSTEM_BIT:
        wanted |= _SYSTEM
    if not mode & stat.S_IWRITE:
        wanted |= _READONLY
    if wanted != current:
        _win_set(path, wanted)


def _win_set(path: str, attributes: int) -> None:
    import ctypes  # Windows only: SetFileAttributesW has no os counterpart

    # 0x80 (NORMAL) is the value for "no attribute"; 0 is refused.
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    if not kernel32.SetFileAttributesW(path, attributes or 0x80):
        code = ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]
        raise OSError(None, ctypes.FormatError(code).strip(), path, code)  # type: ignore[attr-defined,unused-ignore]


def _attributes(st: os.stat_result) -> int:
    # Windows only (typeshed knows it there alone).
    return int(getattr(st, "st_file_attributes", 0))
