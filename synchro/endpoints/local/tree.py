"""A local tree read through folder descriptors: the source, and what a local replica reads.

Every folder below the root is opened relative to its parent with
``O_NOFOLLOW`` (:class:`~synchro.endpoints.local.fds.DirStack`), each folder
is listed with one ``lstat`` per entry relative to its descriptor
(:func:`~synchro.endpoints.local.scan.list_folder`), so a folder swapped for
a symlink makes a read fail instead of leading outside the tree.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence

from ..base import Listing, Meta
from .fds import DirStack, open_root
from .filecopy import READ_FLAGS, Opener, default_opener, open_source
from .mounts import mount_of
from .scan import list_folder, meta_of

# A component that is gone, or a file or a link where a folder was: absent.
_ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
# File systems in memory: a read never waits there, so nothing is read ahead.
IN_MEMORY = frozenset({"tmpfs", "ramfs"})


class LocalTree:
    """One local tree, open at its root: a :class:`~synchro.endpoints.base.Source`
    (and :class:`~synchro.endpoints.base.Forkable`).

    ``opener`` opens a source file by (name, folder descriptor): a test hook
    that can slow a read or change a file as it is opened.
    """

    def __init__(self, root_fd: int, *, opener: Opener = default_opener, owns_root: bool = False) -> None:
        self.opener = opener
        self._attach(root_fd, owns_root)

    def _attach(self, root_fd: int, owns_root: bool) -> None:
        self.root = root_fd
        self._owns_root = owns_root
        # Two stacks of descriptors: the walk lists through one, the actions
        # open folders anew through the other. A folder swapped for a link,
        # or removed, between its listing and the writes into it is then
        # refused (ELOOP, ENOENT) instead of written through a descriptor
        # kept from the walk, which would land the files where no name leads.
        self._listed = DirStack(root_fd)
        self.stack = DirStack(root_fd)
        # Decided at the first read_ahead (a run that copies nothing never asks).
        self._reads_ahead: bool | None = None
        # The descriptor of a folder by its path: the applier asks for one per
        # action, so it is the stack's own method, not a call through this one.
        self.fd: Callable[[str], int] = self.stack.fd

    @classmethod
    def open_at(cls, path: str, *, opener: Opener = default_opener) -> LocalTree:
        """Open the tree at ``path`` (resolved by the caller: a root that is a link is followed once)."""
        return cls(open_root(path), opener=opener, owns_root=True)

    def list(self, folder: str) -> Listing:
        return list_folder(self._listed.fd(folder))

    def lookup(self, path: str) -> Meta | None:
        parent, _, name = path.rpartition("/")
        try:
            fd = self._listed.fd(parent)
            if not name:
                return meta_of(os.fstat(fd))
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            target = os.readlink(name, dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
        except OSError as error:
            if error.errno in _ABSENT:
                return None
            raise
        return meta_of(st, target)

    def identity(self, folder: str) -> tuple[int, int]:
        # The descriptor the listing of that folder opens anyway (the stack keeps the last one).
        found = os.fstat(self._listed.fd(folder))
        return found.st_dev, found.st_ino

    def check_folder(self, path: str) -> None:
        self.fd(path)  # opened now: what is copied into it next needs it anyway

    def open_file(self, folder: str, name: str) -> int:
        return open_source(self.opener, name, self.fd(folder))

    def read_ahead(self, folder: str, names: Sequence[str]) -> bool:
        if self._reads_ahead is None:
            self._reads_ahead = reads_ahead(self.root)
        if not self._reads_ahead:
            return False
        try:
            dir_fd = self.fd(folder)
        except OSError:
            return True  # its copies will say why
        for name in names:
            # The copy's own flags (no link followed, no wait on a FIFO put
            # there since the listing): this opens nothing the copy would not.
            try:
                fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                # Queues the reads of the file's first pages and returns: the
                # disk reads them while the files before it are copied.
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass  # a file system that takes no advice: the copy reads as before
            finally:
                os.close(fd)
        return True

    def forked(self) -> LocalTree:
        """This tree for a forked process: the same root, descriptors of its own below it.

        The descriptors below the root are shared with the parent (the same
        open files): two processes listing one folder through one of them
        would move each other's position.
        """
        twin = LocalTree(self.root, opener=self.opener)
        twin._reads_ahead = self._reads_ahead
        return twin

    def close(self) -> None:
        self._listed.close()
        self.stack.close()
        if self._owns_root:
            self._owns_root = False
            os.close(self.root)
            self.root = -1


def reads_ahead(root: int) -> bool:
    """Whether files of the tree at ``root`` are read ahead of their copies:
    on a disk (or a FUSE daemon, or a server), not in memory.

    Not on macOS either: it has no ``posix_fadvise`` (its ``F_RDADVISE``
    is not in Python's ``fcntl``), and its copies go on as before.
    """
    if not hasattr(os, "posix_fadvise"):
        return False
    mount = mount_of(os.fstat(root).st_dev)
    return mount is None or mount.fs_type not in IN_MEMORY
