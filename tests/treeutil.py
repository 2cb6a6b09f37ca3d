"""Helpers for the tests: build trees, snapshot them, compare them, read the log.

Trees are described by nested dicts (``{name: content}``): ``bytes``/``str``
content is a file, a dict is a folder, :class:`Link` a symlink. Names may be
``bytes`` (for names that are not UTF-8); everything is done with ``os``
functions on bytes paths.

A snapshot walks a tree relative to folder descriptors, never following
links, so that it works for trees deeper than ``PATH_MAX`` and records what
a user would check: type, permission bits, modification time in
nanoseconds, owner, the bytes of files and the target text of links.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import NamedTuple, Union

# A fixed, clearly-not-now base time: tests set every time they compare.
BASE_NS = 1_600_000_000_123_456_789
SECOND = 1_000_000_000

StrPath = Union[str, bytes, "os.PathLike[str]"]


@dataclass(frozen=True)
class Link:
    target: str | bytes


Node = Union[bytes, str, "Tree", Link]
Tree = Mapping[str | bytes, Node]


def b(path: StrPath) -> bytes:
    return os.fsencode(path)


def join(*parts: StrPath) -> bytes:
    return os.path.join(*(b(part) for part in parts))


def build(root: StrPath, tree: Tree, *, mtime_ns: int | None = None) -> None:
    """Create ``tree`` inside the existing folder ``root``.

    With ``mtime_ns`` every entry (and the root) gets that modification time,
    folders last, so that the tree is fully reproducible.
    """
    root_b = b(root)
    stack: list[tuple[bytes, Tree]] = [(root_b, tree)]
    folders: list[bytes] = [root_b]
    while stack:
        folder, entries = stack.pop()
        for name, node in entries.items():
            path = join(folder, name)
            if isinstance(node, Link):
                os.symlink(b(node.target), path)
            elif isinstance(node, (bytes, str)):
                write(path, node)
            else:
                os.mkdir(path)
                folders.append(path)
                stack.append((path, node))
            if mtime_ns is not None and not isinstance(node, Mapping):
                os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
    if mtime_ns is not None:
        for folder in reversed(folders):  # children before parents
            os.utime(folder, ns=(mtime_ns, mtime_ns))


def write(path: StrPath, data: bytes | str, mtime_ns: int | None = None, mode: int | None = None) -> None:
    """(Re)write a file; ``mtime_ns`` sets its time (never sleep to change a time)."""
    with open(b(path), "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        os.chmod(b(path), mode)
    if mtime_ns is not None:
        os.utime(b(path), ns=(mtime_ns, mtime_ns))


def set_mtime(path: StrPath, mtime_ns: int) -> None:
    os.utime(b(path), ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def clear(folder: StrPath) -> None:
    """Empty a folder (keep the folder itself)."""
    for name in os.listdir(b(folder)):
        path = join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


class Entry(NamedTuple):
    kind: str  # "file", "dir", "link", "fifo", "other"
    mode: int  # permission bits (0 for links)
    mtime_ns: int
    uid: int
    gid: int
    data: bytes | None  # file bytes or link target text; None for folders and specials


Snapshot = dict[bytes, Entry]


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "other"


def _entry(st: os.stat_result, data: bytes | None) -> Entry:
    kind = _kind(st.st_mode)
    mode = 0 if kind == "link" else stat.S_IMODE(st.st_mode)
    return Entry(kind, mode, st.st_mtime_ns, st.st_uid, st.st_gid, data)


def snapshot(root: StrPath, *, content: bool = True) -> Snapshot:
    """Every entry below ``root`` by relative bytes path (``b"."`` is the root)."""
    snap: Snapshot = {}
    root_fd = os.open(b(root), os.O_RDONLY | os.O_DIRECTORY)
    snap[b"."] = _entry(os.fstat(root_fd), None)
    stack: list[tuple[bytes, int]] = [(b"", root_fd)]
    while stack:
        rel, fd = stack.pop()
        try:
            for name in os.listdir(fd):
                name_b = os.fsencode(name)
                path = rel + b"/" + name_b if rel else name_b
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                data: bytes | None = None
                if stat.S_ISREG(st.st_mode) and content:
                    file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
                    with os.fdopen(file_fd, "rb") as handle:
                        data = handle.read()
                elif stat.S_ISLNK(st.st_mode):
                    data = os.fsencode(os.readlink(name, dir_fd=fd))
                elif stat.S_ISDIR(st.st_mode):
                    stack.append(
                        (path, os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd))
                    )
                snap[path] = _entry(st, data)
        finally:
            os.close(fd)
    return snap


def diff(left: Snapshot, right: Snapshot, *, ignore: Iterable[StrPath] = ()) -> list[str]:
    """Readable differences between two snapshots (empty: same trees)."""
    skip = {b(path) for path in ignore}
    lines = []
    for path in sorted(set(left) | set(right)):
        if path in skip or any(path.startswith(prefix + b"/") for prefix in skip):
            continue
        a, z = left.get(path), right.get(path)
        if a == z:
            continue
        if a is None or z is None:
            lines.append(f"{path!r}: only in {'right' if a is None else 'left'}")
            continue
        fields = [
            f"{field}: {x!r} != {y!r}" for field, x, y in zip(Entry._fields, a, z, strict=True) if x != y
        ]
        lines.append(f"{path!r}: " + "; ".join(fields))
    return lines


def assert_mirror(
    source: StrPath, replica: StrPath, *, ignore: Iterable[StrPath] = (), owner: bool = True
) -> None:
    """The replica holds exactly the source's entries, metadata and bytes."""
    left, right = snapshot(source), snapshot(replica)
    if not owner:
        left = {path: entry._replace(uid=0, gid=0) for path, entry in left.items()}
        right = {path: entry._replace(uid=0, gid=0) for path, entry in right.items()}
    problems = diff(left, right, ignore=ignore)
    assert not problems, "replica differs from source:\n" + "\n".join(problems[:40])


