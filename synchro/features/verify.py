"""Verify a replica against its source, reading every byte; change nothing.

The mirror's quick check trusts size and modification time, so a bit flipped
on the backup drive, or a file edited behind the tool's back with its time
put back, goes unseen. :func:`verify_trees` reads both trees (folder by
folder as the mirror reaches them, never following links), hashes each pair of
same-size files with BLAKE2b in chunks (memory stays bounded whatever the
file size), and compares types, link targets and metadata as the mirror
keeps them: permission bits and modification times (and owners when run as
root). Each difference is one line, as it is found:

    MISSING photos/2026/IMG_0042.jpg
    EXTRA notes/old.txt
    CONTENT notes/todo.txt: bytes differ, same size and time (blake2b 3f0a9c1e... in the source, 77d2e410... in the replica)
    METADATA notes/: mode 0755 in the source, 0700 in the replica
    FAILED private/: cannot read the source folder: Permission denied

It expects what a successful run leaves: entries left out by the exclude
patterns, sockets, FIFOs, devices and the log folder inside the source are
not compared (excluded entries of the replica count as extra only with
``delete_excluded``), and a leftover temporary in the replica is extra. An
entry whose content differs is reported for its content only.

Files are opened with ``O_NOATIME`` where the kernel allows it, so that
even access times stay as they were. Only the first
:data:`MAX_KEPT` differences are kept in the report object; every one is
emitted, and the counts are exact.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TextIO

from ..endpoints.base import LOCK_NAME, TEMP_PREFIX, Folders, Kind, Listing, Meta, describe
from ..endpoints.capabilities import FULL_POSIX, Capabilities
from ..endpoints.local.filecopy import CHUNK
from ..endpoints.portable.attributes import mode_difference
from ..endpoints.resolve import open_folders, replica_at
from ..errors import ExitCode
from ..options import MirrorOptions
from ..pipeline.exclude import Excluder
from ..pipeline.log import escape, log_dir
from ..pipeline.plan import PlanRules, same_time, time_window
from ..pipeline.roots import check_roots, is_remote

if TYPE_CHECKING:
    from ..endpoints.sftp.replica import SftpReplica
    from ..pipeline.apply import Progress

MAX_KEPT = 10_000
WORDS = {
    "missing": "MISSING",
    "extra": "EXTRA",
    "content": "CONTENT",
    "metadata": "METADATA",
    "failed": "FAILED",
}
KIND_NAMES = {Kind.FILE: "a file", Kind.DIR: "a folder", Kind.LINK: "a link", Kind.SPECIAL: "a special file"}

Emit = Callable[[str], None]
ProgressFactory = Callable[[int, int], "Progress"]


@dataclass(frozen=True)
class Difference:
    """One way the replica differs from the source; ``kind`` is a key of :data:`WORDS`."""

    kind: str
    path: str  # escaped, relative, folders end with "/"
    detail: str = ""

    @property
    def line(self) -> str:
        return f"{WORDS[self.kind]} {self.path}" + (f": {self.detail}" if self.detail else "")


@dataclass
class VerifyReport:
    """What a verification found. ``exit_code`` is 0 only for an exact replica."""

    source: str
    replica: str
    compared: int = 0  # entries present on both sides and compared
    bytes_read: int = 0  # on both sides
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WORDS, 0))
    differences: list[Difference] = field(default_factory=list)  # the first MAX_KEPT
    seconds: float = 0.0

    @property
    def exact(self) -> bool:
        return not any(self.counts.values())

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.exact else ExitCode.FAILED

    def summary(self) -> str:
        counts = " ".join(f"{kind}={count}" for kind, count in self.counts.items())
        return (
            f"SUMMARY compared={self.compared} {counts} bytes={self.bytes_read} "
            f"seconds={self.seconds:.3f} exit={int(self.exit_code)}"
        )


@dataclass(frozen=True)
class VerifyRules:
    """What the replica is expected to hold (the mirror's own rules)."""

    excluded: Excluder | None = None
    delete_excluded: bool = False
    modify_window_ns: int = 0
    keep_owner: bool = False  # compare owners (the mirror keeps them when run as root)
    # What the replica holds (measured as a run measures it): only that is compared.
    holds: Capabilities = FULL_POSIX

    @property
    def window_ns(self) -> int:
        return time_window(PlanRules(modify_window_ns=self.modify_window_ns, holds=self.holds))


def rules_for(options: MirrorOptions, logs_in_source: str | None = None) -> VerifyRules:
    excluder = Excluder(options.exclude, [logs_in_source] if logs_in_source else [])
    return VerifyRules(
        excluded=excluder if excluder else None,
        delete_excluded=options.delete_excluded,
        modify_window_ns=options.modify_window_ns,
        keep_owner=hasattr(os, "geteuid") and os.geteuid() == 0,  # Windows: no owners
    )


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _shown(path: str, kind: Kind) -> str:
    return (escape(path) if path else ".") + ("/" if kind is Kind.DIR else "")


def _time(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds):%Y-%m-%d %H:%M:%S}.{rest:09d}"


