"""Open folders of a tree by descriptor, one component at a time.

Every folder below a root is opened relative to its parent's descriptor with
``O_NOFOLLOW``: if any component has been replaced by a symlink (even between
the scan and the write), the open fails with ``ELOOP``/``ENOTDIR`` instead of
leading outside the tree. Working relative to descriptors also lifts the
``PATH_MAX`` limit, so trees hundreds of levels deep work.

Descriptors along the current path are cached, since the plan visits folders
depth first; only the deepest few are kept open so that a very deep tree
cannot exhaust the descriptor limit.
"""

from __future__ import annotations

import os

from .flags import O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW

DIR_FLAGS = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
KEEP_OPEN = 64


def open_root(path: str) -> int:
    """Open a root folder (already resolved by the caller, so links are followed once)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_subdir(parent_fd: int, name: str) -> int:
    return os.open(name, DIR_FLAGS, dir_fd=parent_fd)


class DirStack:
    """Descriptors of the folders on the path from a root to the current folder."""

    def __init__(self, root_fd: int) -> None:
        self._root = root_fd
        self._parts: list[str] = []
        self._fds: list[int | None] = []  # parallel to _parts; None = closed to save descriptors
        self._open = 0
        # The last folder asked for and its descriptor: a plan asks for the
        # same folder once or twice per entry, so this saves a split and a
        # walk along the path per file. Cleared whenever a descriptor closes.
        self._last: tuple[str, int] | None = None

    @property
    def root(self) -> int:
        """The root folder's descriptor (owned by the caller)."""
        return self._root

    def fd(self, rel: str) -> int:
        """Descriptor of the folder ``rel`` ("" is the root). Raises OSError."""
        last = self._last
        if last is not None and last[0] == rel:
            return last[1]
        fd = self._lookup(rel)
        self._last = (rel, fd)
        return fd

    def _lookup(self, rel: str) -> int:
        parts = rel.split("/") if rel else []
        common = 0
        limit = min(len(parts), len(self._parts))
        while common < limit and parts[common] == self._parts[common]:
            common += 1
        self._truncate(common)
        for name in parts[common:]:
            parent = self._fd_at(len(self._parts))
            child = open_subdir(parent, name)
            self._parts.append(name)
            self._fds.append(child)
            self._open += 1
            self._shed()
        return self._fd_at(len(self._parts))

    def _fd_at(self, depth: int) -> int:
        """Descriptor at ``depth`` (0 = root), reopening closed ancestors."""
        if depth == 0:
            return self._root
        fd = self._fds[depth - 1]
        if fd is not None:
            return fd
        base = depth - 1
        while base > 0 and self._fds[base - 1] is None:
            base -= 1
        current = self._fd_at(base)
        for index in range(base, depth):
            current = open_subdir(current, self._parts[index])
            self._fds[index] = current
            self._open += 1
        return current

    def _shed(self) -> None:
        if self._open <= KEEP_OPEN:
            return
        self._last = None
        for index, fd in enumerate(self._fds):
            if fd is not None:
                os.close(fd)
                self._fds[index] = None
                self._open -= 1
                if self._open <= KEEP_OPEN // 2:
                    return

    def _truncate(self, depth: int) -> None:
        if len(self._parts) > depth:
            self._last = None
        while len(self._parts) > depth:
            self._parts.pop()
            fd = self._fds.pop()
            if fd is not None:
                os.close(fd)
                self._open -= 1

    def close(self) -> None:
        self._truncate(0)
