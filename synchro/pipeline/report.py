"""The result of one mirror cycle: one object instead of a pile of counters."""

from __future__ import annotations

from ..errors import ExitCode


class Report:
    """What a cycle did. Paths are relative to the replica, folders end with ``/``.

    ``untouched`` lists paths only when the run was verbose (a large tree
    would otherwise keep every name in memory); ``untouched_count`` always
    counts them. ``unlogged`` is how many changes may have been made with
    no line in the log and no entry here: a helper process that was killed
    outright was making them (see :mod:`synchro.pipeline.helper`); such a run exits 1.
    """

    # A plain class, not a dataclass: importing ``dataclasses`` and running
    # it for the records the command needs cost about 40 ms of each of its
    # starts (benchmarks/README.md). Modules the command does not load at
    # start (config, runner, verify, versions...) keep their dataclasses.
    __slots__ = (
        "added",
        "bytes_copied",
        "deleted",
        "dry_run",
        "exit_code",
        "failed",
        "message",
        "overwritten",
        "replica",
        "seconds",
        "skipped",
        "source",
        "unlogged",
        "untouched",
        "untouched_count",
        "vanished",
    )

    def __init__(
        self,
        source: str,
        replica: str,
        dry_run: bool = False,
        *,
        exit_code: ExitCode = ExitCode.OK,
        message: str = "",  # why the cycle was refused or stopped, if it was
    ) -> None:
        self.source = source
        self.replica = replica
        self.dry_run = dry_run
        self.added: list[str] = []
        self.overwritten: list[str] = []
        self.deleted: list[str] = []
        self.untouched: list[str] = []
        self.untouched_count = 0
        self.failed: list[tuple[str, str]] = []
        self.skipped: list[tuple[str, str]] = []
        self.vanished: list[str] = []
        self.bytes_copied = 0
        self.unlogged = 0
        self.seconds = 0.0
        self.exit_code = exit_code
        self.message = message

    def __repr__(self) -> str:
        return f"Report({self.source!r}, {self.replica!r}, {self.summary()!r})"

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
        """Add the outcome of a part of the same cycle (see :mod:`synchro.pipeline.helper`)."""
        self.added.extend(part.added)
        self.overwritten.extend(part.overwritten)
        self.deleted.extend(part.deleted)
        self.untouched.extend(part.untouched)
        self.untouched_count += part.untouched_count
        self.failed.extend(part.failed)
        self.skipped.extend(part.skipped)
        self.vanished.extend(part.vanished)
        self.bytes_copied += part.bytes_copied
        self.unlogged += part.unlogged

    @property
    def changed(self) -> int:
        return len(self.added) + len(self.overwritten) + len(self.deleted)

    def summary(self) -> str:
        counts = " ".join(f"{name}={value}" for name, value in self.counts.items())
        dry = " (dry run: nothing changed)" if self.dry_run else ""
        unlogged = f" (up to {self.unlogged} changes have no line in this log)" if self.unlogged else ""
        return (
            f"SUMMARY {counts} bytes={self.bytes_copied} "
            f"seconds={self.seconds:.3f} exit={int(self.exit_code)}{dry}{unlogged}"
        )
