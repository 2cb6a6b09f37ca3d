"""A bucket's mirror and its versions, read back: ``inv restore`` (``--at`` too) and ``inv versions``.

The replica is read as a run reads it (:class:`~synchro.endpoints.s3.replica.S3Replica`
opened read-only: one flat listing, the index, HEADs where they disagree).
The versions prefix (:mod:`synchro.endpoints.s3.versions`) is listed flat
once; each run prefix is then read the same way, with the run's own index
(``RUN.synchro/index``) in place of the replica's, so a run costs no HEAD
per object and its folders keep their times and modes. Files are
downloaded with a GET, to a temporary name renamed into place. Nothing is
written to the bucket, no lock either: a restore is refused while a live
run holds the replica's lock.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextlib import suppress as ignored

from ...errors import ReplicaLocked
from ...features.history import RemotePair, RunNames, records
from ...features.versions import ADDED_SUFFIX, version_time
from ...pipeline.roots import check_remote_versions
from ..base import TEMP_PREFIX, Kind, Listing, Meta
from . import index as index_file
from .connect import S3Location, parse_s3_url
from .lock import S3Lock
from .readback import object_chunks
from .replica import S3Replica
from .snapshot import Listed, list_prefix, read_snapshot
from .versions import run_location


class S3Tree:
    """An :class:`S3Replica` (the mirror, or a run prefix) as a :class:`~synchro.features.history.TreeReader`.

    The mirror is listed when first read: listing versions needs only theirs.
    """

    def __init__(self, replica: S3Replica, *, opened: bool) -> None:
        self.replica = replica
        self._opened = opened

    def _ready(self) -> S3Replica:
        if not self._opened:
            self.replica.open()
            self._opened = True
        return self.replica

    def list(self, folder: str) -> Listing:
        return self._ready().list(folder)

    def lookup(self, path: str) -> Meta | None:
        return self._ready().lookup(path)

    def download(self, folder: str, name: str, target_dir: int, *, keep_owner: bool) -> int:
        replica = self._ready()
        meta = replica.lookup(f"{folder}/{name}" if folder else name)
        if meta is None or meta.kind is not Kind.FILE:
            raise FileNotFoundError(errno.ENOENT, "no longer a file in the bucket", name)
        temp = f"{TEMP_PREFIX}{os.urandom(6).hex()}"
        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=target_dir,
        )
        written = 0
        try:
            try:
                for chunk in object_chunks(replica, replica._object(folder, name, Kind.FILE)):
                    view = memoryview(chunk)
                    while view:
                        done = os.write(fd, view)
                        view = view[done:]
                    written += len(chunk)
                if keep_owner:
                    os.fchown(fd, meta.uid, meta.gid)
                os.fchmod(fd, meta.mode)
                os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
            finally:
                os.close(fd)
            os.rename(temp, name, src_dir_fd=target_dir, dst_dir_fd=target_dir)
        except BaseException:
            with ignored(OSError):
                os.unlink(temp, dir_fd=target_dir)
            raise
        return written


class S3Versions:
    """A versions prefix (a :class:`~synchro.features.history.VersionStore`), listed flat once."""

    def __init__(self, replica: S3Replica, versions: S3Location) -> None:
        self.replica = replica
        self.versions = versions
        self.where = str(versions)
        # The versions prefix read as a tree of its own: what lies beside the runs is read through it.
        self._root = _sharing(replica, versions)
        self._runs: dict[str, list[Listed]] | None = None
        self._lists: list[str] = []
        self._indexes: set[str] = set()
        self._trees: dict[str, S3Tree] = {}

    def _scan(self) -> dict[str, list[Listed]]:
        if self._runs is not None:
            return self._runs
        s3, where = self.replica.s3, self.versions
        listed = self.replica._call(f"cannot list {where}", lambda: list_prefix(s3, where))
        runs: dict[str, list[Listed]] = {}
        for item in listed:
            head, slash, rest = item.rel.partition("/")
            stem = item.rel.removesuffix(ADDED_SUFFIX)
            if slash and version_time(head) is not None:
                # A run's object, or its folder's marker: keyed within the run.
                runs.setdefault(head, []).append(item._replace(rel=rest))
            elif slash and rest == "index" and version_time(head.removesuffix(".synchro")) is not None:
                self._indexes.add(head.removesuffix(".synchro"))
            elif not slash and item.rel.endswith(ADDED_SUFFIX) and version_time(stem) is not None:
                self._lists.append(stem)
        self._runs = {name: items for name, items in runs.items() if any(item.rel for item in items)}
        return self._runs

    def runs(self) -> RunNames:
        runs = self._scan()
        return RunNames(sorted(runs), sorted(self._lists))

    def run(self, name: str) -> S3Tree:
        if name not in self._trees:
            view = _sharing(self.replica, run_location(self.versions, name))
            known = index_file.empty()
            if name in self._indexes:
                data = b"".join(object_chunks(self._root, f"{name}.synchro/index"))
                known = index_file.loads(data)
            s3, items = self.replica.s3, self._scan().get(name, [])
            view.snap = self.replica._call(
                f"cannot read the metadata of {view.location}",
                lambda: read_snapshot(s3, view.location, known, items),
            )
            self._trees[name] = S3Tree(view, opened=True)
        return self._trees[name]

    def added(self, name: str) -> Iterator[str]:
        return records(object_chunks(self._root, name + ADDED_SUFFIX))


def _sharing(replica: S3Replica, location: S3Location) -> S3Replica:
    """Another prefix of the same bucket (or endpoint), read through ``replica``'s client."""
    view = S3Replica(f"s3://{location.bucket}/{location.prefix}", profile=replica.profile, dry_run=True)
    view._s3 = replica.s3  # one client, one check of the bucket
    return view


@contextmanager
def open_bucket(url: str, versions: str | None, *, lock: bool, profile: str | None) -> Iterator[RemotePair]:
    """The mirror at ``url`` and its versions prefix (as the pair names it), for reading.

    ``lock``: refused (:class:`~synchro.errors.ReplicaLocked`) while a live run holds the lock.
    """
    kept = check_remote_versions(url, versions) if versions else None
    replica = S3Replica(url, profile=profile, dry_run=True)
    if lock and S3Lock(replica.s3, replica.location).holder_alive():
        raise ReplicaLocked(str(replica.location))
    try:
        store = S3Versions(replica, parse_s3_url(kept)) if kept is not None else None
        yield RemotePair(S3Tree(replica, opened=False), store)
    finally:
        replica.close()
