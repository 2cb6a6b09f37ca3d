"""Old versions of a bucket's objects, kept by server-side copies (``versions = s3://bucket/prefix``).

Before a run replaces or deletes an object of the mirror, it copies it on
the server (``CopyObject``: no byte comes back to this machine) to
``versions-prefix/RUN/relative/path``, where ``RUN`` is the run's start
(``YYYY-MM-DD_HHMMSS``, as the local versions folders are named; a name
already taken moves a second later), then replaces or deletes it. The copy
keeps the object's metadata, so a kept version is a file as rclone and
people read it. A deleted folder is kept as a ``dir/`` marker when nothing
below it was kept.

Beside the run prefixes, as beside a replica's prefix, synchro keeps for
itself:

- ``RUN.synchro/index``: what the run kept, in the replica's index format
  (:mod:`~synchro.endpoints.s3.index`): each kept object's size, ETag and
  metadata, and the times and modes of the folders it holds (an object
  store has no place for those), so a run is read back without a HEAD per
  object and with its folders as they were;
- ``RUN.added``: what the run added, the local format and rules
  (:class:`~synchro.features.keeping.Additions`), so that ``restore --at``
  can leave it out.

Both are written at the end of the run. After a successful run, the runs
the retention (``keep_versions``) lets go are deleted, and the lists that
go with them (:func:`~synchro.features.keeping.prune_store`).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ...features.keeping import Additions, StoreNames, prune_store, warning
from ...features.versions import ADDED_SUFFIX, NAME_TRIES, version_name, version_time
from ...options import KeepVersions
from ...pipeline.log import escape
from ...pipeline.plan import Action, Op
from ..base import Kind
from . import index as index_file
from .connect import S3Location
from .index import Entry, Folder
from .replica import S3Replica, index_key
from .snapshot import strip_etag

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover - types only
    from mypy_boto3_s3.type_defs import CopySourceTypeDef, ObjectIdentifierTypeDef  # pragma: no cover

Emit = Callable[[str], None]


def run_location(versions: S3Location, name: str) -> S3Location:
    """Where run ``name``'s kept objects are: a prefix of its own, read as a replica's."""
    return S3Location(versions.bucket, f"{versions.prefix}/{name}")


class S3Keeper:
    """The keeper of one run into an s3:// replica (see :class:`synchro.pipeline.apply.Keeper`)."""

    def __init__(
        self,
        replica: S3Replica,
        versions: S3Location,
        keep: KeepVersions,
        emit: Emit,
        *,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.replica = replica
        self.versions = versions
        self.keep_rule = keep
        self._emit = emit
        self._clock = clock
        self.started = clock()
        self.name: str | None = None  # this run's prefix, once something is kept
        self.added_name: str | None = None  # the run name its list of additions got, once in place
        # The run's index: what it kept, and the folders it holds (as they were in the replica).
        self._objects: dict[str, Entry] = {}
        self._folders: dict[str, Folder] = {}
        # Made before the run changes anything: the snapshot is the replica before it.
        self._additions = Additions(fresh=not replica.snap.folders.get(""), history=self._history)

    @property
    def _shown(self) -> str:
        return escape(str(self.versions))

    def _names(self) -> StoreNames:
        return self.replica._call(
            f"cannot list {self.versions}", lambda: root_names(self.replica.s3, self.versions)
        )

    def _history(self) -> bool:
        found = self._names()
        return bool(found.folders or found.lists)

    def _free_name(self) -> str:
        """This run's name: its start, or a second later while a run or list has it."""
        found = self._names()
        taken = set(found.folders) | set(found.lists)
        for offset in range(NAME_TRIES):
            name = version_name(self.started + timedelta(seconds=offset))
            if name not in taken:
                return name
        raise OSError(errno.EEXIST, f"cannot keep the old version: no free run name in {self.versions}")

    def _run(self) -> str:
        if self.name is None:
            self.name = self._free_name()
        return self.name

    def _parents(self, folder: str) -> None:
        """Record the folders down to ``folder`` in the run, as the replica holds them now."""
        snap = self.replica.snap
        path = folder
        while path and path not in self._folders:
            meta = snap.folder_entry(path)
            self._folders[path] = Folder(meta.mtime_ns, meta.mode, meta.uid, meta.gid)
            path = path.rpartition("/")[0]

    def keep(self, action: Action) -> None:
        """Copy the replica's entry to this run's versions; a deletion then removes it."""
        replica, rep = self.replica, action.rep
        bucket = self.versions.bucket
        if rep is not None and rep.kind is not Kind.DIR:
            rel = replica._object(action.dir, action.name, rep.kind)
            known = replica.snap.objects.get(rel)
            name = self._run()
            target = self.versions.key(f"{name}/{rel}")
            source: CopySourceTypeDef = {"Bucket": replica.location.bucket, "Key": replica.key(rel)}
            answer = replica._call(
                f"cannot keep {replica.key(rel)} in {self.versions}",
                lambda: replica.s3.copy_object(Bucket=bucket, Key=target, CopySource=source),
            )
            self._parents(action.dir)
            if known is not None:
                etag = strip_etag(answer.get("CopyObjectResult", {}).get("ETag", ""))
                self._objects[rel] = known._replace(etag=etag)
            self._emit(f"KEPT {escape(action.path)} -> {self._shown}/{name}/")
        elif rep is not None and action.op is Op.RMDIR:
            path = action.path
            name = self._run()
            if path not in self._folders:
                # Nothing below it was kept: a marker, so that the run holds the folder.
                key = self.versions.key(f"{name}/{path}") + "/"
                replica._call(
                    f"cannot keep {replica.key(path)}/ in {self.versions}",
                    lambda: replica.s3.put_object(Bucket=bucket, Key=key, Body=b""),
                )
            self._parents(action.dir)
            # As planned: the run has changed its time by emptying it.
            self._folders[path] = Folder(rep.mtime_ns, rep.mode, rep.uid, rep.gid)
            self._emit(f"KEPT {escape(path)}/ -> {self._shown}/{name}/")
        if action.op is Op.DELETE:
            replica.remove(action.dir, action.name)
        elif action.op is Op.RMDIR:
            replica.remove_folder(action.dir, action.name)

    def added(self, action: Action) -> None:
        """Note that ``action`` made an entry where there was none (for ``restore --at``)."""
        self._additions.note(action)

    def close(self) -> None:
        """Write the run's index and its list of additions (never raises: a WARNING line)."""
        try:
            if self.replica.gone is not None:
                self._additions.give_up(self.replica.gone)
                return
            self._write_index()
            self._publish_added()
        finally:
            self._additions.discard()
            if self._additions.problem:
                self._emit(warning(self._shown, escape(self._additions.problem)))

    def _write_index(self) -> None:
        if self.name is None:
            return
        data = index_file.dumps(index_file.Index(self._objects, self._folders))
        key = index_key(run_location(self.versions, self.name))
        try:
            self.replica._call(
                f"cannot write {key}",
                lambda: self.replica.s3.put_object(Bucket=self.versions.bucket, Key=key, Body=data),
            )
        except OSError as error:
            # The kept objects are in place; read back, each costs a HEAD and its folders' times are lost.
            self._emit(f"WARNING {escape(error.strerror or str(error))}")

    def _publish_added(self) -> None:
        """One PUT: the list is there complete, or not at all."""
        stream = self._additions.take()
        if stream is None:
            return
        try:
            name = self.name if self.name is not None else self._free_name()
            key = self.versions.key(name + ADDED_SUFFIX)
            body = stream.read()
            self.replica._call(
                f"cannot write {key}",
                lambda: self.replica.s3.put_object(Bucket=self.versions.bucket, Key=key, Body=body),
            )
        except OSError as error:
            self._additions.give_up(error.strerror or str(error))
            return
        self.added_name = name

    def prune(self) -> list[str]:
        """Delete the runs no rule keeps (after a successful run), and the lists that go with them."""
        current = self.name if self.name is not None else self.added_name
        store = _Store(self.replica, self.versions)
        return prune_store(store, self.keep_rule, self._clock(), self._emit, current=current)


def root_names(s3: S3Client, versions: S3Location) -> StoreNames:
    """The runs and lists under a versions prefix (one delimited listing; botocore errors raise).

    A server may still show a prefix whose objects were all deleted
    (SeaweedFS does): such a run is pruned again, finding nothing to delete.
    """
    base = versions.key("")
    folders, lists = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=versions.bucket, Prefix=base, Delimiter="/"
    ):
        for common in page.get("CommonPrefixes", ()):
            name = common.get("Prefix", "")[len(base) : -1]
            if version_time(name) is not None:
                folders.append(name)
        for item in page.get("Contents", ()):
            stem = item.get("Key", "")[len(base) :].removesuffix(ADDED_SUFFIX)
            if item.get("Key", "").endswith(ADDED_SUFFIX) and version_time(stem) is not None:
                lists.append(stem)
    return StoreNames(sorted(folders), sorted(lists))


