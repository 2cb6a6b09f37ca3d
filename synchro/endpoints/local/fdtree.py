"""Whole trees by descriptor: make folders, walk, measure and remove, never following links.

The helpers of :mod:`synchro.features.versions` and :mod:`synchro.features.restore`. Like the
engine, they work relative to folders opened with ``O_NOFOLLOW``
(:class:`synchro.endpoints.local.fds.DirStack`), so a folder swapped for a symlink makes
them fail instead of acting elsewhere, and trees hundreds of levels deep
cannot exhaust the descriptor limit.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator

from .fds import DirStack
from .scan import Kind, Meta, list_folder, meta_of


def join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def make_folder(parent_fd: int, name: str, mode: int = 0o700) -> bool:
    """Create folder ``name`` in ``parent_fd`` unless it exists; True if it was created.

    An existing entry that is not a folder is an error (``EEXIST``), not
    something to write through.
    """
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
    except FileExistsError:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise FileExistsError(errno.EEXIST, "exists and is not a folder", name) from None
        return False
    return True


def lookup(stack: DirStack, rel: str) -> Meta | None:
    """The entry at ``rel`` below the stack's root ("" is the root itself); None if absent.

    A component that is a file or a link means absent: nothing is followed.
    """
    parent, _, name = rel.rpartition("/")
    try:
        fd = stack.fd(parent)
        if not name:
            return meta_of(os.fstat(fd))
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        target = os.readlink(name, dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    return meta_of(st, target)


def walk(stack: DirStack, rel: str) -> Iterator[tuple[str, Meta]]:
    """Every entry below folder ``rel`` (depth first, names sorted), as (path, meta).

    Only one folder's listing is held at a time per level of depth. A
    folder that cannot be read raises ``OSError``.
    """
    pending = [rel]
    while pending:
        folder = pending.pop()
        entries = list_folder(stack.fd(folder)).entries
        below = []
        for name in sorted(entries):
            meta = entries[name]
            path = join(folder, name)
            yield path, meta
            if meta.kind is Kind.DIR:
                below.append(path)
        pending.extend(reversed(below))


def tree_size(stack: DirStack, rel: str) -> tuple[int, int]:
    """(entries, bytes of files) below folder ``rel``."""
    count = size = 0
    for _, meta in walk(stack, rel):
        count += 1
        if meta.kind is Kind.FILE:
            size += meta.size
    return count, size


def _remove(remove: Callable[..., None], dir_fd: int, name: str) -> None:
    """``os.unlink`` or ``os.rmdir`` of ``name`` in ``dir_fd``; missing is fine."""
    try:
        remove(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except PermissionError:
        # A read-only folder (a kept version of a read-only source folder):
        # ours to make writable, since we are removing it anyway.
        os.fchmod(dir_fd, stat.S_IMODE(os.fstat(dir_fd).st_mode) | stat.S_IRWXU)
        remove(name, dir_fd=dir_fd)


def _unlink(dir_fd: int, name: str) -> None:
    _remove(os.unlink, dir_fd, name)


def _rmdir(dir_fd: int, name: str) -> None:
    _remove(os.rmdir, dir_fd, name)


def remove_tree(parent_fd: int, name: str) -> None:
    """Remove entry ``name`` of ``parent_fd``: a file or link, or a folder and all it holds.

    Links are removed, never followed. Missing is not an error.
    """
    try:
        root = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError as error:
        if error.errno in (errno.ENOTDIR, errno.ELOOP):  # a file, a link or a special file
            _unlink(parent_fd, name)
            return
        if error.errno == errno.ENOENT:
            return
        raise
    stack = DirStack(root)
    try:
        pending = [""]
        while pending:
            rel = pending[-1]
            fd = stack.fd(rel)
            folder = None
            for entry in sorted(os.listdir(fd)):
                try:
                    st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    folder = entry
                    break
                _unlink(fd, entry)
            if folder is not None:
                pending.append(join(rel, folder))
                continue
            pending.pop()
            if rel:
                parent, _, last = rel.rpartition("/")
                _rmdir(stack.fd(parent), last)
    finally:
        stack.close()
        os.close(root)
    _rmdir(parent_fd, name)
