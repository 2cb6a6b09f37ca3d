"""The result of one mirror cycle: one object instead of a pile of counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ExitCode


@dataclass
class Report:
    """What a cycle did. Paths are relative to the replica, folders end with ``/``.

    ``untouched`` lists paths only when the run was verbose (a large tree
    would otherwise keep every name in memory); ``untouched_count`` always
    counts them.
    """

    source: str
    replica: str
    dry_run: bool = False
    added: list[str] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)
    untouched_count: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    seconds: float = 0.0
    exit_code: ExitCode = ExitCode.OK
    message: str = ""  # why the cycle was refused or stopped, if it was

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    @property
    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "overwritten": len(self.overwritten),
            "deleted": len(self.deleted),
            "untouched": self.untouched_count,
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "vanished": len(self.vanished),
        }

    def absorb(self, part: Report) -> None:
        """Add the outcome of a part of the same cycle (see :mod:`synchro.helper`)."""
        self.added.extend(part.added)
        self.overwritten.extend(part.overwritten)
        self.deleted.extend(part.deleted)
        self.untouched.extend(part.untouched)
        self.untouched_count += part.untouched_count
        self.failed.extend(part.failed)
        self.skipped.extend(part.skipped)
        self.vanished.extend(part.vanished)
        self.bytes_copied += part.bytes_copied

    @property
    def changed(self) -> int:
        return len(self.added) + len(self.overwritten) + len(self.deleted)

    def summary(self) -> str:
        counts = " ".join(f"{name}={value}" for name, value in self.counts.items())
        dry = " (dry run: nothing changed)" if self.dry_run else ""
        return (
            f"SUMMARY {counts} bytes={self.bytes_copied} "
            f"seconds={self.seconds:.3f} exit={int(self.exit_code)}{dry}"
        )
