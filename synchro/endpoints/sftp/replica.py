"""A replica on an SSH server: the :class:`~synchro.endpoints.base.Replica` over SFTP.

A remote replica is bound by round trips, so this endpoint keeps many
requests in flight on the one connection (:class:`~.session.Session`):

- each folder's entries come from its ``READDIR`` answers, which carry every
  entry's size, times, permission bits and owner (no stat per entry); when a
  folder is listed, the listings of its sub-folders are asked for at once,
  so the walk finds most of them waiting;
- the pipeline keeps :attr:`SftpReplica.concurrency` copies in flight (each
  a :class:`~synchro.endpoints.base.CopyJob` on its own thread, all waiting
  on the same connection), and a file's writes go out several at a time;
- a small file's data, attributes and close go out in one burst, answered
  together (the server handles one channel's requests in order).

Nothing torn: a file is written to a temporary name in its folder
(:data:`~synchro.endpoints.base.TEMP_PREFIX`), given its attributes, and
renamed over its name with ``posix-rename@openssh.com`` (a plain SFTP
rename never replaces). It is not synced (``fsync@openssh.com``) before the
rename, as a local replica's file is not (docs/guarantees.md,
"Durability"): a run cut short leaves no torn file either way, and a
request more per file would cost a sixth of a first copy.
SFTP version 3 keeps whole seconds: the capability record says so, and the
planner compares times to the second.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ..base import (
    TEMP_PREFIX,
    Concurrency,
    Finished,
    Kind,
    Listing,
    Meta,
    OnChunk,
    Source,
    SourceChanged,
    describe,
)
from ..capabilities import Capabilities
from .connect import DEFAULT_TIMEOUT, SftpLocation, asyncssh, parse_sftp_url
from .lock import LOCK_NAME, LockTiming, RemoteLock
from .session import ConnectionLost, Session

if TYPE_CHECKING:
    from ...options import MirrorOptions
    from .versions import RemoteKeeper

FXF_NEW = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
WINDOW = 16  # writes of one file in flight at once
CHUNK = 1 << 20  # bytes read from the source at a time (and between two on_chunk calls)
LISTINGS = 64  # folder listings in flight at once while the replica is crawled
SECOND = 10**9

# Many copies in flight, no forked helper: the run waits on the network,
# and one connection carries every request.
REMOTE = Concurrency(
    fork_helper=False,
    copies_in_flight=32,
    in_flight_min_size=0,
    actions_in_flight=True,
    jobs_start_themselves=True,
)

Say = Callable[[str], None]  # a line for the run's log


def _kind(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return Kind.FILE
    if stat.S_ISDIR(mode):
        return Kind.DIR
    if stat.S_ISLNK(mode):
        return Kind.LINK
    return Kind.SPECIAL


def _meta(attrs: asyncssh.SFTPAttrs, target: str | None = None) -> Meta:
    mode = attrs.permissions or 0
    return Meta(
        _kind(mode),
        attrs.size or 0,
        (attrs.mtime or 0) * SECOND,
        stat.S_IMODE(mode),
        attrs.uid or 0,
        attrs.gid or 0,
        target,
    )


class SftpReplica:
    """The replica at ``url`` (``sftp://[user@]host[:port]/path``), reached when it is locked.

    ``create``: a missing folder is made on the server (its parent must
    exist); ``dry_run``: nothing is written on the server, the lock included;
    ``say`` writes a line to the run's log (a lock taken over from a dead run).
    """

    concurrency = REMOTE

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        create: bool = False,
        dry_run: bool = False,
        say: Say | None = None,
        lock_timing: LockTiming | None = None,
    ) -> None:
        self.url = url
        self.location: SftpLocation = parse_sftp_url(url)
        self.timeout = timeout
        self.create = create
        self.dry_run = dry_run
        self.say: Say = say or (lambda line: None)
        self.lock_timing = lock_timing or LockTiming()
        self.root = os.fsencode(self.location.path)
        self.session: Session | None = None
        self.exists = False  # whether the replica folder is there (known once connected)
        self.keep_owner = False
        self.keep_mode = True
        self.link_times = False
        # The replica's folders, listed ahead of the walk (see _Crawl).
        self._crawl = _Crawl(self)
        self._writing = False
        self.locked = False  # the lock is held: close() leaves the connection to its release
        self.new_owner = (-1, -1)  # the owner of a file this login creates (measured)
        self._closing: set[asyncio.Future[None]] = set()  # folder handles being closed, not waited for

    # --- paths and the connection

    def path(self, folder: str, name: str = "") -> bytes:
        rel = f"{folder}/{name}" if folder and name else folder or name
        return self.root + b"/" + os.fsencode(rel) if rel else self.root

    def connected(self) -> Session:
        if self.session is None:
            self.session = Session(self.location, timeout=self.timeout)
        return self.session

    def _run(self, coro: Coroutine[Any, Any, Any], context: str = "") -> Any:
        return self.connected().run(coro, context)

    def reach(self) -> None:
        """Connect and check the replica folder (ConfigError, exit 2: missing, not a folder).

        A missing folder is created with ``create`` (not in a dry run: it is
        then planned as empty), but never its parent: a parent that is not
        there is a wrong path or a share that is not mounted.
        """
        session = self.connected()
        sftp = session.sftp
        shown = str(self.location)
        try:
            attrs = session.run(sftp.lstat(self.root), shown)
        except FileNotFoundError:
            attrs = None
        except OSError as error:
            raise ConfigError(f"cannot reach replica {shown}: {describe(error)}") from None
        if attrs is not None:
            if not stat.S_ISDIR(attrs.permissions or 0):
                raise ConfigError(f"replica is not a folder: {shown}")
            self.exists = True
            return
        if not self.create:
            raise ConfigError(
                f"replica folder does not exist: {shown} "
                "(is the path right? create_replica / --create-replica creates it on the server)"
            )
        parent = os.path.dirname(self.root)
        try:
            parent_attrs = session.run(sftp.stat(parent), shown)
        except FileNotFoundError:
            parent_attrs = None
        except OSError as error:
            raise ConfigError(f"cannot reach replica {shown}: {describe(error)}") from None
        if parent_attrs is None or not stat.S_ISDIR(parent_attrs.permissions or 0):
            raise ConfigError(
                f"cannot create replica {shown}: its parent folder {os.fsdecode(parent)} "
                "is not a folder on the server"
            )
        if self.dry_run:
            return
        try:
            session.run(sftp.mkdir(self.root), shown)
        except OSError as error:
            raise ConfigError(f"cannot create replica {shown}: {describe(error)}") from None
        self.say(f"CREATED replica folder {shown}")
        self.exists = True

    # --- the Replica protocol

    def lock(self) -> AbstractContextManager[object]:
        return RemoteLock(self, self.lock_timing)

    def open(self) -> None:
        if self.session is None:
            self.reach()

    def measure(self, *, as_root: bool) -> Capabilities:
        """What the server keeps: measured with a probe file (not in a dry run, which writes nothing)."""
        session = self.connected()
        if not session.offers("posix_rename"):
            raise OSError(
                errno.EOPNOTSUPP,
                "the server does not offer posix-rename@openssh.com, without which a file "
                "cannot be replaced atomically",
                str(self.location),
            )
        self.link_times = session.offers("lsetstat")
        owners = as_root
        if as_root and not self.dry_run:
            owners = self._run(self._owners_stick(), str(self.location))
        self.keep_owner = owners
        self.keep_mode = True
        return Capabilities(
            "sftp",
            owners=owners,
            link_times=self.link_times,
            special_files=False,
            time_precision_ns=SECOND,
        )

    @asynccontextmanager
    async def root_times_kept(self) -> AsyncIterator[None]:
        """Put the replica folder's times back after making and removing an entry of our own in it.

        The lock and the probe file live in the replica folder for a moment:
        without this, its modification time would differ from the source's
        after every run (and be set again by the next one).
        """
        sftp = self.connected().sftp
        before = await sftp.lstat(self.root)
        try:
            yield
        finally:
            after = await sftp.lstat(self.root)
            if after.mtime != before.mtime:
                await sftp.setstat(self.root, asyncssh.SFTPAttrs(atime=before.atime, mtime=before.mtime))

    async def _owners_stick(self) -> bool:
        """Whether this login may give files away (root on the server), tried on a probe file."""
        async with self.root_times_kept():
            return await self._try_owner()

    async def _try_owner(self) -> bool:
        sftp = self.connected().sftp
        probe = self.path(_temp_name())
        handle = await sftp._handler.open(probe, FXF_NEW, asyncssh.SFTPAttrs(permissions=0o600))
        try:
            await sftp._handler.close(handle)
            made = await sftp.lstat(probe)
            # What this login's new files get: an owner change to the same is skipped.
            self.new_owner = (made.uid or 0, made.gid or 0)
            try:
                await sftp.setstat(probe, asyncssh.SFTPAttrs(uid=65534, gid=65534))
            except asyncssh.SFTPError:
                return False
            attrs = await sftp.lstat(probe)
            return (attrs.uid, attrs.gid) == (65534, 65534)
        finally:
            await sftp.remove(probe)

    def list(self, folder: str) -> Listing:
        if not self.exists:
            return Listing({}, {})  # a dry run into a folder --create-replica would make
        if self._writing:
            # Changes have begun: a listing taken before them may be stale.
            fresh: Listing = self._run(self._list(folder), self._shown(folder))
            return fresh
        found = self._crawl.take(folder)
        if isinstance(found, BaseException):
            raise self.connected().translate(found, self._shown(folder))
        return found

    async def _names(self, full: bytes) -> Sequence[asyncssh.SFTPName]:
        """The entries of folder ``full``, ``.`` and ``..`` included, in two round trips for most folders.

        ``READDIR`` go out two at a time: a folder that fits in one answer
        (OpenSSH sends up to 100 entries) is read in one round trip, the
        second saying it is the end. The handle's close is not waited for: the server carries out
        one channel's requests in order, and nothing waits on it.
        """
        requests = self.connected().requests
        handle = await requests.opendir(full)
        names: list[asyncssh.SFTPName] = []
        pending: list[asyncio.Future[tuple[Sequence[asyncssh.SFTPName], bool]]] = []
        try:
            while True:
                if not pending:
                    pending = [asyncio.ensure_future(requests.readdir(handle)) for _ in range(2)]
                try:
                    batch, at_end = await pending.pop(0)
                except asyncssh.SFTPEOFError:
                    break
                names.extend(batch)
                if at_end:
                    break
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)  # retrieved: no warning
            closing = asyncio.ensure_future(requests.close(handle))
            self._closing.add(closing)
            closing.add_done_callback(_forget(self._closing))
        return names

    async def _list(self, folder: str) -> Listing:
        sftp = self.connected().sftp
        names = await self._names(self.path(folder))
        entries: dict[str, Meta] = {}
        links: list[tuple[str, asyncssh.SFTPAttrs]] = []
        for entry in names:
            raw = entry.filename
            assert isinstance(raw, bytes)
            if raw in (b".", b".."):
                continue
            name = os.fsdecode(raw)
            if not folder and name == LOCK_NAME:
                continue  # the run lock is this endpoint's, never the mirror's
            attrs = entry.attrs
            if stat.S_ISLNK(attrs.permissions or 0):
                links.append((name, attrs))
            else:
                entries[name] = _meta(attrs)
        errors: dict[str, str] = {}
        if links:
            targets = await asyncio.gather(
                *(sftp.readlink(self.path(folder, name)) for name, _ in links), return_exceptions=True
            )
            for (name, attrs), target in zip(links, targets, strict=True):
                if isinstance(target, FileNotFoundError | asyncssh.SFTPNoSuchFile):
                    continue  # gone while listed
                if isinstance(target, BaseException):
                    errors[name] = f"cannot read the link: {target}"
                    continue
                entries[name] = _meta(attrs, os.fsdecode(target))
        return Listing(entries, errors)

    def _stop_looking_ahead(self) -> None:
        """From the first change on, listings are taken fresh: one made earlier may be stale."""
        if self._writing:
            return
        self._writing = True
        if self.session is not None and not self.session.lost:
            self._run(self._crawl.stop())

    def lookup(self, path: str) -> Meta | None:
        if not self.exists:
            return None
        sftp = self.connected().sftp

        async def look() -> Meta | None:
            full = self.path(path)
            try:
                attrs = await sftp.lstat(full)
                target = await sftp.readlink(full) if stat.S_ISLNK(attrs.permissions or 0) else None
            except asyncssh.SFTPNoSuchFile:
                return None
            return _meta(attrs, None if target is None else os.fsdecode(target))

        found: Meta | None = self._run(look(), self._shown(path))
        return found

    def close(self) -> None:
        """Done with the tree; the connection stays while the lock is held (it is released over it)."""
        if self.session is not None and not self.session.lost:
            self._stop_looking_ahead()
        if not self.locked:
            self.disconnect()

    def disconnect(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.close()

    # --- the actions

    def identity(self, folder: str) -> None:
        return None  # on another machine: no folder of this one is it

    def copy_file(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None) -> int:
        self._stop_looking_ahead()
        job = SftpCopyJob(self, source.open_file(folder, name), folder, name)
        # A hook told after each chunk, in the caller's thread, once the chunk is on the server.
        return job.run(on_chunk, paced=True)

    def copy_job(
        self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None
    ) -> SftpCopyJob:
        self._stop_looking_ahead()
        fd = source.open_file(folder, name)
        # Told the bytes sent so far, as they go (the progress of a copy in flight).
        return SftpCopyJob(self, fd, folder, name, on_chunk)

    def copy_link(self, folder: str, name: str, meta: Meta) -> None:
        assert meta.target is not None
        self._stop_looking_ahead()
        sftp = self.connected().sftp
        temp = self.path(folder, _temp_name())
        target = os.fsencode(meta.target)

        async def make() -> None:
            await sftp.symlink(target, temp)
            try:
                if self.keep_owner:
                    await sftp.setstat(
                        temp, asyncssh.SFTPAttrs(uid=meta.uid, gid=meta.gid), follow_symlinks=False
                    )
                if self.link_times:
                    seconds = meta.mtime_ns // SECOND
                    await sftp.setstat(
                        temp, asyncssh.SFTPAttrs(atime=seconds, mtime=seconds), follow_symlinks=False
                    )
                await sftp.posix_rename(temp, self.path(folder, name))
            except BaseException:
                await _discard(sftp, temp)
                raise

        self._run(make(), self._shown(folder, name))

    def make_folder(self, folder: str, name: str) -> None:
        self._stop_looking_ahead()
        sftp = self.connected().sftp
        self._run(
            sftp.mkdir(self.path(folder, name), asyncssh.SFTPAttrs(permissions=0o700)),
            self._shown(folder, name),
        )

    def set_file_meta(self, folder: str, name: str, meta: Meta) -> None:
        self._stop_looking_ahead()
        self._run(self._set_meta(self.path(folder, name), meta, times=False), self._shown(folder, name))

    def set_folder_meta(self, path: str, meta: Meta) -> None:
        self._stop_looking_ahead()
        self._run(self._set_meta(self.path(path), meta, times=True), self._shown(path))

    async def _set_meta(self, full: bytes, meta: Meta, *, times: bool) -> None:
        requests = self.connected().requests
        attrs = asyncssh.SFTPAttrs()
        if self.keep_owner:
            if meta.mode & (stat.S_ISUID | stat.S_ISGID):
                # Apart, and first: the server changes the owner after the
                # mode, and an owner change clears set-user-ID bits.
                await requests.setstat(full, asyncssh.SFTPAttrs(uid=meta.uid, gid=meta.gid))
            else:
                attrs.uid, attrs.gid = meta.uid, meta.gid
        if self.keep_mode:
            attrs.permissions = meta.mode
        if times:
            attrs.atime = attrs.mtime = meta.mtime_ns // SECOND
        await requests.setstat(full, attrs)

    def remove(self, folder: str, name: str) -> None:
        self._stop_looking_ahead()
        requests = self.connected().requests
        with suppress(FileNotFoundError):  # already gone: the goal is reached
            self._run(requests.remove(self.path(folder, name)), self._shown(folder, name))

    def remove_folder(self, folder: str, name: str) -> None:
        self._stop_looking_ahead()
        sftp = self.connected().sftp
        with suppress(FileNotFoundError):
            self._run(sftp.rmdir(self.path(folder, name)), self._shown(folder, name))

    def rename(self, folder: str, old: str, new: str) -> None:
        self._stop_looking_ahead()
        sftp = self.connected().sftp
        self._run(sftp.posix_rename(self.path(folder, old), self.path(folder, new)), self._shown(folder, old))

    def same_content(self, source: Source, folder: str, name: str) -> bool:
        """Read the server's file back over SFTP and compare it with the source's, chunk by chunk.

        OpenSSH offers no checksum of a file (no ``check-file``), and a
        checksum computed on the server would read the same bytes anyway;
        reading them here costs the transfer, like rsync's ``--checksum``.
        """
        fd = source.open_file(folder, name)
        try:
            same: bool = self._run(self._compare(fd, self.path(folder, name)), self._shown(folder, name))
            return same
        finally:
            os.close(fd)

    async def _compare(self, fd: int, full: bytes) -> bool:
        sftp = self.connected().sftp
        size = os.fstat(fd).st_size
        async with sftp.open(full, "rb", block_size=CHUNK // 4, max_requests=WINDOW) as remote:
            if (await remote.stat()).size != size:
                return False
            offset = 0
            while True:
                left = os.pread(fd, CHUNK, offset)
                right: bytes = await remote.read(CHUNK, offset)
                if left != right:
                    return False
                if not left:
                    return True
                offset += len(left)

    def digest(self, folder: str, name: str) -> tuple[bytes, int]:
        """BLAKE2b of file ``folder/name`` read back over SFTP, and its size (``--verify``)."""
        sftp = self.connected().sftp

        async def read() -> tuple[bytes, int]:
            import hashlib  # only a verification pays for it

            digest = hashlib.blake2b(digest_size=32)
            size = 0
            async with sftp.open(
                self.path(folder, name), "rb", block_size=CHUNK // 4, max_requests=WINDOW
            ) as f:
                while True:
                    chunk: bytes = await f.read(CHUNK, size)
                    if not chunk:
                        return digest.digest(), size
                    digest.update(chunk)
                    size += len(chunk)

        found: tuple[bytes, int] = self._run(read(), self._shown(folder, name))
        return found

    def download(self, folder: str, name: str, target_dir: int, *, keep_owner: bool) -> int:
        """Copy file ``folder/name`` from the server into folder descriptor ``target_dir``
        (a temporary name, then a rename over ``name``), with its mode and time; return its size.

        What ``inv restore`` does with a replica on a server.
        """
        sftp = self.connected().sftp
        temp = _temp_name()

        async def fetch(fd: int) -> tuple[int, asyncssh.SFTPAttrs]:
            size = 0
            async with sftp.open(
                self.path(folder, name), "rb", block_size=CHUNK // 4, max_requests=WINDOW
            ) as f:
                attrs = await f.stat()
                if not stat.S_ISREG(attrs.permissions or 0):
                    raise OSError(errno.EINVAL, "is no longer a regular file")
                while True:
                    chunk: bytes = await f.read(CHUNK, size)
                    if not chunk:
                        return size, attrs
                    os.pwrite(fd, chunk, size)
                    size += len(chunk)

        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=target_dir,
        )
        try:
            try:
                fetched: tuple[int, asyncssh.SFTPAttrs] = self._run(fetch(fd), self._shown(folder, name))
                size, attrs = fetched
                if keep_owner:
                    os.fchown(fd, attrs.uid or 0, attrs.gid or 0)
                os.fchmod(fd, stat.S_IMODE(attrs.permissions or 0o600))
                seconds = (attrs.mtime or 0) * SECOND
                os.utime(fd, ns=((attrs.atime or 0) * SECOND, seconds))
            finally:
                os.close(fd)
            os.rename(temp, name, src_dir_fd=target_dir, dst_dir_fd=target_dir)
        except BaseException:
            with suppress(OSError):
                os.unlink(temp, dir_fd=target_dir)
            raise
        return size

    def version_keeper(
        self,
        versions: str,
        options: MirrorOptions,
        emit: Callable[[str], None],
        *,
        clock: Callable[[], datetime],
    ) -> RemoteKeeper | None:
        """The keeper of this run's old versions (moved into ``versions`` on this server); none in a dry run."""
        from .versions import RemoteKeeper

        if options.dry_run:
            return None
        return RemoteKeeper(self, versions, options.keep_versions, emit, clock=clock)

    def make_writable(self, folder: str) -> bool:
        """Add the owner's write permission to ``folder`` on the server; False if it has it or cannot."""
        sftp = self.connected().sftp

        async def widen() -> bool:
            full = self.path(folder)
            attrs = await sftp.lstat(full)
            mode = attrs.permissions or 0
            if mode & stat.S_IWUSR:
                return False
            await sftp.setstat(full, asyncssh.SFTPAttrs(permissions=stat.S_IMODE(mode) | stat.S_IWUSR))
            return True

        try:
            widened: bool = self._run(widen(), self._shown(folder))
        except OSError:
            return False
        return widened

    def _shown(self, folder: str, name: str = "") -> str:
        rel = f"{folder}/{name}" if folder and name else folder or name
        return f"{self.location}/{rel}" if rel else str(self.location)


def _forget(tasks: set[asyncio.Future[None]]) -> Callable[[asyncio.Future[None]], None]:
    """A done-callback that drops a request no one waits for, its outcome retrieved (a lost connection)."""

    def done(task: asyncio.Future[None]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()

    return done


def _temp_name() -> str:
    return f"{TEMP_PREFIX}{os.urandom(6).hex()}"


async def _discard(sftp: asyncssh.SFTPClient, path: bytes) -> None:
    """Remove a temporary of ours, best effort: a lost connection leaves it to the next run."""
    with suppress(asyncssh.Error, OSError):
        await sftp.remove(path)


class _Crawl:
    """The replica's folders listed ahead of the walk, all of them, as fast as the server answers.

    The walk asks for one folder at a time and plans it before the next; on
    a remote replica each listing is a round trip or more, and each hand-over
    between the walk's thread and the connection's loop a wake-up of each.
    So the loop lists the whole tree on its own (:data:`LISTINGS` folders in
    flight, each folder's sub-folders as soon as it is listed), and puts each
    listing where the walk takes it without waking the loop: the walk waits
    only for a listing that has not come yet. The first change stops it
    (:meth:`stop`): what is listed from then on is listed fresh.
    """

    def __init__(self, replica: SftpReplica) -> None:
        self.replica = replica
        self.ready: dict[str, Listing | BaseException] = {}
        self.asked: set[str] = set()  # folders being listed or listed, not taken yet
        self.cond = threading.Condition()
        self.tasks: set[asyncio.Task[None]] = set()
        self.slots: asyncio.Semaphore | None = None
        self.stopped = False

    def take(self, folder: str) -> Listing | BaseException:
        """The listing of ``folder`` (or why it failed): at once if it has come, else when it comes."""
        with self.cond:
            found = self.ready.pop(folder, None)
            if found is not None:
                return found
            if folder not in self.asked:
                self.asked.add(folder)
                session = self.replica.connected()
                session.loop.call_soon_threadsafe(self._start, folder)
            while (found := self.ready.pop(folder, None)) is None:
                current = self.replica.session
                if current is None:
                    return ConnectionLost(
                        errno.ECONNRESET, f"the connection to {self.replica.location} was lost"
                    )
                if current.lost:
                    return current.lost_error()
                self.cond.wait(1.0)
            return found

    def _start(self, folder: str) -> None:
        # On the loop.
        if self.stopped:
            with self.cond:
                self.ready[folder] = InterruptedError(errno.EINTR, "listing stopped")
                self.cond.notify_all()
            return
        task = asyncio.ensure_future(self._one(folder))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _one(self, folder: str) -> None:
        if self.slots is None:
            self.slots = asyncio.Semaphore(LISTINGS)
        result: Listing | BaseException
        async with self.slots:
            try:
                result = await self.replica._list(folder)
            except (asyncssh.Error, OSError) as error:
                result = error
        subs = []
        if isinstance(result, Listing) and not self.stopped:
            prefix = f"{folder}/" if folder else ""
            subs = [prefix + name for name, meta in result.entries.items() if meta.kind is Kind.DIR]
        with self.cond:
            self.ready[folder] = result
            subs = [sub for sub in subs if sub not in self.asked]
            self.asked.update(subs)
            self.cond.notify_all()
        for sub in subs:
            self._start(sub)

    async def stop(self) -> None:
        """Stop listing ahead, and drop what was listed and not taken."""
        self.stopped = True
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with self.cond:
            self.ready.clear()
            self.asked.clear()
            self.cond.notify_all()


class SftpCopyJob:
    """One upload: the source file is open (in the pipeline's thread); :meth:`run` sends it."""

    def __init__(
        self, replica: SftpReplica, fd: int, folder: str, name: str, on_chunk: OnChunk | None = None
    ) -> None:
        self.replica = replica
        self.fd = fd
        self.folder, self.name = folder, name
        self.on_chunk = on_chunk
        self.paced = False

    def run(self, on_chunk: OnChunk | None = None, *, paced: bool = False) -> int:
        """Upload; ``paced``: each chunk is on the server before ``on_chunk`` is told, in another thread."""
        on_chunk = on_chunk or self.on_chunk
        try:
            before = os.fstat(self.fd)
            if not stat.S_ISREG(before.st_mode):
                raise SourceChanged("is no longer a regular file")
            session = self.replica.connected()
            loop = session.loop
            hook: Callable[[int], Coroutine[Any, Any, None]] | None = None
            if on_chunk is not None:
                told = on_chunk

                async def tell(copied: int) -> None:
                    if paced:
                        # In another thread: the hook may wait, or stop the server.
                        await loop.run_in_executor(None, told, copied)
                    else:
                        told(copied)

                hook = tell
            self.paced = paced
            copied: int = session.run(self._upload(before, hook), self.replica._shown(self.folder, self.name))
            return copied
        finally:
            self.discard()

    def start(self, finished: Finished) -> None:
        """Upload on the connection's loop, with no thread waiting for it; ``finished`` is told there.

        ``on_chunk`` (the bar's) is told in the loop too: it only notes a count.
        """
        session = self.replica.connected()
        context = self.replica._shown(self.folder, self.name)
        on_chunk = self.on_chunk

        async def upload() -> None:
            try:
                before = os.fstat(self.fd)
                if not stat.S_ISREG(before.st_mode):
                    raise SourceChanged("is no longer a regular file")
                hook = None
                if on_chunk is not None:
                    told = on_chunk

                    async def tell(copied: int) -> None:
                        told(copied)

                    hook = tell
                copied = await self._upload(before, hook)
            except (asyncssh.Error, OSError, EOFError, SourceChanged) as error:
                self.discard()
                finished(0, session.translate(error, context))
            except BaseException as error:  # a bug, or the loop stopping: handed over, not lost
                self.discard()
                finished(0, error)
                raise
            else:
                self.discard()
                finished(copied, None)

        session.start_soon(upload)

    def discard(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    async def _upload(
        self, before: os.stat_result, on_chunk: Callable[[int], Coroutine[Any, Any, None]] | None
    ) -> int:
        replica = self.replica
        sftp = replica.connected().sftp
        handler = replica.connected().requests  # handle-level requests: a burst is sent without waiting
        temp = replica.path(self.folder, _temp_name())
        block = min(sftp.limits.max_write_len or CHUNK, 256 * 1024)
        handle = await handler.open(temp, FXF_NEW, asyncssh.SFTPAttrs(permissions=0o600))
        closed = False
        writes: set[asyncio.Task[Any]] = set()
        try:
            copied = 0
            while True:
                data = os.pread(self.fd, CHUNK, copied)
                if not data:
                    break
                for start in range(0, len(data), block):
                    writes.add(
                        asyncio.ensure_future(
                            handler.write(handle, copied + start, data[start : start + block])
                        )
                    )
                    if len(writes) >= WINDOW:
                        done, writes = await asyncio.wait(writes, return_when=asyncio.FIRST_COMPLETED)
                        for task in done:
                            task.result()
                copied += len(data)
                if on_chunk is not None:
                    if self.paced:
                        await asyncio.gather(*writes)
                        writes.clear()
                    await on_chunk(copied)
            after = os.fstat(self.fd)
            if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
                before.st_size,
                before.st_mtime_ns,
                before.st_ctime_ns,
            ) or (after.st_nlink == 0 < before.st_nlink):
                raise SourceChanged("changed while it was copied")
            # The last writes, the attributes and the close in one
            # burst: the server carries them out in order, and a failed one
            # fails the burst before anything is renamed.
            burst = list(writes)
            if replica.keep_owner and (before.st_uid, before.st_gid) != replica.new_owner:
                burst.append(
                    asyncio.ensure_future(
                        handler.fsetstat(handle, asyncssh.SFTPAttrs(uid=before.st_uid, gid=before.st_gid))
                    )
                )
            attrs = asyncssh.SFTPAttrs(atime=before.st_atime_ns // SECOND, mtime=before.st_mtime_ns // SECOND)
            if replica.keep_mode:
                attrs.permissions = stat.S_IMODE(before.st_mode)
            burst.append(asyncio.ensure_future(handler.fsetstat(handle, attrs)))
            closing = asyncio.ensure_future(handler.close(handle))
            closed = True
            results = await asyncio.gather(*burst, closing, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            await handler.posix_rename(temp, replica.path(self.folder, self.name))
            return copied
        except BaseException:
            for task in writes:
                task.cancel()
            await asyncio.gather(*writes, return_exceptions=True)  # retrieved: no warning
            if not closed:
                with suppress(asyncssh.Error, OSError):
                    await handler.close(handle)
            await _discard(sftp, temp)
            raise
