"""A replica on an SSH server and its versions, read back: ``restore --at`` and ``inv versions``.

The replica itself is read as a run reads it (:class:`~synchro.endpoints.sftp.replica.SftpReplica`:
one ``READDIR`` per folder, files downloaded with many reads in flight).
The versions folder on the same server (:mod:`synchro.endpoints.sftp.versions`)
holds run folders and lists of additions in the local layout; a run folder
is read through the same connection and the same code as the replica,
rooted at that folder. Nothing is written on the server, except the run
lock while a restore holds it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from ...features.history import Listed, RemotePair, RunNames, records
from ...features.versions import ADDED_CHUNK, ADDED_SUFFIX
from ...pipeline.roots import check_remote_versions
from .connect import asyncssh
from .replica import SftpReplica
from .versions import root_names


def folder_view(replica: SftpReplica, path: str) -> SftpReplica:
    """Folder ``path`` of the replica's server read as a tree, through the replica's connection.

    A shallow copy that shares the connection and lists each folder when
    asked (no crawl ahead, which belongs to the replica's own walk); it is
    never closed, the replica's close ends the connection.
    """
    view = copy.copy(replica)
    view.root = os.fsencode(path)
    view.exists = True
    view.locked = True  # a close() of the view must not end the shared connection
    view._writing = True  # listings asked one by one, fresh
    return view


class SftpVersions:
    """The versions folder ``root`` on the replica's server (a :class:`~synchro.features.history.VersionStore`)."""

    def __init__(self, replica: SftpReplica, root: str) -> None:
        self.replica = replica
        self.root = root.rstrip("/") or "/"
        self.where = str(replica.location._replace(path=self.root))

    def runs(self) -> RunNames:
        found = root_names(self.replica.connected(), self.root)
        return RunNames(found.folders, found.lists)

    def run(self, name: str) -> Listed:
        return Listed(folder_view(self.replica, f"{self.root}/{name}"))

    def added(self, name: str) -> Iterator[str]:
        return records(self._chunks(f"{self.root}/{name}{ADDED_SUFFIX}"))

    def _chunks(self, path: str) -> Iterator[bytes]:
        session = self.replica.connected()
        sftp = session.sftp

        async def opened() -> asyncssh.SFTPClientFile:
            return await sftp.open(os.fsencode(path), "rb")

        remote = session.run(opened(), path)

        async def read(offset: int) -> bytes:
            data: bytes = await remote.read(ADDED_CHUNK, offset)
            return data

        try:
            offset = 0
            while True:
                chunk = session.run(read(offset), path)
                if not chunk:
                    return
                yield chunk
                offset += len(chunk)
        finally:
            if not session.lost:
                session.run(remote.close(), path)


@contextmanager
def open_server(url: str, versions: str | None, *, lock: bool, timeout: float) -> Iterator[RemotePair]:
    """The replica at ``url`` and its versions folder (as the pair names it), connected."""
    kept = check_remote_versions(url, versions) if versions else None
    replica = SftpReplica(url, timeout=timeout)
    held: AbstractContextManager[object] = replica.lock() if lock else nullcontext()
    with held:
        try:
            replica.open()  # ConfigError: unreachable, missing
            store = SftpVersions(replica, kept) if kept is not None else None
            yield RemotePair(Listed(replica), store)
        finally:
            replica.close()
