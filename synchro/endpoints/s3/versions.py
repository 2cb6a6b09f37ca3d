"""Old versions of a bucket's objects, kept by server-side copies (``versions = s3://bucket/prefix``).

Before a run replaces or deletes an object of the mirror, it copies it on
the server (``CopyObject``: no byte comes back to this machine) to
``versions-prefix/RUN/relative/path``, where ``RUN`` is the run's start
(``YYYY-MM-DD_HHMMSS``, as the local versions folders are named), then
replaces or deletes it. The copy keeps the object's metadata, so a kept
version is a file as rclone and people read it. After a successful run,
the run prefixes the retention (``keep_versions``) lets go are deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ...features.versions import VERSION_FORMAT
from ...options import KeepVersions
from ...pipeline.log import escape
from ...pipeline.plan import Action, Op
from ..base import Kind
from .connect import S3Location
from .replica import S3Replica

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CopySourceTypeDef, ObjectIdentifierTypeDef  # pragma: no cover

Emit = Callable[[str], None]


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
        self.name = clock().strftime(VERSION_FORMAT)

    def keep(self, action: Action) -> None:
        """Copy the replica's entry to this run's versions; a deletion then removes it."""
        replica, rep = self.replica, action.rep
        if rep is not None and rep.kind is not Kind.DIR:
            rel = replica._object(action.dir, action.name, rep.kind)
            target = self.versions.key(f"{self.name}/{rel}")
            source: CopySourceTypeDef = {"Bucket": replica.location.bucket, "Key": replica.key(rel)}
            replica._call(
                f"cannot keep {replica.key(rel)} in {self.versions}",
                lambda: replica.s3.copy_object(Bucket=self.versions.bucket, Key=target, CopySource=source),
            )
            suffix = ""
            self._emit(f"KEPT {escape(action.path)}{suffix} -> {escape(str(self.versions))}/{self.name}/")
        if action.op is Op.DELETE:
            replica.remove(action.dir, action.name)
        elif action.op is Op.RMDIR:
            replica.remove_folder(action.dir, action.name)

    def added(self, action: Action) -> None:
        """Additions are not recorded: restoring as of a run (``--at``) is for local versions only."""

    def close(self) -> None:
        """Nothing is held open."""

    def prune(self) -> list[str]:
        """Delete the run prefixes no rule keeps (after a successful run); return their names."""
        rule = self.keep_rule
        if rule.forever:
            return []
        s3, bucket, base = self.replica.s3, self.versions.bucket, self.versions.key("")
        runs: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base, Delimiter="/"):
            runs.extend(common["Prefix"][len(base) : -1] for common in page.get("CommonPrefixes", ()))
        dated = []
        for run in runs:
            try:
                dated.append((datetime.strptime(run, VERSION_FORMAT), run))
            except ValueError:
                continue  # not a run of ours: left alone
        dated.sort(reverse=True)
        now = self._clock()
        removed = []
        for index, (when, run) in enumerate(dated):
            young = rule.max_age is not None and now - when < rule.max_age
            newest = rule.newest is not None and index < rule.newest
            if young or newest or run == self.name:
                continue
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": item["Key"]}
                for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=f"{base}{run}/"
                )
                for item in page.get("Contents", ())
            ]
            for start in range(0, len(keys), 1000):
                s3.delete_objects(
                    Bucket=bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True}
                )
            self._emit(f"PRUNED {escape(str(self.versions))}/{run}/ (kept by no rule: {rule})")
            removed.append(run)
        return removed
