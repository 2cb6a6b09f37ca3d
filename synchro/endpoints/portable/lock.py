"""The replica's run lock where a folder cannot be locked itself (Windows).

Linux and macOS lock the replica folder's own descriptor
(:class:`synchro.pipeline.lock.ReplicaLock`). Windows cannot open a folder
as a file descriptor, so the lock is a byte-range lock (``msvcrt.locking``,
which Windows drops when its holder dies) on a hidden file in the replica's
root, :data:`~synchro.endpoints.base.LOCK_NAME`, which the planner never
copies nor deletes. The file is removed when the run ends; a run that
holds it open at that moment keeps it (Windows refuses to delete a file
open elsewhere), and locks it next. Making and removing it would change
the replica root's modification time, which is the source root's (the
mirror set it, ``--verify`` compares it): it is put back each time.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, suppress

from ...errors import ConfigError, ReplicaLocked
from ..base import LOCK_NAME, describe
from .attributes import HIDDEN_BIT, WINDOWS, set_mode

_OPEN = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)


class FileRunLock:
    """A context manager: raises :class:`ReplicaLocked` if another run holds it,
    :class:`ConfigError` if it cannot be taken at all."""

    def __init__(self, replica: str, path: str) -> None:
        self.replica = replica
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> FileRunLock:
        import msvcrt  # Windows only

        root = self._root_times()
        try:
            fd = os.open(self.path, _OPEN, 0o666)
        except PermissionError as error:
            if getattr(error, "winerror", None) == 32:  # being deleted by the run that ends
                raise ReplicaLocked(self.replica) from None
            raise self._cannot(error) from None
        except OSError as error:
            raise self._cannot(error) from None
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        except OSError:
            os.close(fd)
            raise ReplicaLocked(self.replica) from None
        self._fd = fd
        with suppress(OSError):  # hidden in Explorer; the lock works without it
            set_mode(self.path, 0o666 | HIDDEN_BIT)
        self._put_back(root)
        return self

    def _root_times(self) -> tuple[int, int] | None:
        """The replica root's (access, modification) times, to put back; None if unknown."""
        try:
            st = os.stat(os.path.dirname(self.path))
        except OSError:
            return None
        return st.st_atime_ns, st.st_mtime_ns

    def _put_back(self, times: tuple[int, int] | None) -> None:
        if times is not None:
            with suppress(OSError):  # a root whose time is off is seen and set by the next run
                os.utime(os.path.dirname(self.path), ns=times)

    def _cannot(self, error: OSError) -> ConfigError:
        from ...pipeline.log import escape

        return ConfigError(f"cannot lock replica {escape(self.replica)}: {describe(error)}")

    def __exit__(self, *exc: object) -> None:
        import msvcrt

        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        finally:
            os.close(fd)
        root = self._root_times()
        with suppress(OSError):
            os.unlink(self.path)
            self._put_back(root)


def run_lock(replica: str, root_path: str) -> AbstractContextManager[object]:
    """The run lock of the replica folder ``replica``, whose long path is ``root_path``."""
    if WINDOWS:
        return FileRunLock(replica, os.path.join(root_path, LOCK_NAME))
    from ...pipeline.lock import ReplicaLock

    return ReplicaLock(replica)