class _Side(Protocol):
    """One side of the comparison: a local folder, or a replica on a server."""

    def list(self, rel: str) -> Listing: ...

    def root(self) -> Meta: ...

    def digest(self, rel: str, name: str, read: Callable[[int], None]) -> bytes:
        """BLAKE2b of file ``rel/name``; ``read`` is told each chunk's size."""
        ...


class _Local:
    """A local folder, read as the mirror reads it (never following a link)."""

    def __init__(self, folders: Folders) -> None:
        self.folders = folders

    def list(self, rel: str) -> Listing:
        return self.folders.list(rel)

    def root(self) -> Meta:
        meta = self.folders.lookup("")
        if meta is None:
            raise FileNotFoundError(errno.ENOENT, "the folder is gone")
        return meta

    def digest(self, rel: str, name: str, read: Callable[[int], None]) -> bytes:
        import hashlib  # only a verification pays for it

        # The access time stays as it was where the system allows it.
        fd = self.folders.open_read(_join(rel, name))
        try:
            digest = hashlib.blake2b(digest_size=32)
            while chunk := os.read(fd, CHUNK):
                digest.update(chunk)
                read(len(chunk))
            return digest.digest()
        finally:
            os.close(fd)


class _Remote:
    """A replica on a server: listed from its folder listings, each file read back over SFTP."""

    def __init__(self, replica: SftpReplica) -> None:
        self.replica = replica

    def list(self, rel: str) -> Listing:
        return self.replica.list(rel)

    def root(self) -> Meta:
        meta = self.replica.lookup("")
        if meta is None:
            raise FileNotFoundError(errno.ENOENT, "the replica folder is gone", str(self.replica.location))
        return meta

    def digest(self, rel: str, name: str, read: Callable[[int], None]) -> bytes:
        digest, size = self.replica.digest(rel, name)
        read(size)
        return digest


@dataclass(frozen=True)
class _Frame:
    """A folder being compared: both listings, and the names still to compare."""

    rel: str
    src: Listing
    rep: Listing
    names: Iterator[str]


