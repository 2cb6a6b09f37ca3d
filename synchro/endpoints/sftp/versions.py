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

Not kept here (yet): the list of what each run added, which ``restore
--at`` needs; ``inv versions`` and ``restore --at`` read local versions
folders only.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from datetime import datetime

from ...features.versions import _prune_reason, to_prune, version_name, version_time
from ...options import KeepVersions
from ...pipeline.log import escape
from ...pipeline.plan import Action, Op
from ..base import Kind, Meta, describe
from .connect import asyncssh
from .replica import SECOND, SftpReplica

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
        # Version folders made by this run, and the metadata to give them at close.
        self._folders: dict[str, Meta] = {}

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
            self.name = version_name(self.started)
            if not self._mkdir(self._run_path()):
                raise RemoteKeepError(errno.EEXIST, f"the version folder {self.folder} exists already")
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
        """The list of additions is not kept on a server (``restore --at`` reads local versions only)."""

    def close(self) -> None:
        """Give the folders this run made their metadata, deepest first (never raises)."""
        if self.name is None or self.replica.session is None or self.replica.session.lost:
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
        """Remove the run folders no rule keeps (``PRUNED`` lines); never fails the run."""
        if self.retention.forever:
            return []
        session = self.replica.connected()
        sftp = session.sftp
        try:
            names = session.run(sftp.readdir(os.fsencode(self.root)), self.root)
        except FileNotFoundError:
            return []
        except OSError as error:
            self._emit(f"WARNING cannot prune versions in {escape(self.root)}: {describe(error)}")
            return []
        folders = sorted(
            os.fsdecode(entry.filename)
            for entry in names
            if stat.S_ISDIR(entry.attrs.permissions or 0)
            and version_time(os.fsdecode(entry.filename)) is not None
        )
        removed = []
        for name in to_prune(folders, self.retention, self._clock()):
            if name == self.name:
                continue
            path = f"{self.root}/{name}"
            try:
                session.run(sftp.rmtree(os.fsencode(path)), path)
            except OSError as error:
                self._emit(f"WARNING cannot prune {escape(path)}/: {describe(error)}")
                continue
            removed.append(name)
            self._emit(f"PRUNED {escape(path)}/ ({_prune_reason(self.retention)})")
        return removed
