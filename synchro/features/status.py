"""The status file ``LOGS/status.json``: the outcome of each pair's last run.

Every run (command, API, tasks) records one :class:`RunRecord` under its
pair's name (the replica's path when it has none), and the end time of the
last successful run. The file is small and shared by every run that logs
into the same ``LOGS`` folder, so each update is a read-modify-write under a
:class:`~synchro.pipeline.lock.FileLock` (``LOGS/.status.lock``, beside what it guards) and
the new content is written to a temporary file that replaces the old one
with ``os.replace``: a reader, a crash or ``kill -9`` never sees half a file.

:func:`pair_status` turns a record into what ``inv status`` shows: how long
ago, the result, and whether the pair is *stale* (no success within twice
its interval). ``now`` is always given by the caller, so it can be injected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from contextlib import suppress
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import NamedTuple

from ..endpoints.local.flags import O_BINARY, O_CLOEXEC
from ..errors import ExitCode, SynchroError
from ..options import MIN_INTERVAL_HOURS
from ..pipeline.lock import FileLock
from ..pipeline.report import Report

STATUS_FILE = "status.json"
STATUS_LOCK = ".status.lock"
FORMAT_VERSION = 1
LOCK_TIMEOUT = 30.0  # seconds; an update holds the lock for milliseconds

# The word for each exit code, in result lines and in `inv status`.
RESULTS = {
    ExitCode.OK: "ok",
    ExitCode.FAILED: "failed",
    ExitCode.USAGE: "error",
    ExitCode.GUARD: "refused",
    ExitCode.LOCKED: "locked",
    ExitCode.INTERRUPTED: "interrupted",
    ExitCode.TERMINATED: "terminated",
}


class StatusError(SynchroError):
    """The status file could not be read or written."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"status file {os.fspath(path)}: {reason}")
        self.path = os.fspath(path)


def result_word(code: int) -> str:
    try:
        return RESULTS[ExitCode(code)]
    except ValueError:
        return f"exit {code}"


