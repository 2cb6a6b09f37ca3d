"""A local folder tree reached through paths: the features' :class:`~synchro.endpoints.base.Folders` on Windows.

The same primitives as the portable replica (:mod:`~synchro.endpoints.portable.replica`):
``os.scandir`` and ``lstat``, never following a link or a junction; a
file written to a temporary beside its name, then ``os.replace``; the
read-only, hidden and system attributes as :mod:`~synchro.endpoints.portable.attributes`
keeps them; ``\\\\?\\`` long paths; a replace or delete that Windows
refuses because another program holds the file is tried again briefly.
A read-only file or folder that a removal meets is made writable first,
as the descriptor-based removal does: it is being removed anyway.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from contextlib import suppress

from ..base import Folders, Listing, Meta, SourceChanged, SourceVanished
from .attributes import WINDOWS, is_reparse_point, make_writable
from .replica import PortableReplica
from .tree import IN_USE

_READ = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
_CREATE |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# CreateHardLink's answers where the volume holds no hard links (FAT, exFAT):
# ERROR_INVALID_FUNCTION, ERROR_NOT_SUPPORTED.
_NO_HARD_LINKS = (1, 50)


def _split(rel: str) -> tuple[str, str]:
    parent, _, name = rel.rpartition("/")
    return parent, name


class PathFolders:
    """The tree at folder ``root`` (resolved)."""

    def __init__(self, root: str) -> None:
        # The replica's primitives, with nothing measured: it keeps
        # permissions (attributes) and times, and owners when told to.
        self.tree = PortableReplica(root)
        self.tree.link_times = not WINDOWS  # Windows cannot set a link's own time

    def path(self, rel: str) -> str:
        return self.tree.path(rel)

    def lookup(self, rel: str) -> Meta | None:
        return self.tree.lookup(rel)

    def list(self, rel: str) -> Listing:
        return self.tree.list(rel)

    def first_names(self, rel: str, count: int) -> tuple[str, ...]:
        names: list[str] = []
        with os.scandir(self.path(rel)) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) >= count:
                    break
        return tuple(names)

    def open_read(self, rel: str) -> int:
        if WINDOWS:
            try:
                # Shared for everything, and the reparse point itself if one is there.
                return self.tree.open_file(*_split(rel))
            except SourceVanished:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), rel) from None
            except SourceChanged as error:
                code = errno.EBUSY if str(error) == IN_USE else errno.EINVAL
                raise OSError(code, str(error), rel) from None
        path = self.path(rel)
        fd = -1
        noatime = getattr(os, "O_NOATIME", 0)
        if noatime:
            with suppress(PermissionError):  # O_NOATIME is for the file's owner (or root) only
                fd = os.open(path, _READ | noatime)
        if fd < 0:
            fd = os.open(path, _READ)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "is no longer a regular file", rel)
        return fd

    def create(self, rel: str) -> int:
        return os.open(self.path(rel), _CREATE, 0o600)

    def sync(self, rel: str, *, folder: bool) -> None:
        path = self.path(rel)
        if folder:
            if not WINDOWS:  # Windows cannot open a folder to flush it (NTFS journals its names)
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            return
        if not WINDOWS:
            fd = self.open_read(rel)
        else:
            # Windows flushes only through a handle open for writing, which a
            # read-only file refuses: lifted for the flush, then put back.
            readonly = not os.lstat(path).st_mode & stat.S_IWRITE
            if readonly:
                make_writable(path)
            try:
                fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
            finally:
                if readonly:
                    os.chmod(path, stat.S_IREAD)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def make_folder(self, rel: str) -> bool:
        path = self.path(rel)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or is_reparse_point(st):
                raise FileExistsError(errno.EEXIST, "exists and is not a folder", rel) from None
            return False
        return True

    def subtree(self, rel: str) -> PathFolders:
        path = self.path(rel)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or is_reparse_point(st):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", rel)
        return PathFolders(path)

    def set_folder_meta(self, rel: str, meta: Meta, *, keep_owner: bool) -> None:
        self.tree.keep_owner = keep_owner
        self.tree.set_folder_meta(rel, meta)

    def copy_link(self, rel: str, meta: Meta, *, keep_owner: bool) -> None:
        self.tree.keep_owner = keep_owner
        self.tree.copy_link(*_split(rel), meta)

    def copy_from(self, other: Folders, rel: str, *, keep_owner: bool) -> int:
        self.tree.keep_owner = keep_owner
        return self.tree.copy_file(_same(other).tree, *_split(rel))

    def link_from(self, other: Folders, rel: str) -> None:
        source = _same(other).path(rel)
        if WINDOWS and not os.lstat(source).st_mode & stat.S_IWRITE:
            # Windows replaces a read-only file only once that attribute is
            # cleared, and a hard link shares it: the kept version would lose
            # it. Such a file is moved instead, as where hard links are refused.
            raise PermissionError(errno.EPERM, "a read-only file is moved, not linked", rel)
        try:
            os.link(source, self.path(rel), follow_symlinks=False)
        except OSError as error:
            if getattr(error, "winerror", None) in _NO_HARD_LINKS:
                raise OSError(errno.EOPNOTSUPP, "no hard links on this drive", rel) from None
            raise

    def move_from(self, other: Folders, rel: str) -> None:
        # os.rename never replaces on Windows; the caller checked that nothing is there.
        source, target = _same(other).path(rel), self.path(rel)
        self.tree.retried(lambda: os.rename(source, target))

    def replace(self, rel: str, new: str) -> None:
        old_path, new_path = self.path(rel), self.path(new)
        self.tree.retried(lambda: os.replace(old_path, new_path))

    def remove(self, rel: str) -> None:
        self._removed(os.unlink, self.path(rel), missing_ok=False)

    def remove_folder(self, rel: str) -> None:
        self._removed(os.rmdir, self.path(rel), missing_ok=False)

    def remove_tree(self, rel: str) -> None:
        path = self.path(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode) or is_reparse_point(st):
            # A junction is removed with rmdir: the junction, never what it leads to.
            self._removed(os.rmdir if stat.S_ISDIR(st.st_mode) else os.unlink, path)
            return
        # Depth first, what a folder holds before the folder.
        pending = [(path, False)]
        while pending:
            folder, emptied = pending.pop()
            if emptied:
                self._removed(os.rmdir, folder)
                continue
            pending.append((folder, True))
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        found = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISDIR(found.st_mode) and not is_reparse_point(found):
                        pending.append((entry.path, False))
                    else:
                        self._removed(os.rmdir if stat.S_ISDIR(found.st_mode) else os.unlink, entry.path)

    def _removed(self, remove: Callable[[str], None], path: str, *, missing_ok: bool = True) -> None:
        """``remove(path)``; a read-only entry (Windows) or folder (POSIX) made writable
        first: ours to change, since it is being removed anyway."""
        try:
            if WINDOWS:
                make_writable(path)  # Windows refuses to delete a read-only file or folder
                self.tree.retried(lambda: remove(path))
                return
            try:
                remove(path)
            except PermissionError:
                parent = os.path.dirname(path)
                os.chmod(parent, stat.S_IMODE(os.lstat(parent).st_mode) | stat.S_IRWXU)
                remove(path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def close(self) -> None:
        pass  # nothing is held open between calls


def _same(other: Folders) -> PathFolders:
    # Both trees of one operation come from the same endpoint (resolve.open_folders).
    assert isinstance(other, PathFolders), other
    return other
