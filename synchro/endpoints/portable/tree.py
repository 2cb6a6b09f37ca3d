"""A local tree read through paths: ``os.scandir`` and ``lstat``, never following a link or a junction.

Where folder descriptors are missing (Windows: no ``O_DIRECTORY``, no
``dir_fd``), a folder is named by its path from the tree's root. Nothing is
followed: a link is listed as a link, a junction (or any other reparse
point) as something that is neither copied nor entered, and a source file
is opened only after ``lstat`` says it is a file, then checked to be that
same file (device and inode), so that a name swapped for a link between
the two is refused rather than read through.

On Windows the root is given the ``\\\\?\\`` prefix: paths longer than 260
characters work, and Windows does not rewrite names (trailing dots and
spaces are kept, ``CON`` is a file name, not the console).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from ..base import Kind, Listing, Meta, SourceChanged, SourceVanished, describe
from .attributes import WINDOWS, has_reparse_point, is_reparse_point, mode_of

# Windows' ERROR_SHARING_VIOLATION and ERROR_LOCK_VIOLATION: another program
# holds the file open without sharing it (or has locked part of it).
_IN_USE = (32, 33)
IN_USE = "in use by another program"

_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
_READ |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


class SourceInUse(SourceChanged):
    """Another program holds the source file open without sharing: skipped, copied on a later cycle."""

    def __init__(self) -> None:
        super().__init__(IN_USE)


def long_path(path: str) -> str:
    """``path`` (absolute) in the form every later call may extend past 260 characters."""
    if not WINDOWS or path.startswith("\\\\?\\"):
        return path
    path = os.path.abspath(path)
    if path.startswith("\\\\"):  # a share: \\server\share
        return "\\\\?\\UNC\\" + path[2:]
    return "\\\\?\\" + path


def kind_of(st: os.stat_result) -> Kind:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return Kind.LINK
    if is_reparse_point(st):
        return Kind.SPECIAL
    if stat.S_ISREG(mode):
        return Kind.FILE
    if stat.S_ISDIR(mode):
        return Kind.DIR
    return Kind.SPECIAL


def meta_of(st: os.stat_result, target: str | None = None) -> Meta:
    return Meta(kind_of(st), st.st_size, st.st_mtime_ns, mode_of(st), st.st_uid, st.st_gid, target)


def _open_windows(path: str) -> int:
    """A reading descriptor of file ``path``, never through a reparse point.

    ``os.open`` goes through the C runtime, which says ``EACCES`` both for a
    file it may not read and for one another program holds without sharing;
    ``CreateFile`` tells them apart (``ERROR_SHARING_VIOLATION``), and opens
    the reparse point itself rather than what it points to. The file is
    shared for reading, writing and deleting: a backup never stands in the
    way of the program that owns the file.
    """
    import _winapi  # type: ignore[import-not-found,unused-ignore]
    import msvcrt

    handle = _winapi.CreateFile(  # type: ignore[attr-defined,unused-ignore]
        path,
        0x80000000,  # GENERIC_READ
        0x7,  # FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
        0,
        3,  # OPEN_EXISTING
        0x00200000 | 0x08000000,  # FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_SEQUENTIAL_SCAN
        0,
    )
    try:
        return int(msvcrt.open_osfhandle(handle, os.O_RDONLY | getattr(os, "O_BINARY", 0)))  # type: ignore[attr-defined,unused-ignore]
    except BaseException:
        _winapi.CloseHandle(handle)  # type: ignore[attr-defined,unused-ignore]
        raise


def _open_source_windows(path: str, name: str) -> int:
    """Open source file ``path`` on Windows: the reparse point itself if one is
    there (never what it leads to), refused unless it is a regular file."""
    try:
        fd = _open_windows(path)
    except (FileNotFoundError, NotADirectoryError):
        raise SourceVanished(name) from None
    except PermissionError as error:
        if getattr(error, "winerror", None) in _IN_USE:
            raise SourceInUse() from None
        raise
    st = os.fstat(fd)
    if has_reparse_point(st) or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SourceChanged("is no longer a regular file")
    return fd


class PortableTree:
    """The tree at folder ``root`` (resolved): a :class:`~synchro.endpoints.base.Source`."""

    def __init__(self, root: str) -> None:
        self.root = long_path(root)
        self._sep = "\\" if WINDOWS else "/"

    def path(self, folder: str, name: str = "") -> str:
        """The path of entry ``folder/name`` (``/``-separated, relative to the root)."""
        rel = f"{folder}/{name}" if folder and name else folder or name
        if not rel:
            return self.root
        if WINDOWS:
            rel = rel.replace("/", "\\")
        return self.root.rstrip(self._sep) + self._sep + rel

    def list(self, folder: str) -> Listing:
        entries: dict[str, Meta] = {}
        errors: dict[str, str] = {}
        with os.scandir(self.path(folder)) as listing:
            for entry in listing:
                try:
                    # On Windows from the listing itself; elsewhere one lstat.
                    st = entry.stat(follow_symlinks=False)
                    target = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else None
                except FileNotFoundError:
                    continue  # gone since it was listed
                except OSError as error:
                    errors[entry.name] = describe(error)
                    continue
                entries[entry.name] = meta_of(st, target)
        return Listing(entries, errors)

    def lookup(self, path: str) -> Meta | None:
        folder, _, name = path.rpartition("/")
        full = self.path(folder, name)
        try:
            st = os.lstat(full)
            target = os.readlink(full) if stat.S_ISLNK(st.st_mode) else None
        except (FileNotFoundError, NotADirectoryError):
            return None
        return meta_of(st, target)

    def identity(self, folder: str) -> tuple[int, int]:
        found = os.lstat(self.path(folder))
        return found.st_dev, found.st_ino

    def check_folder(self, path: str) -> None:
        st = os.lstat(self.path(path))
        if not stat.S_ISDIR(st.st_mode) or is_reparse_point(st):
            raise OSError(errno.ENOTDIR, "is no longer a folder", path)

    def read_ahead(self, folder: str, names: Sequence[str]) -> bool:
        # Never: Windows has no posix_fadvise, and reading ahead there would
        # take threads of its own (not built; the copies read in order).
        return False

    def open_file(self, folder: str, name: str) -> int:
        full = self.path(folder, name)
        if WINDOWS:
            return _open_source_windows(full, name)
        try:
            listed = os.lstat(full)
            if kind_of(listed) is not Kind.FILE:
                raise SourceChanged("is no longer a regular file")
            fd = os.open(full, _READ)
        except (FileNotFoundError, NotADirectoryError):
            raise SourceVanished(name) from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise SourceChanged("became a link while copying") from None
            raise
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (listed.st_dev, listed.st_ino):
            os.close(fd)
            raise SourceChanged("replaced while copying")
        return fd

    def close(self) -> None:
        pass  # nothing is held open between calls