class _Verifier:
    def __init__(
        self,
        report: VerifyReport,
        rules: VerifyRules,
        emit: Emit,
        progress: Progress | None,
    ) -> None:
        self.report = report
        self.rules = rules
        self.emit = emit
        self.progress = progress

    def found(self, kind: str, path: str, detail: str = "") -> None:
        difference = Difference(kind, path, detail)
        self.report.counts[kind] += 1
        if len(self.report.differences) < MAX_KEPT:
            self.report.differences.append(difference)
        self.emit(difference.line)

    def advance(self, entries: int, nbytes: int) -> None:
        if self.progress is not None:
            self.progress.advance(entries, nbytes)

    def digest(self, side: _Side, rel: str, name: str, counted: bool) -> bytes:
        """BLAKE2b of file ``name``, read in chunks; ``counted``: the bytes drive the progress bar."""

        def read(size: int) -> None:
            self.report.bytes_read += size
            if counted:
                self.advance(0, size)

        return side.digest(rel, name, read)

    def metadata(self, path: str, s: Meta, r: Meta) -> None:
        problems = []
        holds = self.rules.holds
        if s.kind is not Kind.LINK and s.mode != r.mode and holds.permissions:
            problems.append(mode_difference(s.mode, r.mode))
        if (s.kind is not Kind.LINK or holds.link_times) and not same_time(
            s.mtime_ns, r.mtime_ns, self.rules.window_ns
        ):
            problems.append(f"modified {_time(s.mtime_ns)} in the source, {_time(r.mtime_ns)} in the replica")
        if self.rules.keep_owner and (s.uid, s.gid) != (r.uid, r.gid):
            problems.append(f"owner {s.uid}:{s.gid} in the source, {r.uid}:{r.gid} in the replica")
        if problems:
            self.found("metadata", _shown(path, s.kind), "; ".join(problems))

    def file(self, src: _Side, rep: _Side, rel: str, name: str, s: Meta, r: Meta) -> None:
        path = _join(rel, name)
        shown = _shown(path, Kind.FILE)
        if s.size != r.size:
            self.advance(0, s.size)
            self.found("content", shown, f"size {s.size} in the source, {r.size} in the replica")
            return
        before = self.report.bytes_read
        try:
            left = self.digest(src, rel, name, counted=True)
        except OSError as error:
            self.advance(0, max(0, s.size - (self.report.bytes_read - before)))
            self.found("failed", shown, f"cannot read it in the source: {describe(error)}")
            return
        try:
            right = self.digest(rep, rel, name, counted=False)
        except OSError as error:
            self.found("failed", shown, f"cannot read it in the replica: {describe(error)}")
            return
        if left != right:
            same = same_time(s.mtime_ns, r.mtime_ns, self.rules.window_ns)
            self.found(
                "content",
                shown,
                f"bytes differ{', same size and time' if same else ''} "
                f"(blake2b {left.hex()[:16]}... in the source, {right.hex()[:16]}... in the replica)",
            )
            return
        self.metadata(path, s, r)

    def open_folder(self, src: _Side, rep: _Side, rel: str) -> _Frame | None:
        """List folder ``rel`` on both sides; None (and a FAILED line) if either cannot be read."""
        listings: list[Listing] = []
        for side, tree in (("source", src), ("replica", rep)):
            try:
                listings.append(tree.list(rel))
            except OSError as error:
                self.found(
                    "failed", _shown(rel, Kind.DIR), f"cannot read the {side} folder: {describe(error)}"
                )
                return None
        src_list, rep_list = listings
        names = set(src_list.entries) | set(rep_list.entries) | set(src_list.errors) | set(rep_list.errors)
        return _Frame(rel, src_list, rep_list, iter(sorted(names)))

    def entry(self, src: _Side, rep: _Side, frame: _Frame, name: str) -> bool:
        """Compare entry ``name`` of the frame's folder; True if it is a folder to descend into."""
        rel, src_list, rep_list = frame.rel, frame.src, frame.rep
        path = _join(rel, name)
        s, r = src_list.entries.get(name), rep_list.entries.get(name)
        if not rel and name == LOCK_NAME:
            return False  # the run lock's file (Windows): never mirrored, never deleted
        for side, listing in (("source", src_list), ("replica", rep_list)):
            if name in listing.errors:
                self.found("failed", escape(path), f"cannot read it in the {side}: {listing.errors[name]}")
                return False
        if s is not None:
            if self.rules.excluded is not None and self.rules.excluded(path, s.kind is Kind.DIR):
                s = None  # left out: its replica counterpart is judged alone
            elif (
                s.kind is Kind.SPECIAL
                or name.startswith(TEMP_PREFIX)
                or (s.kind is Kind.LINK and not self.rules.holds.symlinks)
            ):
                return False  # never mirrored; a counterpart is left alone too
        if s is None:
            if r is not None:
                self.replica_only(path, name, r)
            return False
        if r is None:
            self.advance(1, s.size if s.kind is Kind.FILE else 0)
            self.found("missing", _shown(path, s.kind))
            return False
        return self.same(src, rep, rel, name, s, r)

    def replica_only(self, path: str, name: str, r: Meta) -> None:
        if name.startswith(TEMP_PREFIX) and r.kind in (Kind.FILE, Kind.LINK):
            self.found("extra", escape(path), "leftover temporary of an interrupted run")
            return
        excluded = self.rules.excluded
        if excluded is not None and not self.rules.delete_excluded and excluded(path, r.kind is Kind.DIR):
            return  # an excluded entry the mirror keeps
        self.found("extra", _shown(path, r.kind))

    def same(self, src: _Side, rep: _Side, rel: str, name: str, s: Meta, r: Meta) -> bool:
        """Compare one entry present on both sides; True if it is a folder to descend into."""
        self.report.compared += 1
        path = _join(rel, name)
        try:
            if s.kind is not r.kind:
                self.found(
                    "content",
                    escape(path),
                    f"{KIND_NAMES[s.kind]} in the source, {KIND_NAMES[r.kind]} in the replica",
                )
                self.advance(0, s.size if s.kind is Kind.FILE else 0)
                return False
            if s.kind is Kind.DIR:
                self.metadata(path, s, r)
                return True
            if s.kind is Kind.LINK:
                if s.target != r.target:
                    self.found(
                        "content",
                        escape(path),
                        f"link to {escape(s.target or '')!r} in the source, "
                        f"to {escape(r.target or '')!r} in the replica",
                    )
                else:
                    self.metadata(path, s, r)
                return False
            self.file(src, rep, rel, name, s, r)
            return False
        finally:
            self.advance(1, 0)


