"""A local folder tree reached through folder descriptors: the features' :class:`~synchro.endpoints.base.Folders`.

Every entry is reached relative to its folder's descriptor, opened with
``O_NOFOLLOW`` one component at a time (:class:`~synchro.endpoints.local.fds.DirStack`),
so a folder swapped for a link makes a call fail instead of acting
elsewhere; :mod:`~synchro.endpoints.local.fdtree` and
:mod:`~synchro.endpoints.local.filecopy` do the work.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress

from ..base import Folders, Listing, Meta
from . import fdtree, filecopy
from .fds import DIR_FLAGS, DirStack, open_root
from .flags import O_CLOEXEC, O_NOFOLLOW
from .scan import list_folder

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | O_NOFOLLOW | O_CLOEXEC


def _split(rel: str) -> tuple[str, str]:
    parent, _, name = rel.rpartition("/")
    return parent, name


class DescriptorFolders:
    """The tree whose root folder is ``stack``'s; ``owned``: its root descriptor is closed with it."""

    def __init__(self, stack: DirStack, *, owned: bool) -> None:
        self.stack = stack
        self._owned = owned

    @classmethod
    def open(cls, path: str) -> DescriptorFolders:
        """The folder at ``path`` (resolved: links are followed once, here)."""
        return cls(DirStack(open_root(path)), owned=True)

    def _at(self, rel: str) -> tuple[int, str]:
        parent, name = _split(rel)
        return self.stack.fd(parent), name

    def lookup(self, rel: str) -> Meta | None:
        return fdtree.lookup(self.stack, rel)

    def list(self, rel: str) -> Listing:
        return list_folder(self.stack.fd(rel))

    def first_names(self, rel: str, count: int) -> tuple[str, ...]:
        names: list[str] = []
        # scandir of a descriptor reads it from its start (and rewinds it for the next reader).
        with os.scandir(self.stack.fd(rel)) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) >= count:
                    break
        return tuple(names)

    def open_read(self, rel: str) -> int:
        folder, name = self._at(rel)
        fd = -1
        noatime = getattr(os, "O_NOATIME", 0)
        if noatime:
            with suppress(PermissionError):  # O_NOATIME is for the file's owner (or root) only
                fd = os.open(name, filecopy.READ_FLAGS | noatime, dir_fd=folder)
        if fd < 0:
            fd = os.open(name, filecopy.READ_FLAGS, dir_fd=folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "is no longer a regular file", rel)
        return fd

    def create(self, rel: str) -> int:
        folder, name = self._at(rel)
        return os.open(name, _CREATE, 0o600, dir_fd=folder)

    def sync(self, rel: str, *, folder: bool) -> None:
        if folder:
            os.fsync(self.stack.fd(rel))
            return
        fd = self.open_read(rel)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def make_folder(self, rel: str) -> bool:
        return fdtree.make_folder(*self._at(rel))

    def subtree(self, rel: str) -> DescriptorFolders:
        folder, name = self._at(rel)
        return DescriptorFolders(DirStack(os.open(name, DIR_FLAGS, dir_fd=folder)), owned=True)

    def set_folder_meta(self, rel: str, meta: Meta, *, keep_owner: bool) -> None:
        filecopy.set_folder_meta(self.stack.fd(rel), meta, keep_owner=keep_owner)

    def copy_link(self, rel: str, meta: Meta, *, keep_owner: bool) -> None:
        folder, name = self._at(rel)
        filecopy.copy_link(folder, name, meta, keep_owner=keep_owner)

    def copy_from(self, other: Folders, rel: str, *, keep_owner: bool) -> int:
        source, name = _same(other)._at(rel)
        return filecopy.copy_file(source, self._at(rel)[0], name, keep_owner=keep_owner)

    def link_from(self, other: Folders, rel: str) -> None:
        source, name = _same(other)._at(rel)
        os.link(name, name, src_dir_fd=source, dst_dir_fd=self._at(rel)[0], follow_symlinks=False)

    def move_from(self, other: Folders, rel: str) -> None:
        source, name = _same(other)._at(rel)
        os.rename(name, name, src_dir_fd=source, dst_dir_fd=self._at(rel)[0])

    def replace(self, rel: str, new: str) -> None:
        old_folder, old = self._at(rel)
        new_folder, name = self._at(new)
        os.replace(old, name, src_dir_fd=old_folder, dst_dir_fd=new_folder)

    def remove(self, rel: str) -> None:
        folder, name = self._at(rel)
        os.unlink(name, dir_fd=folder)

    def remove_folder(self, rel: str) -> None:
        folder, name = self._at(rel)
        os.rmdir(name, dir_fd=folder)

    def remove_tree(self, rel: str) -> None:
        fdtree.remove_tree(*self._at(rel))

    def close(self) -> None:
        self.stack.close()
        if self._owned:
            os.close(self.stack.root)


def _same(other: Folders) -> DescriptorFolders:
    # Both trees of one operation come from the same endpoint (resolve.open_folders).
    assert isinstance(other, DescriptorFolders), other
    return other
