"""Read a mirror back from its bucket: ``--verify`` of an s3:// pair (``inv restore``: :mod:`.history`).

It sees the bucket as a run sees it (:class:`~synchro.endpoints.s3.replica.S3Replica`
opened read-only: one listing, the index, HEADs where it disagrees) and
reads every object it needs with a GET. It writes nothing to the bucket (no
lock object either) and refuses while a live run holds the lock, whose
writes would make the answer wrong.

- The verify compares the source with the bucket entry by entry, reading
  the bytes of every object of a file whose size matches and hashing both
  sides, and reports each difference as the local verify does (MISSING,
  EXTRA, CONTENT, METADATA, FAILED).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ...errors import ReplicaLocked
from ...pipeline.log import escape
from ..base import Kind, Meta, describe
from .layout import LINK_SUFFIX
from .lock import S3Lock
from .replica import S3Replica

if TYPE_CHECKING:
    from ...features.verify import VerifyReport, VerifyRules

Emit = Callable[[str], None]
CHUNK = 1 << 20
READS_IN_FLIGHT = 8


def open_read_only(url: str, profile: str | None) -> S3Replica:
    """The replica at ``url``, listed, with nothing written; ReplicaLocked while a live run holds it."""
    replica = S3Replica(url, profile=profile, dry_run=True)
    if S3Lock(replica.s3, replica.location).holder_alive():
        raise ReplicaLocked(str(replica.location))
    replica.open()
    return replica


def _object_rel(folder: str, name: str, kind: Kind) -> str:
    last = name + LINK_SUFFIX if kind is Kind.LINK else name
    return f"{folder}/{last}" if folder else last


def object_chunks(replica: S3Replica, rel: str) -> Iterator[bytes]:
    """The bytes of object ``rel`` (relative to the replica's prefix), a MiB at a time."""
    got = replica._call(
        f"cannot read {replica.key(rel)}",
        lambda: replica.s3.get_object(Bucket=replica.location.bucket, Key=replica.key(rel)),
    )
    body = got["Body"]
    try:
        while chunk := body.read(CHUNK):
            yield chunk
    finally:
        body.close()


# --- verify


def verify_bucket(
    source: str, url: str, rules: VerifyRules, *, profile: str | None = None, emit: Emit
) -> VerifyReport:
    """Compare source folder ``source`` with the mirror in ``url``, reading every byte."""
    from ...features.verify import MAX_KEPT, Difference, VerifyReport
    from ..local.tree import LocalTree

    started = time.monotonic()
    report = VerifyReport(source, url)

    def differ(kind: str, rel: str, is_dir: bool, detail: str = "") -> None:
        report.counts[kind] += 1
        found = Difference(kind, escape(rel) + ("/" if is_dir else ""), detail)
        if len(report.differences) < MAX_KEPT:
            report.differences.append(found)
        emit(found.line)

    replica = open_read_only(url, profile)
    src = LocalTree.open_at(source)
    try:
        with ThreadPoolExecutor(READS_IN_FLIGHT, thread_name_prefix="synchro-s3-verify") as pool:
            stack = [""]
            while stack:
                folder = stack.pop()
                theirs = replica.list(folder).entries
                listing = src.list(folder)
                ours = listing.entries
                for name, error in listing.errors.items():
                    differ("failed", f"{folder}/{name}" if folder else name, False, error)
                files: list[tuple[str, str, Meta, Meta]] = []
                below: list[str] = []
                for name in sorted(ours.keys() | theirs.keys()):
                    rel = f"{folder}/{name}" if folder else name
                    mine, held = ours.get(name), theirs.get(name)
                    if mine is not None and mine.kind is Kind.SPECIAL:
                        continue
                    excluded = rules.excluded is not None and rules.excluded(
                        rel, (mine or held or Meta(Kind.FILE, 0, 0, 0, 0, 0)).kind is Kind.DIR
                    )
                    if excluded and (mine is not None or not rules.delete_excluded):
                        continue
                    if held is None:
                        assert mine is not None
                        differ("missing", rel, mine.kind is Kind.DIR)
                    elif mine is None:
                        differ("extra", rel, held.kind is Kind.DIR)
                    elif mine.kind is not held.kind:
                        differ(
                            "metadata",
                            rel,
                            False,
                            f"{_kind(mine)} in the source, {_kind(held)} in the replica",
                        )
                    else:
                        report.compared += 1
                        if mine.kind is Kind.DIR:
                            below.append(rel)
                            _metadata(differ, rel, True, mine, held, rules)
                        elif mine.kind is Kind.LINK:
                            if mine.target != held.target:
                                differ("content", rel, False, "the links point elsewhere")
                        elif mine.size != held.size:
                            differ(
                                "content",
                                rel,
                                False,
                                f"{mine.size} bytes in the source, {held.size} in the replica",
                            )
                        else:
                            files.append((folder, name, mine, held))
                # Opened here: the source's folder descriptors stay in this thread.
                opened = [(src.open_file(f_folder, name), f_folder, name) for f_folder, name, _, _ in files]
                hashes = pool.map(lambda item: _both_hashes(item[0], replica, item[1], item[2]), opened)
                for (f_folder, name, mine, held), (ours_hash, theirs_hash, nbytes) in zip(
                    files, hashes, strict=True
                ):
                    rel = f"{f_folder}/{name}" if f_folder else name
                    report.bytes_read += nbytes
                    if ours_hash != theirs_hash:
                        differ(
                            "content",
                            rel,
                            False,
                            f"bytes differ (md5 {ours_hash[:8]}... in the source, "
                            f"{theirs_hash[:8]}... in the replica)",
                        )
                    else:
                        _metadata(differ, rel, False, mine, held, rules)
                stack.extend(reversed(below))
    finally:
        src.close()
        replica.close()
    report.seconds = time.monotonic() - started
    emit(report.summary())
    return report


def _kind(meta: Meta) -> str:
    return {Kind.FILE: "a file", Kind.DIR: "a folder", Kind.LINK: "a link"}.get(meta.kind, "a special file")


def _metadata(
    differ: Callable[[str, str, bool, str], None],
    rel: str,
    is_dir: bool,
    mine: Meta,
    held: Meta,
    rules: VerifyRules,
) -> None:
    from ...pipeline.plan import same_time

    problems = []
    if rules.holds.permissions and mine.mode != held.mode:
        problems.append(f"mode {mine.mode:04o} in the source, {held.mode:04o} in the replica")
    if not same_time(mine.mtime_ns, held.mtime_ns, rules.window_ns):
        problems.append(f"modification time {mine.mtime_ns} in the source, {held.mtime_ns} in the replica")
    if problems:
        differ("metadata", rel, is_dir, "; ".join(problems))


def _both_hashes(fd: int, replica: S3Replica, folder: str, name: str) -> tuple[str, str, int]:
    """The MD5 of the source file open on ``fd`` (closed here) and of its object, and the bytes read."""
    ours, theirs, nbytes = hashlib.md5(), hashlib.md5(), 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "not a file", "", 0
        while chunk := os.read(fd, CHUNK):
            ours.update(chunk)
            nbytes += len(chunk)
    finally:
        os.close(fd)
    try:
        for chunk in object_chunks(replica, _object_rel(folder, name, Kind.FILE)):
            theirs.update(chunk)
            nbytes += len(chunk)
    except OSError as error:
        return ours.hexdigest(), f"unreadable: {describe(error)}", nbytes
    return ours.hexdigest(), theirs.hexdigest(), nbytes