def _totals(src: _Side, rules: VerifyRules) -> tuple[int, int]:
    """(entries, bytes) of the source that a verification reads: the progress bar's totals."""
    entries = size = 0
    pending = [""]
    while pending:
        rel = pending.pop()
        try:
            listing = src.list(rel)
        except OSError:
            continue
        for name, meta in listing.entries.items():
            path = _join(rel, name)
            if meta.kind is Kind.SPECIAL or name.startswith(TEMP_PREFIX):
                continue
            if meta.kind is Kind.LINK and not rules.holds.symlinks:
                continue
            if rules.excluded is not None and rules.excluded(path, meta.kind is Kind.DIR):
                continue
            entries += 1
            if meta.kind is Kind.FILE:
                size += meta.size
            elif meta.kind is Kind.DIR:
                pending.append(path)
    return entries, size


def verify_trees(
    source: str,
    replica: str | SftpReplica,
    rules: VerifyRules,
    *,
    emit: Emit,
    progress: ProgressFactory | None = None,
) -> VerifyReport:
    """Compare the resolved folder ``source`` with ``replica``; emit a line per difference.

    ``replica`` is a resolved local folder, or a replica on a server, locked
    and open. The first line says what is compared and the last is the
    ``SUMMARY``. A folder that cannot be read is a ``FAILED`` line and the
    rest goes on.
    """
    started = time.monotonic()
    shown = replica if isinstance(replica, str) else replica.url
    report = VerifyReport(source, shown)
    emit(f"VERIFY source={escape(source)} replica={escape(shown)}")
    trees = [open_folders(source)]
    bar = None
    try:
        src: _Side = _Local(trees[0])
        rep: _Side
        if isinstance(replica, str):
            trees.append(open_folders(replica))
            rep = _Local(trees[1])
            holds = _measure(replica, as_root=rules.keep_owner)
        else:
            rep = _Remote(replica)
            holds = replica.measure(as_root=rules.keep_owner)
        rules = replace(rules, keep_owner=rules.keep_owner and holds.owners, holds=holds)
        if progress is not None:
            bar = progress(*_totals(src, rules))
        verifier = _Verifier(report, rules, emit, bar)
        # The roots' own permissions and times are mirrored too.
        verifier.metadata("", src.root(), rep.root())
        # Depth first in name order, so that the lines come in tree order; one
        # frame (both listings) per level of depth is all that is held.
        root = verifier.open_folder(src, rep, "")
        frames = [root] if root is not None else []
        while frames:
            frame = frames[-1]
            name = next(frame.names, None)
            if name is None:
                frames.pop()
            elif verifier.entry(src, rep, frame, name):
                below = verifier.open_folder(src, rep, _join(frame.rel, name))
                if below is not None:
                    frames.append(below)
    finally:
        if bar is not None:
            bar.close()
        for tree in trees:
            tree.close()
    report.seconds = time.monotonic() - started
    emit(report.summary())
    return report