def rsync_diff(source: StrPath, replica: StrPath, *extra: str) -> list[str]:
    """What ``rsync -ani --delete --modify-window=-1`` would still change."""
    result = subprocess.run(
        ["rsync", "-ani", "--delete", "--modify-window=-1", *extra, b(source) + b"/", b(replica) + b"/"],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode(errors="backslashreplace").splitlines()


def assert_rsync_clean(source: StrPath, replica: StrPath, *extra: str) -> None:
    if shutil.which("rsync") is None:
        return  # the snapshot comparison still runs; test_property skips without rsync
    changes = rsync_diff(source, replica, *extra)
    assert changes == [], "rsync would still change:\n" + "\n".join(changes[:40])


# --- the daily log ----------------------------------------------------------

STAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} ")
SECONDS = re.compile(r" seconds=\d+\.\d{3} ")


def log_file(logpath: StrPath, day: date | None = None) -> Path:
    day = day or datetime.now().date()
    return Path(os.fsdecode(logpath)) / "LOGS" / f"LOG-{day:%Y-%m-%d}.txt"


def log_lines(logpath: StrPath, day: date | None = None) -> list[str]:
    """Whole lines of one day's log file (default: every day's file, in order)."""
    if day is not None:
        path = log_file(logpath, day)
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    folder = Path(os.fsdecode(logpath)) / "LOGS"
    lines: list[str] = []
    for path in sorted(folder.glob("LOG-*.txt")) if folder.is_dir() else []:
        lines.extend(path.read_text(encoding="utf-8").splitlines())
    return lines


def strip_stamp(line: str) -> str:
    assert STAMP.match(line), f"log line without a timestamp: {line!r}"
    return line[20:]


def normal(message: str) -> str:
    """A message with the run's duration replaced, so it can be compared exactly."""
    return SECONDS.sub(" seconds=S ", message)


def log_messages(logpath: StrPath, day: date | None = None) -> list[str]:
    """The log's messages (timestamp checked and removed, duration normalised)."""
    return [normal(strip_stamp(line)) for line in log_lines(logpath, day)]


def entries(messages: Iterable[str]) -> list[str]:
    """Only the per-entry lines of the messages (no START/SUMMARY/ONGOING...)."""
    words = ("ADDED ", "OVERWRITTEN ", "DELETED ", "FAILED ", "SKIPPED ", "VANISHED ", "UNTOUCHED ")
    return [message for message in messages if message.startswith(words)]


def summary(
    added: int = 0,
    overwritten: int = 0,
    deleted: int = 0,
    untouched: int = 0,
    failed: int = 0,
    skipped: int = 0,
    vanished: int = 0,
    nbytes: int = 0,
    code: int = 0,
    dry: bool = False,
) -> str:
    """The expected SUMMARY message (duration normalised)."""
    text = (
        f"SUMMARY added={added} overwritten={overwritten} deleted={deleted} untouched={untouched} "
        f"failed={failed} skipped={skipped} vanished={vanished} bytes={nbytes} seconds=S exit={code}"
    )
    return text + (" (dry run: nothing changed)" if dry else "")
