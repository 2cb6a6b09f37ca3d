"""The result of one mirror cycle: one object instead of a pile of counters."""

from __future__ import annotations

from ..errors import ExitCode

# How many paths of each kind (added, overwritten, deleted) a report keeps:
# a first copy of a million files would otherwise hold a million strings
# (some 80 MiB) to the end of the run. Past it the paths are only counted;
# the log has every line.
PATHS_KEPT = 10_000


class Report:
    """What a cycle did. Paths are relative to the replica, folders end with ``/``.

    ``added``, ``overwritten`` and ``deleted`` keep the first
    :data:`PATHS_KEPT` paths of their kind; :attr:`counts` counts all of
    them (the paths past the cap are in the log). ``untouched`` lists paths only when the run was verbose (a large tree
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
        "added_unlisted",
        "bytes_copied",
        "deleted",
        "deleted_unlisted",
        "dry_run",
        "exit_code",
        "failed",
        "message",
        "overwritten",
        "overwritten_unlisted",
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
        # Paths past PATHS_KEPT: counted, not kept.
        self.added_unlisted = self.overwritten_unlisted = self.deleted_unlisted = 0
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
            "added": len(self.added) + self.added_unlisted,
            "overwritten": len(self.overwritten) + self.overwritten_unlisted,
            "deleted": len(self.deleted) + self.deleted_unlisted,
            "untouched": self.untouched_count,
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "vanished": len(self.vanished),
        }

    def note_added(self, path: str) -> None:
        if len(self.added) < PATHS_KEPT:
            self.added.append(path)
        else:
            self.added_unlisted += 1

    def note_overwritten(self, path: str) -> None:
        if len(self.overwritten) < PATHS_KEPT:
            self.overwritten.append(path)
        else:
            self.overwritten_unlisted += 1

    def note_deleted(self, path: str) -> None:
        if len(self.deleted) < PATHS_KEPT:
            self.deleted.append(path)
        else:
            self.deleted_unlisted += 1

    def absorb(self, part: Report) -> None:
        """Add the outcome of a part of the same cycle (see :mod:`synchro.pipeline.helper`)."""
        self.added_unlisted += _extend_capped(self.added, part.added) + part.added_unlisted
        self.overwritten_unlisted += (
            _extend_capped(self.overwritten, part.overwritten) + part.overwritten_unlisted
        )
        self.deleted_unlisted += _extend_capped(self.deleted, part.deleted) + part.deleted_unlisted
        self.untouched.extend(part.untouched)
        self.untouched_count += part.untouched_count
        self.failed.extend(part.failed)
        self.skipped.extend(part.skipped)
        self.vanished.extend(part.vanished)
        self.bytes_copied += part.bytes_copied
        self.unlogged += part.unlogged

    @property
    def changed(self) -> int:
        counts = self.counts
        return counts["added"] + counts["overwritten"] + counts["deleted"]

    def summary(self) -> str:
        counts = " ".join(f"{name}={value}" for name, value in self.counts.items())
        dry = " (dry run: nothing changed)" if self.dry_run else ""
        unlogged = f" (up to {self.unlogged} changes have no line in this log)" if self.unlogged else ""
        return (
            f"SUMMARY {counts} bytes={self.bytes_copied} "
            f"seconds={self.seconds:.3f} exit={int(self.exit_code)}{dry}{unlogged}"
        )


def _extend_capped(paths: list[str], more: list[str]) -> int:
    """Extend ``paths`` with ``more`` up to PATHS_KEPT; return how many did not fit."""
    room = max(0, PATHS_KEPT - len(paths))
    paths.extend(more[:room])
    return max(0, len(more) - room)