def run_verify(
    source: str | os.PathLike[str],
    replica: str | os.PathLike[str],
    options: MirrorOptions,
    *,
    logpath: str | os.PathLike[str] | None = None,
    console: TextIO | None = None,
    progress: bool = False,
) -> VerifyReport:
    """Check the pair as a run would, take its lock, and verify it (what the faces call).

    Raises :class:`~synchro.errors.ConfigError` for a bad pair and
    :class:`~synchro.errors.ReplicaLocked` while a run writes the replica
    (its differences would be noise). ``console`` gets the lines (None:
    quiet); ``progress`` draws a bar on it (the caller checks for a terminal).
    """
    roots = check_roots(source, replica, log_dir(logpath) if logpath is not None else None)
    stream: TextIO | None = console
    factory: ProgressFactory | None = None
    if progress and console is not None:
        from ..faces.progress import BarConsole  # tqdm only when a bar is drawn

        bars = BarConsole(console)
        factory = bars
        stream = bars  # type: ignore[assignment]  # write and flush are all it needs

    def emit(line: str) -> None:
        nonlocal stream
        if stream is not None:
            try:
                stream.write(line + "\n")
                stream.flush()
            except OSError:
                # A console that went away (``| head``) ends the output, not the verification.
                stream = None

    if roots.replica.startswith("s3://"):
        from ..endpoints.s3.readback import verify_bucket  # only an s3:// pair needs boto3

        rules = rules_for(options, roots.logs_in_source)
        from ..endpoints.s3.replica import S3Replica

        holds = S3Replica(roots.replica).measure(as_root=False)
        return verify_bucket(
            roots.source, roots.replica, replace(rules, holds=holds), profile=options.s3_profile, emit=emit
        )
    rules = rules_for(options, roots.logs_in_source)
    if is_remote(roots.replica):
        return _verify_remote(roots.source, roots.replica, options, rules, emit, factory)
    with replica_at(roots.replica).lock():
        return verify_trees(roots.source, roots.replica, rules, emit=emit, progress=factory)


def _measure(replica: str, *, as_root: bool) -> Capabilities:
    """What the local replica folder holds, measured as a run measures it (by its endpoint)."""
    endpoint = replica_at(replica)
    endpoint.open()
    try:
        return endpoint.measure(as_root=as_root)
    finally:
        endpoint.close()


def _verify_remote(
    source: str,
    url: str,
    options: MirrorOptions,
    rules: VerifyRules,
    emit: Emit,
    progress: ProgressFactory | None,
) -> VerifyReport:
    """Verify a replica on a server, under its run lock there (times compared at the step it keeps)."""
    from ..endpoints.sftp.replica import SftpReplica  # only a remote pair loads asyncssh

    replica = SftpReplica(url, timeout=options.timeout)
    with replica.lock():
        replica.open()
        try:
            return verify_trees(source, replica, rules, emit=emit, progress=progress)
        finally:
            replica.close()
