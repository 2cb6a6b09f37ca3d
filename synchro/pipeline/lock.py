"""Locks: one run at a time per replica, one writer at a time of a log or status file.

The daily log (``LOGS/.lock``) and the status file (``LOGS/.status.lock``)
are written under :class:`FileLock`: the ``filelock`` package's ``flock``
on a file beside what it guards (released by the kernel when its holder
dies, even by ``kill -9``). filelock opens the file with ``O_NOFOLLOW``
(since 3.20.1), without truncating it (since 4.2.1) and read-write, which
never waits for the other end of a FIFO (4.3 adds ``O_NONBLOCK``). It
would still lock a FIFO planted there, and a symlink would be an error
about "too many levels of symbolic links": :class:`FileLock` looks at what
is there first (``lstat``), so that anything but a regular file is a clear
:class:`OSError` naming what it is.

The replica's run lock (:class:`ReplicaLock`) is an ``flock`` on the
replica folder's own descriptor: nothing is created inside the replica
(which must stay an exact mirror), beside it (its parent may be a read-only
mount point) or anywhere else.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

from ..endpoints.local.flags import O_CLOEXEC, O_DIRECTORY
from ..endpoints.local.scan import describe
from ..errors import ConfigError, ReplicaLocked

if TYPE_CHECKING:
    import filelock

_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a FIFO", stat.S_IFDIR: "a folder"}


def not_a_regular_file(path: str, code: int = errno.EINVAL, mode: int | None = None) -> OSError:
    """The error for ``path`` naming something else than a regular file: says what it is."""
    if mode is None:
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            mode = 0
    kind = _KINDS.get(stat.S_IFMT(mode))
    what = f"{kind}, not a regular file" if kind else "not a regular file"
    return OSError(code, f"{os.path.basename(path)} is {what}", path)


class FileLock:
    """An exclusive lock on the file at ``path`` (created if missing), from ``filelock``.

    ``timeout`` is as filelock's: ``-1`` waits as long as needed (Ctrl+C
    still interrupts the wait), past a timeout ``filelock.Timeout`` (a
    :class:`TimeoutError`) is raised. :meth:`acquire` raises
    :class:`OSError` if anything but a regular file is at ``path``.
    filelock is imported on first use: a run that writes no log never pays
    for it.
    """

    def __init__(self, path: str, timeout: float = -1) -> None:
        import filelock

        self.path = path
        self._lock: filelock.BaseFileLock = filelock.FileLock(path, timeout=timeout)

    @property
    def is_locked(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            pass  # filelock creates it (O_EXCL, O_NOFOLLOW)
        else:
            # Checked first for a clear message; what is swapped in later is
            # still opened by filelock without following or blocking.
            if not stat.S_ISREG(mode):
                raise not_a_regular_file(self.path, mode=mode)
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ReplicaLock:
    """One run at a time per replica: an exclusive ``flock`` on the replica folder itself.

    The lock is the folder's identity, not a name: every run finds it the
    same way whatever its environment (``$TMPDIR``, a private ``/tmp``, a
    container sharing the drive), a second path to the folder (a symlink, a
    bind mount) is the same lock, and no file is left anywhere. Linux and
    macOS lock a folder's descriptor as they lock a file's; on Linux network
    file systems (NFS, SMB) a folder has no locking of its own, so its lock
    is the kernel's, local to the machine, as a lock file in ``/tmp`` was. The kernel drops it when the last descriptor
    closes: at the end of the run, or at its death, even by ``kill -9``; the
    forked helper shares it while it lives.

    A context manager: raises :class:`ReplicaLocked` if another run holds
    it, :class:`ConfigError` if it cannot be taken at all (the folder cannot
    be opened).
    """

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self._fd: int | None = None

    def __enter__(self) -> ReplicaLock:
        import fcntl  # POSIX only: a Windows run locks a file instead (endpoints/portable/lock.py)

        try:
            fd = os.open(self.replica, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        except OSError as error:
            raise self._cannot(error) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ReplicaLocked(self.replica) from None
        except BaseException as error:
            os.close(fd)
            if isinstance(error, OSError):
                raise self._cannot(error) from None
            raise
        self._fd = fd
        return self

    def _cannot(self, error: OSError) -> ConfigError:
        from .log import escape  # not at the top: log.py imports this module

        return ConfigError(f"cannot lock replica {escape(self.replica)}: {describe(error)}")

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
