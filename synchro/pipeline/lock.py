"""File locks: one run at a time per replica, one writer at a time of a log.

:class:`Flock` is our own exclusive ``flock(2)`` on a lock file, used for the
replica's run lock (:class:`ReplicaLock`), the daily log (``LOGS/.lock``) and
the status file (``LOGS/.status.lock``). It replaced the ``filelock``
package, whose import cost every start 35 to 65 ms (some 45 modules: its
Windows code, ``logging``, ``decimal``, ``secrets``, ``platform``,
``threading``...), up to a quarter of what rsync needs for a whole no-op
backup of 20,000 files. synchro already requires POSIX (every folder is
opened with ``O_NOFOLLOW`` and used through ``dir_fd``), so a plain
``flock`` is all it ever used of it. The kernel releases a ``flock`` when
its holder dies, even by ``kill -9``.

The replica's run lock (:class:`ReplicaLock`) is an ``flock`` on the
replica folder's own descriptor: nothing is created inside the replica
(which must stay an exact mirror), beside it (its parent may be a read-only
mount point) or anywhere else.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable
from contextlib import suppress

from ..endpoints.local.scan import describe
from ..errors import ConfigError, ReplicaLocked

POLL_SECONDS = 0.05  # between two tries while a timeout > 0 runs

# An existing lock file is opened read-only (``flock`` needs no more) and
# without O_CREAT: the kernel's fs.protected_regular refuses O_CREAT on
# another user's file in a sticky world-writable folder such as the shared
# lock folder, even when the file itself could be opened. O_NOFOLLOW: a
# symlink planted at the lock's name is an error, never a lock on its
# target; O_NONBLOCK: a FIFO planted there cannot block the open (it is then
# refused as not a regular file). Never O_TRUNC: the file's content is nobody's.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_CREATE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_CREAT | os.O_EXCL
_LOCK_FILE_MODE = 0o666  # every user's runs share the lock (whatever the umask)


class LockTimeout(TimeoutError):
    """The lock at :attr:`lock_file` is held by someone else and the timeout ran out.

    A :class:`TimeoutError`, hence an :class:`OSError`: catch it first.
    """

    def __init__(self, lock_file: str) -> None:
        super().__init__(f"the lock {lock_file} is held by another process")
        self.lock_file = lock_file


class Flock:
    """An exclusive ``flock`` on the file at ``path``, created if missing.

    ``timeout`` is how long :meth:`acquire` waits for another holder, in
    seconds: ``None`` waits as long as needed (a signal such as Ctrl+C still
    interrupts the wait), ``0`` tries once; past it :class:`LockTimeout` is
    raised. ``sleep`` and ``monotonic`` can be injected (tests).

    The lock is not re-entrant: acquiring it again while held raises
    :class:`RuntimeError` (each user of this module takes it once, in a
    ``with`` block that calls nothing that takes it again). Nor is one
    object meant for several threads: each thread needs its own object (two
    objects of one process exclude each other like two processes do).

    Releasing closes the file, which drops the ``flock``; the file stays,
    since deleting it would race with a waiter that opened it already (the
    waiter would lock a file no longer named there, beside a newcomer that
    locks a new one).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        timeout: float | None = None,
        *,
        sleep: Callable[[float], object] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._sleep = sleep
        self._monotonic = monotonic
        self._fd: int | None = None

    @property
    def is_locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock. Raises :class:`LockTimeout`, or :class:`OSError` if the lock
        file cannot be opened or is not a regular file."""
        if self._fd is not None:
            raise RuntimeError(f"the lock {self.path} is already held by this object (not re-entrant)")
        deadline = None if self.timeout is None else self._monotonic() + self.timeout
        while True:
            fd = _open_lock_file(self.path)
            try:
                self._wait_for(fd, deadline)
                if _still_named(fd, self.path):
                    self._fd = fd  # one step: from here on release() closes it
                    return
                # The file was deleted or replaced while this process waited
                # for it: a lock on it would exclude nobody. Open anew.
            finally:
                if self._fd != fd:  # also when Ctrl+C or a timeout escapes
                    os.close(fd)

    def _wait_for(self, fd: int, deadline: float | None) -> None:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if deadline is None:
                # Python retries the call when a signal interrupts it and
                # runs the handler first, so Ctrl+C and SIGTERM still stop it.
                fcntl.flock(fd, fcntl.LOCK_EX)
                return
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise LockTimeout(self.path)
            self._sleep(min(POLL_SECONDS, remaining))

    def release(self) -> None:
        """Drop the lock (closing the file); harmless when it is not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Flock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open_lock_file(path: str) -> int:
    """A descriptor of the regular file at ``path``, created (mode 0o666) if missing."""
    while True:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            try:
                fd = os.open(path, _CREATE_FLAGS, _LOCK_FILE_MODE)
            except FileExistsError:
                continue  # another process created it in between: open that one
            created = True
        else:
            created = False
        try:
            if created:
                with suppress(PermissionError):  # the umask must not keep other users out
                    os.fchmod(fd, _LOCK_FILE_MODE)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", path)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _still_named(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


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
        try:
            fd = os.open(self.replica, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
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
