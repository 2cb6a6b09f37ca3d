"""Old versions of a replica on a server, kept on the same server.

The local keeper (:mod:`synchro.features.versions`) keeps a replica entry a
run overwrites or deletes in ``VERSIONS/YYYY-MM-DD_HHMMSS/<its path>``;
this one does the same where the replica is, without a byte crossing the
network: a deleted entry is moved there with one rename (the plain SFTP
rename, which never replaces: a kept version is never lost), an overwritten
file gets a hard link there (``hardlink@openssh.com``) before the mirror
renames the new file over its name, so that the replica never lacks the
name. Where the server offers no hard links the entry is moved (the name is
missing until the new file is renamed in). A deleted folder is kept whole:
its content entry by entry (the plan removes children first), then the
folder itself with its permissions and times. Retention is the same rule
(:func:`~synchro.features.versions.to_prune`), applied at the end of a
successful run.

A run also lists what it added (``<run>.added`` beside the run folders,
the local format and rules: :class:`~synchro.features.keeping.Additions`),
written to a temporary on the server at the end of the run and renamed into
place, so that ``restore --at`` can leave out what was added after the
moment (:mod:`synchro.endpoints.sftp.history` reads all of it back).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import IO, NamedTuple

from ...features.keeping import Additions, StoreNames, prune_store, warning
from ...features.versions import ADDED_CHUNK, ADDED_SUFFIX, NAME_TRIES, version_name, version_time
from ...options import KeepVersions
from ...pipeline.log import escape
from ...pipeline.plan import Action, Op
from ..base import LOCK_NAME, TEMP_PREFIX, Kind, Meta, describe
from .connect import asyncssh
from .replica import SECOND, SftpReplica
from .session import Session

Emit = Callable[[str], None]
Clock = Callable[[], datetime]


class RemoteKeepError(OSError):
    """The versions side failed: the replica entry stays in place."""


class RemoteKeeper:
    """Keeps the replica entries a run replaces or deletes in its run folder on the server."""

    def __init__(
        self,
        replica: SftpReplica,
        root: str,
        retention: KeepVersions,
        emit: Emit,
        *,
        clock: Clock = datetime.now,
    ) -> None:
        self.replica = replica
        self.root = root.rstrip("/")  # an absolute path on the replica's server
        self.retention = retention
        self._emit = emit
        self._clock = clock
        self.started = clock()
        self.name: str | None = None
        self.added_name: str | None = None  # the run name its list of additions got, once in place
        # Version folders made by this run, and the metadata to give them at close.
        self._folders: dict[str, Meta] = {}
        # Made before the run changes anything: whether the replica was empty then.
        self._additions = Additions(fresh=self._replica_empty(), history=self._history)

    def _replica_empty(self) -> bool:
        session = self.replica.connected()
        try:
            names = session.run(session.sftp.readdir(self.replica.root), str(self.replica.location))
        except OSError:
            return False  # unknown: list the additions, the safe side
        return all(os.fsdecode(entry.filename) in (".", "..", LOCK_NAME) for entry in names)

    def _history(self) -> bool:
        """Whether the versions folder holds a run folder or a list: a past to go back to."""
        found = root_names(self.replica.connected(), self.root)
        return bool(found.folders or found.lists)

    @property
    def folder(self) -> str | None:
        return None if self.name is None else f"{self.root}/{self.name}"

    def _run_path(self, rel: str = "") -> bytes:
        assert self.name is not None
        base = os.fsencode(f"{self.root}/{self.name}")
        return base + b"/" + os.fsencode(rel) if rel else base

    def _mkdir(self, path: bytes) -> bool:
        """Make folder ``path`` on the server; False if it was there."""
        sftp = self.replica.connected().sftp
        try:
            self.replica.connected().run(
                sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=0o700)), os.fsdecode(path)
            )
        except OSError as error:
            if self._exists(path):
                return False
            raise RemoteKeepError(error.errno, f"cannot keep the old version: {describe(error)}") from None
        return True

    def _exists(self, path: bytes) -> bool:
        session = self.replica.connected()
        try:
            session.run(session.sftp.lstat(path), os.fsdecode(path))
        except FileNotFoundError:
            return False
        return True

    def _version_dir(self, rel: str) -> None:
        """Make the run folder and the folders down to ``rel`` in it (as the replica's)."""
        if self.name is None:
            self._mkdir(os.fsencode(self.root))
            self.name = self._new_run()
            root_meta = self.replica.lookup("")
            if root_meta is not None:
                self._folders[""] = root_meta
        done = ""
        for part in rel.split("/") if rel else []:
            done = f"{done}/{part}" if done else part
            if done in self._folders:
                continue
            self._mkdir(self._run_path(done))
            meta = self.replica.lookup(done)
            if meta is not None:
                self._folders[done] = meta

    def _new_run(self) -> str:
        """Make this run's folder; a name taken (two runs in one second) moves it a second later."""
        for offset in range(NAME_TRIES):
            name = version_name(self.started + timedelta(seconds=offset))
            if self._exists(os.fsencode(f"{self.root}/{name}{ADDED_SUFFIX}")):
                continue  # an earlier run of that second that only added
            if self._mkdir(os.fsencode(f"{self.root}/{name}")):
                return name
        raise RemoteKeepError(
            errno.EEXIST, f"cannot keep the old version: no free folder name in {self.root}"
        )

    def keep(self, action: Action) -> None:
        """Keep the replica entry of ``action`` (see :meth:`synchro.features.versions.Keeper.keep`)."""
        replica = self.replica
        is_folder = action.op is Op.RMDIR
        meta = replica.lookup(action.path)
        if meta is None:
            return
        if (meta.kind is Kind.DIR) != is_folder:
            code = errno.ENOTDIR if is_folder else errno.EISDIR
            raise OSError(code, os.strerror(code), action.name)
        self._version_dir(action.dir)
        session = replica.connected()
        sftp = session.sftp
        there, kept = replica.path(action.path), self._run_path(action.path)
        if is_folder:
            self._mkdir(kept)
            self._folders[action.path] = action.rep if action.rep is not None else meta
            replica.remove_folder(action.dir, action.name)
        else:
            replaced = action.op in (Op.COPY, Op.LINK)
            try:
                if replaced and session.offers("hardlink"):
                    session.run(sftp.link(there, kept), action.path)
                else:
                    # The plain SFTP rename: it refuses to replace, so a kept version is never lost.
                    session.run(sftp.rename(there, kept), action.path)
            except FileNotFoundError:
                return  # gone meanwhile: nothing to keep
            except OSError as error:
                raise RemoteKeepError(
                    error.errno, f"cannot keep the old version: {describe(error)}"
                ) from None
        suffix = "/" if is_folder else ""
        self._emit(f"KEPT {escape(action.path)}{suffix} -> {escape(self.folder or '')}/")

    def added(self, action: Action) -> None:
        """Note that ``action`` made an entry where there was none (for ``restore --at``)."""
        self._additions.note(action)

    def close(self) -> None:
        """Give the folders this run made their metadata, deepest first, and put the list of
        additions in place (never raises)."""
        try:
            if self.replica.session is None or self.replica.session.lost:
                self._additions.give_up("the connection to the server was lost")
                return
            self._close_folders()
            self._publish_added()
        finally:
            self._additions.discard()
            if self._additions.problem:
                self._emit(warning(escape(self.root), escape(self._additions.problem)))

    def _publish_added(self) -> None:
        """Upload the list to a temporary beside the run folders, then rename it into place."""
        stream = self._additions.take()
        if stream is None:
            return
        session = self.replica.connected()
        try:
            self._mkdir(os.fsencode(self.root))
            name = self.name if self.name is not None else self._free_name(session)
            temp = f"{self.root}/{TEMP_PREFIX}{name}{ADDED_SUFFIX}"
            session.run(_upload(session, stream, temp, f"{self.root}/{name}{ADDED_SUFFIX}"), temp)
        except OSError as error:
            self._additions.give_up(describe(error))
            return
        self.added_name = name

    def _free_name(self, session: Session) -> str:
        """A run name for a run that only added: taken by no run folder nor list."""
        found = root_names(session, self.root)
        taken = set(found.folders) | set(found.lists)
        for offset in range(NAME_TRIES):
            name = version_name(self.started + timedelta(seconds=offset))
            if name not in taken:
                return name
        raise OSError(errno.EEXIST, f"no free name in {self.root}")

    def _close_folders(self) -> None:
        if self.name is None:
            return
        sftp = self.replica.connected().sftp
        problem = ""
        for rel in sorted(self._folders, key=lambda path: (path != "", path.count("/")), reverse=True):
            meta = self._folders[rel]
            attrs = asyncssh.SFTPAttrs(
                permissions=meta.mode, atime=meta.mtime_ns // SECOND, mtime=meta.mtime_ns // SECOND
            )
            try:
                self.replica.connected().run(sftp.setstat(self._run_path(rel), attrs), rel)
            except OSError as error:
                problem = problem or f"{escape(rel)}: {describe(error)}"
        self._folders.clear()
        if problem:
            self._emit(
                f"WARNING cannot set the times of version folder {escape(self.folder or '')}/{problem}"
            )

    def prune(self) -> list[str]:
        """Remove the run folders no rule keeps, and the lists that go with them (``PRUNED``
        lines), and the temporary lists of killed runs; never fails the run."""
        store = _Store(self.replica.connected(), self.root)
        try:
            leftovers = root_names(store.session, self.root).temporaries
        except OSError as error:
            self._emit(f"WARNING cannot prune versions in {escape(self.root)}: {describe(error)}")
            return []
        for name in leftovers:
            path = f"{self.root}/{name}"
            try:
                store.session.run(store.session.sftp.remove(os.fsencode(path)), path)
            except OSError as error:
                self._emit(f"WARNING cannot remove {escape(path)}: {describe(error)}")
        current = self.name if self.name is not None else self.added_name
        return prune_store(store, self.retention, self._clock(), self._emit, current=current)


class RootNames(NamedTuple):
    """A versions folder on a server: its run folders and lists (run names, oldest first), and
    the temporary lists killed runs left."""

    folders: list[str]
    lists: list[str]
    temporaries: list[str]


def root_names(session: Session, root: str) -> RootNames:
    """What versions folder ``root`` holds; nothing if it does not exist (OSError: unreadable)."""
    try:
        entries = session.run(session.sftp.readdir(os.fsencode(root)), root)
    except FileNotFoundError:
        return RootNames([], [], [])
    folders, lists, temporaries = [], [], []
    for entry in entries:
        name = os.fsdecode(entry.filename)
        mode = entry.attrs.permissions or 0
        stem = name.removesuffix(ADDED_SUFFIX)
        if stat.S_ISDIR(mode) and version_time(name) is not None:
            folders.append(name)
        elif stat.S_ISREG(mode) and stem != name and version_time(stem) is not None:
            lists.append(stem)
        elif stat.S_ISREG(mode) and name.startswith(TEMP_PREFIX) and name.endswith(ADDED_SUFFIX):
            temporaries.append(name)
    return RootNames(sorted(folders), sorted(lists), temporaries)


class _Store:
    """A versions folder on a server, as :func:`~synchro.features.keeping.prune_store` prunes it."""

    def __init__(self, session: Session, root: str) -> None:
        self.session, self.root = session, root

    def names(self) -> StoreNames:
        found = root_names(self.session, self.root)
        return StoreNames(found.folders, found.lists)

    def remove_run(self, name: str) -> None:
        path = f"{self.root}/{name}"
        self.session.run(self.session.sftp.rmtree(os.fsencode(path)), path)

    def remove_list(self, name: str) -> None:
        path = f"{self.root}/{name}{ADDED_SUFFIX}"
        with contextlib.suppress(FileNotFoundError):
            self.session.run(self.session.sftp.remove(os.fsencode(path)), path)

    def shown(self, name: str) -> str:
        return escape(f"{self.root}/{name}" if name else self.root)


async def _upload(session: Session, stream: IO[bytes], temp: str, final: str) -> None:
    """Write ``stream`` to ``temp`` on the server, synced where offered, and rename it to ``final``."""
    sftp = session.sftp
    async with sftp.open(os.fsencode(temp), "wb") as remote:
        offset = 0
        while chunk := stream.read(ADDED_CHUNK):
            await remote.write(chunk, offset)
            offset += len(chunk)
        if session.offers("fsync"):
            await remote.fsync()
    await sftp.posix_rename(os.fsencode(temp), os.fsencode(final))