class _Store:
    """A versions prefix, as :func:`~synchro.features.keeping.prune_store` prunes it."""

    def __init__(self, replica: S3Replica, versions: S3Location) -> None:
        self.replica, self.versions = replica, versions

    def names(self) -> StoreNames:
        return self.replica._call(
            f"cannot list {self.versions}", lambda: root_names(self.replica.s3, self.versions)
        )

    def remove_run(self, name: str) -> None:
        """Delete every object of the run, its index included (FileNotFoundError: none was left)."""
        s3, bucket = self.replica.s3, self.versions.bucket
        found = 0
        for prefix in (self.versions.key(name) + "/", self.versions.key(name) + ".synchro/"):
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": item["Key"]}
                for page in self.replica._call(
                    f"cannot list {prefix}",
                    lambda prefix=prefix: list(  # type: ignore[misc]
                        s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                    ),
                )
                for item in page.get("Contents", ())
            ]
            found += len(keys)
            for start in range(0, len(keys), 1000):
                chunk = keys[start : start + 1000]
                self.replica._call(
                    f"cannot delete under {prefix}",
                    lambda chunk=chunk: s3.delete_objects(  # type: ignore[misc]
                        Bucket=bucket, Delete={"Objects": chunk, "Quiet": True}
                    ),
                )
        if not found:
            # A prefix a listing still shows after its objects went (SeaweedFS): pruned before.
            raise FileNotFoundError(errno.ENOENT, "pruned already", name)

    def remove_list(self, name: str) -> None:
        key = self.versions.key(name + ADDED_SUFFIX)
        self.replica._call(
            f"cannot delete {key}",
            lambda: self.replica.s3.delete_object(Bucket=self.versions.bucket, Key=key),
        )

    def shown(self, name: str) -> str:
        return escape(f"{self.versions}/{name}" if name else str(self.versions))
