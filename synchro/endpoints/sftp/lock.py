"""The run lock of a remote replica: a file on the server, in the replica folder.

Two machines (or a ``Host`` alias and the URL it stands for, from one
machine) name one replica differently; a lock on this machine would not see
the other. So the lock lives where the replica does: a file
:data:`LOCK_NAME` in the replica folder, created with ``O_EXCL`` (one
creator wins), holding who holds it (host, process, since when). The
endpoint hides it from every listing, so the planner never copies or
deletes it.

A run that dies (a machine that loses power, ``kill -9``) cannot remove its
lock. So the holder rewrites the file every :attr:`LockTiming.refresh`
seconds while the run lasts, and a lock whose file the server has not seen
written for :attr:`LockTiming.stale` seconds is a dead run's: the next run
takes it over and says so in the log. Both times are the server's own (the
age is the lock's modification time against a file written just now), so
the two machines' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
from contextlib import suppress
from typing import TYPE_CHECKING, NamedTuple

from ...errors import ConfigError, ReplicaLocked
from ..base import describe
from .connect import asyncssh

if TYPE_CHECKING:
    from .replica import SftpReplica

LOCK_NAME = ".synchro-lock"
FXF_NEW = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL


class LockTiming(NamedTuple):
    refresh: float = 30.0  # seconds between two writes of the lock by its holder
    stale: float = 300.0  # a lock not written for this long is a dead run's


class RemoteLock:
    """The lock of one remote replica, held in a ``with`` block (raises ReplicaLocked)."""

    def __init__(self, replica: SftpReplica, timing: LockTiming) -> None:
        self.replica = replica
        self.timing = timing
        self._refresher: asyncio.Task[None] | None = None
        self._held = False
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        self._line = f"host={socket.gethostname()} pid={os.getpid()} since={started}\n".encode()

    def _path(self, name: str = LOCK_NAME) -> bytes:
        return self.replica.path(name)

    def __enter__(self) -> RemoteLock:
        replica = self.replica
        replica.locked = True  # the connection lives until __exit__
        try:
            replica.reach()  # ConfigError: unreachable, missing
            if replica.dry_run or not replica.exists:
                # A dry run writes nothing on the server, its lock included.
                return self
            session = replica.connected()
            try:
                session.run(self._acquire_keeping_times(), str(replica.location))
            except OSError as error:
                raise ConfigError(f"cannot lock replica {replica.location}: {describe(error)}") from None
            self._held = True
            self._refresher = session.run(self._start_refreshing())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        replica = self.replica
        try:
            session = replica.session
            if self._held and session is not None and not session.lost:
                # A connection lost now: the next run takes the stale lock over.
                with suppress(OSError):
                    session.run(self._release())
            elif self._held:
                self._release_anew()
        finally:
            self._held = False
            replica.locked = False
            replica.disconnect()

    async def _acquire_keeping_times(self) -> None:
        async with self.replica.root_times_kept():
            await self._acquire()

    async def _acquire(self) -> None:
        sftp = self.replica.connected().sftp
        for _ in range(2):
            try:
                await self._create(self._path())
                return
            except asyncssh.SFTPError as error:
                # OpenSSH says "Failure" for a file that exists (EEXIST): look.
                holder = await self._holder()
                if holder is None:
                    if error.code in (asyncssh.FX_FAILURE, asyncssh.FX_FILE_ALREADY_EXISTS):
                        continue  # released meanwhile: try again
                    raise
                text, age = holder
                if age < self.timing.stale and not _dead_here(text):
                    raise ReplicaLocked(f"{self.replica.location} ({text})") from None
                # A dead run's: move it aside first, so that of two runs
                # taking it over at once only one succeeds (the other's
                # rename finds nothing).
                aside = self._path(f"{LOCK_NAME}.{os.urandom(6).hex()}")
                try:
                    await sftp.rename(self._path(), aside)
                except asyncssh.SFTPError:
                    continue
                await sftp.remove(aside)
                self.replica.say(
                    f"WARNING took over the lock of a run that stopped without releasing it "
                    f"({text}, written {age:.0f} s ago)"
                )
        raise ReplicaLocked(f"{self.replica.location} (its lock changed hands while it was taken)")

    async def _create(self, path: bytes) -> int:
        """Create ``path`` (never an existing one) with this run's line; return its mtime (server's clock)."""
        sftp = self.replica.connected().sftp
        handler = sftp._handler
        handle = await handler.open(path, FXF_NEW, asyncssh.SFTPAttrs(permissions=0o644))
        try:
            await handler.write(handle, 0, self._line)
            attrs = await handler.fstat(handle, 0)
        finally:
            await handler.close(handle)
        return int(attrs.mtime or 0)

    async def _holder(self) -> tuple[str, float] | None:
        """Who holds the lock and how long ago it was written (server's clock); None if no lock."""
        sftp = self.replica.connected().sftp
        try:
            attrs = await sftp.lstat(self._path())
            async with sftp.open(self._path(), "rb") as lock:
                data: bytes = await lock.read(4096)
            text = data.decode(errors="replace").strip()
        except asyncssh.SFTPNoSuchFile:
            return None
        if not stat.S_ISREG(attrs.permissions or 0):
            text = "not a file"
        # "Now" on the server's clock: the time it gives a file written now.
        probe = self._path(f"{LOCK_NAME}.{os.urandom(6).hex()}")
        try:
            now = await self._create(probe)
        finally:
            await sftp.remove(probe)
        return text or "holder unknown", float(now - int(attrs.mtime or 0))

    async def _start_refreshing(self) -> asyncio.Task[None]:
        return asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        sftp = self.replica.connected().sftp
        while True:
            await asyncio.sleep(self.timing.refresh)
            try:
                async with sftp.open(self._path(), "r+b") as lock:
                    await lock.write(self._line, 0)
            except (asyncssh.Error, OSError):
                return  # the connection is gone: the run fails on its own requests

    def _release_anew(self) -> None:
        """The connection was lost: release the lock over a new one, if the server answers.

        A server that is down leaves the lock there; the next run takes it
        over once it is stale (or at once from this machine, its holder gone).
        """
        replica = self.replica
        replica.disconnect()
        try:
            session = replica.connected()
            session.run(self._release_if_ours())
        except (ConfigError, OSError):
            pass

    async def _release_if_ours(self) -> None:
        sftp = self.replica.connected().sftp
        try:
            async with sftp.open(self._path(), "rb") as lock:
                data: bytes = await lock.read(4096)
        except asyncssh.SFTPNoSuchFile:
            return
        if data == self._line:
            self._refresher = None
            await self._release()

    async def _release(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        async with self.replica.root_times_kept():
            with suppress(asyncssh.SFTPNoSuchFile):
                await self.replica.connected().sftp.remove(self._path())


def _dead_here(holder: str) -> bool:
    """Whether a lock's holder ran on this machine and its process is gone (its lock is a leftover)."""
    fields = dict(part.partition("=")[::2] for part in holder.split())
    if fields.get("host") != socket.gethostname() or not fields.get("pid", "").isdigit():
        return False
    pid = int(fields["pid"])
    if pid == os.getpid():
        return False  # this process holds it (another run of the API): alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # another user's process: alive
    return False
