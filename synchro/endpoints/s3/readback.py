"""Read a mirror back from its bucket: ``inv restore`` and ``--verify`` of an s3:// pair.

Both see the bucket as a run sees it (:class:`~synchro.endpoints.s3.replica.S3Replica`
opened read-only: one listing, the index, HEADs where it disagrees) and
read every object they need with a GET. Neither writes to the bucket (no
lock object either); both refuse while a live run holds the lock, whose
writes would make the answer wrong.

- The restore writes files (each to a temporary name, renamed when
  complete), links (from the ``.rclonelink`` objects) and folders into the
  target, with their modes and modification times; it replaces nothing
  that exists without ``force``, and never writes into the pair's source
  without it.
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

from ...errors import ConfigError, ReplicaLocked
from ...pipeline.log import escape
from ..base import Kind, Meta, describe
from .layout import LINK_SUFFIX
from .lock import S3Lock
from .replica import S3Replica

if TYPE_CHECKING:
    from ...features.restore import RestoreReport
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


def _chunks(replica: S3Replica, rel: str) -> Iterator[bytes]:
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


def _walk(replica: S3Replica, top: str) -> Iterator[tuple[str, str, Meta]]:
    """(folder, name, meta) of every entry below folder ``top``, parents first, in name order."""
    stack = [top]
    while stack:
        folder = stack.pop()
        entries = replica.list(folder).entries
        below = []
        for name in sorted(entries):
            meta = entries[name]
            yield folder, name, meta
            if meta.kind is Kind.DIR:
                below.append(f"{folder}/{name}" if folder else name)
        stack.extend(reversed(below))


# --- restore


def restore_from_bucket(
    url: str,
    target: str,
    *,
    path: str = "",
    source: str | None = None,
    force: bool = False,
    profile: str | None = None,
    emit: Emit | None = None,
) -> RestoreReport:
    from ...features.restore import RestoreReport

    say: Emit = emit if emit is not None else (lambda line: None)
    goal = os.path.realpath(os.path.expanduser(target))
    if source is not None and os.path.realpath(source) == goal and not force:
        raise ConfigError(f"--to {escape(target)} is the pair's source: add --force to write into it")
    if os.path.lexists(goal) and not os.path.isdir(goal):
        raise ConfigError(f"--to {escape(target)} is not a folder")
    replica = open_read_only(url, profile)
    try:
        rel = path.strip("/")
        top = replica.lookup(rel)
        if top is None:
            raise ConfigError(f"{escape(rel)} is not in the replica {url}")
        report = RestoreReport(goal, rel, None)
        parent, _, name = rel.rpartition("/")
        items = [(parent, name, top)] if rel else []
        if top.kind is Kind.DIR:
            items += list(_walk(replica, rel))
        if not force:
            taken = [
                f"{folder}/{entry}" if folder else entry
                for folder, entry, meta in items
                if meta.kind is not Kind.DIR and os.path.lexists(os.path.join(goal, folder, entry))
            ]
            if taken:
                raise ConfigError(
                    f"{escape(taken[0])} exists in {escape(goal)} ({len(taken)} entries would be replaced): "
                    "restore elsewhere, or add --force"
                )
        os.makedirs(goal, exist_ok=True)
        folders: list[tuple[str, Meta]] = [("", replica.lookup("") or top)] if not rel else []
        for folder, entry, meta in items:
            at = f"{folder}/{entry}" if folder else entry
            where = os.path.join(goal, at)
            try:
                # The folders above a path restored alone are made as they come.
                os.makedirs(os.path.dirname(where), exist_ok=True)
                if meta.kind is Kind.DIR:
                    os.makedirs(where, exist_ok=True)
                    folders.append((at, meta))
                elif meta.kind is Kind.LINK:
                    assert meta.target is not None
                    _replace_link(where, meta)
                    report.files += 1
                else:
                    report.bytes_copied += _write_file(
                        replica, _object_rel(folder, entry, Kind.FILE), where, meta
                    )
                    report.files += 1
            except OSError as error:
                report.failed.append((at, describe(error)))
                say(f"FAILED {escape(at)}: {escape(describe(error))}")
                continue
            report.entries += 1
            say(f"RESTORED {escape(at)}" + ("/" if meta.kind is Kind.DIR else ""))
        # Folders last, deepest first: writing into them changed their times.
        for at, meta in reversed(folders):
            where = os.path.join(goal, at) if at else goal
            try:
                os.chmod(where, meta.mode)
                os.utime(where, ns=(meta.mtime_ns, meta.mtime_ns))
            except OSError as error:
                report.failed.append((at or ".", describe(error)))
                say(f"FAILED {escape(at or '.')}/: {escape(describe(error))}")
    finally:
        replica.close()
    return report


def _write_file(replica: S3Replica, rel: str, where: str, meta: Meta) -> int:
    folder, name = os.path.split(where)
    temp = os.path.join(folder, f".synchro-tmp-restore-{os.getpid()}-{name}"[:255])
    written = 0
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        for chunk in _chunks(replica, rel):
            os.write(fd, chunk)
            written += len(chunk)
        os.fchmod(fd, meta.mode)
        os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
        os.close(fd)
        fd = -1
        os.replace(temp, where)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        os.unlink(temp)
        raise
    return written


def _replace_link(where: str, meta: Meta) -> None:
    assert meta.target is not None
    temp = os.path.join(os.path.dirname(where), f".synchro-tmp-restore-{os.getpid()}-link")
    os.symlink(meta.target, temp)
    try:
        os.utime(temp, ns=(meta.mtime_ns, meta.mtime_ns), follow_symlinks=False)
        os.replace(temp, where)
    except BaseException:
        os.unlink(temp)
        raise


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
        for chunk in _chunks(replica, _object_rel(folder, name, Kind.FILE)):
            theirs.update(chunk)
            nbytes += len(chunk)
    except OSError as error:
        return ours.hexdigest(), f"unreadable: {describe(error)}", nbytes
    return ours.hexdigest(), theirs.hexdigest(), nbytes