class RunRecord(NamedTuple):
    """One run as the status file keeps it. Times are aware (with their UTC offset)."""

    start: datetime
    end: datetime
    exit_code: int
    counts: Mapping[str, int] = MappingProxyType({})
    bytes_copied: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    message: str = ""
    source: str = ""
    replica: str = ""

    @classmethod
    def from_report(cls, report: Report, start: datetime, end: datetime) -> RunRecord:
        return cls(
            start=_aware(start),
            end=_aware(end),
            exit_code=int(report.exit_code),
            counts=dict(report.counts),
            bytes_copied=report.bytes_copied,
            seconds=round(report.seconds, 3),
            dry_run=report.dry_run,
            message=report.message,
            source=report.source,
            replica=report.replica,
        )

    @property
    def succeeded(self) -> bool:
        """A real run that exited 0; a dry run changes nothing, so it is no backup."""
        return self.exit_code == ExitCode.OK and not self.dry_run

    def to_json(self) -> dict[str, object]:
        return {
            "start": self.start.isoformat(timespec="seconds"),
            "end": self.end.isoformat(timespec="seconds"),
            "exit_code": self.exit_code,
            "result": result_word(self.exit_code),
            "counts": dict(self.counts),
            "bytes": self.bytes_copied,
            "seconds": self.seconds,
            "dry_run": self.dry_run,
            "message": self.message,
            "source": self.source,
            "replica": self.replica,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RunRecord:
        counts = data.get("counts", {})
        return cls(
            start=datetime.fromisoformat(str(data["start"])),
            end=datetime.fromisoformat(str(data["end"])),
            exit_code=int(str(data["exit_code"])),
            counts={str(k): int(str(v)) for k, v in counts.items()} if isinstance(counts, dict) else {},
            bytes_copied=int(str(data.get("bytes", 0))),
            seconds=float(str(data.get("seconds", 0.0))),
            dry_run=bool(data.get("dry_run", False)),
            message=str(data.get("message", "")),
            source=str(data.get("source", "")),
            replica=str(data.get("replica", "")),
        )


class PairRecord(NamedTuple):
    """What the file keeps per pair: the last run and the end of the last success."""

    last: RunRecord
    last_success: datetime | None


def _aware(moment: datetime) -> datetime:
    # The log's clock gives local naive times; the offset keeps comparisons
    # right across a DST change or a move of the machine's time zone.
    return moment if moment.tzinfo is not None else moment.astimezone()


def status_path(folder: str | os.PathLike[str]) -> str:
    """``folder`` is the ``LOGS`` folder itself."""
    return os.path.join(folder, STATUS_FILE)


def read_status(folder: str | os.PathLike[str]) -> dict[str, PairRecord]:
    """Every record in ``folder/status.json``; an absent file means no run yet."""
    path = status_path(folder)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise StatusError(path, error.strerror or str(error)) from None
    return _decode(path, text)


def _decode(path: str, text: str) -> dict[str, PairRecord]:
    try:
        data = json.loads(text)
        pairs = data["pairs"]
        records = {}
        for key, entry in pairs.items():
            success = entry.get("last_success")
            records[str(key)] = PairRecord(
                RunRecord.from_json(entry["last_run"]),
                datetime.fromisoformat(success) if success else None,
            )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StatusError(path, f"not a valid status file ({error}); delete it to start afresh") from None
    return records


def _encode(records: Mapping[str, PairRecord]) -> str:
    pairs = {
        key: {
            "last_run": record.last.to_json(),
            "last_success": record.last_success.isoformat(timespec="seconds")
            if record.last_success
            else None,
        }
        for key, record in sorted(records.items())
    }
    return json.dumps({"version": FORMAT_VERSION, "pairs": pairs}, indent=2, ensure_ascii=False) + "\n"


def record_run(folder: str | os.PathLike[str], key: str, run: RunRecord) -> PairRecord:
    """Store ``run`` as the last run of ``key`` in ``folder/status.json``; return the new record.

    The other pairs' records are kept. An unreadable (hand-edited) file is
    replaced rather than blocking every backup. Raises :class:`StatusError`.
    """
    path = status_path(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        with FileLock(os.path.join(folder, STATUS_LOCK), timeout=LOCK_TIMEOUT):
            try:
                records = read_status(folder)
            except StatusError:
                records = {}
            previous = records.get(key)
            success = run.end if run.succeeded else (previous.last_success if previous else None)
            records[key] = PairRecord(run, success)
            _write_atomically(path, _encode(records))
    except TimeoutError:  # filelock.Timeout; before OSError: a TimeoutError is one
        raise StatusError(path, f"its lock was held for more than {LOCK_TIMEOUT:g} s") from None
    except OSError as error:
        raise StatusError(path, error.strerror or str(error)) from None
    return records[key]


def _write_atomically(path: str, text: str) -> None:
    # Not tempfile.mkstemp: importing tempfile costs every run a few ms.
    # O_EXCL refuses a name taken; the status lock keeps other writers out.
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC | O_BINARY, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            # Data on disk before the rename, so a power loss leaves the old
            # file or the new one, never an empty one.
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        # Also on Ctrl+C: no temporary is left behind in LOGS.
        with suppress(OSError):
            os.unlink(temporary)
        raise


class PairStatus(NamedTuple):
    """One row of ``inv status``: a pair, its record (if any) and the verdict at ``now``."""

    name: str
    interval: float  # hours, as applied (never below the minimum)
    record: PairRecord | None
    now: datetime
    # Why the INI file gives no usable pair of this name (then nothing else is known).
    error: str = ""

    @property
    def last_run_age(self) -> timedelta | None:
        return self.now - self.record.last.end if self.record else None

    @property
    def last_success_age(self) -> timedelta | None:
        if self.record is None or self.record.last_success is None:
            return None
        return self.now - self.record.last_success

    @property
    def stale(self) -> bool:
        """No successful run within twice the interval (or none at all)."""
        age = self.last_success_age
        return age is None or age > timedelta(hours=2 * self.interval)

    def to_json(self) -> dict[str, object]:
        run_age, success_age = self.last_run_age, self.last_success_age
        return {
            "pair": self.name,
            "interval_hours": None if self.error else self.interval,
            "last_run": self.record.last.to_json() if self.record else None,
            "last_run_ago_seconds": round(run_age.total_seconds()) if run_age is not None else None,
            "last_success": (
                self.record.last_success.isoformat(timespec="seconds")
                if self.record and self.record.last_success
                else None
            ),
            "last_success_ago_seconds": round(success_age.total_seconds())
            if success_age is not None
            else None,
            "stale": self.stale,
            "error": self.error or None,
        }


def pair_status(name: str, interval: float, record: PairRecord | None, now: datetime) -> PairStatus:
    return PairStatus(name, max(interval, MIN_INTERVAL_HOURS), record, _aware(now))


def unusable_pair_status(name: str, error: str, now: datetime) -> PairStatus:
    """The row of a pair whose section of the INI file is wrong: ``error`` says how."""
    return PairStatus(name, MIN_INTERVAL_HOURS, None, _aware(now), error)


def ago(age: timedelta) -> str:
    """``age`` in words: "just now", "12 min ago", "5 h ago", "3 days ago"."""
    seconds = age.total_seconds()
    if seconds < 0:
        return "in the future (clock changed?)"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _when(moment: datetime, now: datetime) -> str:
    return f"{moment.astimezone(now.tzinfo):%Y-%m-%d %H:%M} ({ago(now - moment)})"


STATUS_COLUMNS = ("pair", "last run", "result", "added", "overwritten", "deleted", "failed", "bytes")


def format_table(rows: Iterable[PairStatus]) -> str:
    """The text of ``inv status``: one row per pair, stale ones flagged ``STALE``."""
    table = [[*STATUS_COLUMNS, "last success", ""]]
    for row in rows:
        record = row.record
        if row.error:
            table.append([row.name, "-", "config error", "", "", "", "", "", "-", "STALE"])
            continue
        if record is None:
            table.append([row.name, "never", "-", "", "", "", "", "", "never", "STALE"])
            continue
        last = record.last
        result = result_word(last.exit_code) + (" (dry run)" if last.dry_run else "")
        counts = [str(last.counts.get(key, 0)) for key in ("added", "overwritten", "deleted", "failed")]
        success = _when(record.last_success, row.now) if record.last_success else "never"
        table.append(
            [
                row.name,
                _when(last.end, row.now),
                result,
                *counts,
                human_bytes(last.bytes_copied),
                success,
                "STALE" if row.stale else "",
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    numeric = {3, 4, 5, 6, 7}
    lines = []
    for line in table:
        cells = [
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_json(rows: Iterable[PairStatus]) -> str:
    return json.dumps([row.to_json() for row in rows], indent=2, ensure_ascii=False)


def result_line(name: str, report: Report) -> str:
    """One line about one pair's run, for the end of ``backup-all`` and ``watch``."""
    word = result_word(report.exit_code) + (" (dry run)" if report.dry_run else "")
    counts = report.counts
    if report.message:
        detail = report.message
    else:
        detail = (
            f"{counts['added']} added, {counts['overwritten']} overwritten, {counts['deleted']} deleted, "
            f"{counts['failed']} failed, {human_bytes(report.bytes_copied)} copied in {report.seconds:.1f} s"
        )
    return f"{name}: {word}: {detail} (exit {int(report.exit_code)})"
