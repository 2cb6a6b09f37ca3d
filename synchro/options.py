"""Mirror options: one immutable record, and the parsers that build it.

The same parsers serve the command line, the Python API and the INI file,
so a value means the same thing wherever it is written.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import NamedTuple

from .errors import ConfigError
from .pipeline.exclude import Excluder

MIN_INTERVAL_HOURS = 0.25


class DeleteLimit(NamedTuple):
    """How many replica files one run may delete before the guard refuses.

    ``files`` is an absolute limit; ``percent`` a share of the replica's files
    that applies only once at least ``floor`` files would go (so a small
    replica can still lose a few files in a normal day).
    """

    files: int | None = None
    percent: float | None = 50.0
    floor: int = 10

    @property
    def unlimited(self) -> bool:
        return self.files is None and (self.percent is None or self.percent >= 100)

    def allows(self, deleted: int, total: int) -> bool:
        if self.unlimited:
            return True
        if self.files is not None:
            return deleted <= self.files
        assert self.percent is not None
        if deleted < self.floor:
            return True
        return deleted * 100 <= total * self.percent

    def __str__(self) -> str:
        if self.files is not None:
            return str(self.files)
        return f"{self.percent:g}%"


def parse_max_delete(value: object) -> DeleteLimit:
    """``N`` (files) or ``P%`` (share of the replica's files)."""
    if isinstance(value, DeleteLimit):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"max_delete: expected a number N or a percentage P%, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"max_delete: must not be negative, got {value}")
        return DeleteLimit(files=value, percent=None)
    text = str(value).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not percent >= 0 or math.isnan(percent):
                raise ValueError
            return DeleteLimit(files=None, percent=percent)
        count = int(text)
        if count < 0:
            raise ValueError
        return DeleteLimit(files=count, percent=None)
    except ValueError:
        raise ConfigError(
            f"max_delete: expected a number N or a percentage P% (e.g. 50%), got {text!r}"
        ) from None


class KeepVersions(NamedTuple):
    """Which run folders of the versions folder survive pruning.

    A run folder is kept while *any* rule keeps it (as ``restic forget
    --keep-within 30d --keep-last 10``): it is younger than ``days``, or one
    of the ``newest`` ones. A backup errs on keeping: "30d,10" still keeps
    ten versions after a month without runs. No rule: every version is kept.
    """

    days: int | None = None
    newest: int | None = None

    @property
    def forever(self) -> bool:
        return self.days is None and self.newest is None

    @property
    def max_age(self) -> timedelta | None:
        return None if self.days is None else timedelta(days=self.days)

    def __str__(self) -> str:
        parts = ([f"{self.days}d"] if self.days is not None else []) + (
            [str(self.newest)] if self.newest is not None else []
        )
        return ",".join(parts) or "all"


_KEEP_PART = re.compile(r"(\d+)(d?)")


def parse_keep_versions(value: object) -> KeepVersions:
    """``30d`` (days), ``10`` (run folders) or both, ``30d,10``; empty: keep every version."""
    if isinstance(value, KeepVersions):
        return value
    problem = (
        f"keep_versions: expected an age in days (30d), a number of runs (10) or both (30d,10), got {value!r}"
    )
    if isinstance(value, bool):
        raise ConfigError(problem)
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError(problem)
    days: int | None = None
    count: int | None = None
    for part in filter(None, (item.strip().lower() for item in value.split(","))):
        match = _KEEP_PART.fullmatch(part)
        if match is None:
            raise ConfigError(problem)
        number = int(match[1])
        if number < 1:
            raise ConfigError(f"keep_versions: {part!r} would keep nothing; give 1 or more")
        if match[2]:
            if days is not None:
                raise ConfigError(problem)
            days = number
        else:
            if count is not None:
                raise ConfigError(problem)
            count = number
    return KeepVersions(days, count)


def parse_path(name: str, value: object) -> str | None:
    """A folder option given as text or a path object; empty means none."""
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if isinstance(text, str):
            return text if text.strip() else None
    raise ConfigError(f"{name}: expected a folder path, got {value!r}")


def parse_seconds(name: str, value: object) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}")
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{name}: expected a number of seconds >= 0, got {value!r}")
    return seconds


def parse_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "yes", "true", "on"}:
        return True
    if text in {"0", "no", "false", "off", ""}:
        return False
    raise ConfigError(f"{name}: expected yes or no, got {value!r}")


def parse_patterns(value: object) -> tuple[str, ...]:
    """Exclude patterns: a string (one per line) or an iterable of strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: Iterable[object] = value.splitlines()
    elif isinstance(value, Iterable):
        items = value
    else:
        raise ConfigError(f"exclude: expected patterns, got {value!r}")
    patterns = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"exclude: expected text patterns, got {item!r}")
        if item.strip():
            patterns.append(item.strip())
    return tuple(patterns)


def pattern_warnings(patterns: Iterable[str]) -> list[str]:
    """What looks wrong in valid exclude patterns: one line each, to warn about.

    A pattern that holds ", " is almost always several patterns written as
    one (``exclude = *.tmp, *.bak``), which then matches only names that
    hold that comma and space: nothing is left out, and nothing said so.
    """
    return [
        f"exclude pattern {pattern!r} holds ', ' so it is one pattern, which leaves out only names "
        "with that comma; give one pattern per line in the INI file "
        "(exclude = then each indented on its own line), one --exclude per pattern, or a list in Python"
        for pattern in patterns
        if ", " in pattern
    ]


class MirrorOptions(NamedTuple):
    """What one mirror cycle does; built by :func:`make_options`."""

    checksum: bool = False
    exclude: tuple[str, ...] = ()
    delete_excluded: bool = False
    dry_run: bool = False
    max_delete: DeleteLimit = DeleteLimit()
    modify_window: float = 0.0
    create_replica: bool = False
    # Where replaced and deleted replica entries are kept (None: nowhere),
    # and for how long (see synchro.features.versions).
    versions: str | None = None
    keep_versions: KeepVersions = KeepVersions()
    # The AWS profile (~/.aws/config, ~/.aws/credentials) of an s3:// replica;
    # None: the standard AWS settings (AWS_PROFILE, AWS_* variables). A local
    # replica ignores it.
    s3_profile: str | None = None
    # Seconds a remote replica's server may take to answer (connect, log in,
    # or any request) before the run gives it up; a local replica ignores it.
    timeout: float = 30.0

    @property
    def modify_window_ns(self) -> int:
        return int(self.modify_window * 1_000_000_000)


OPTION_NAMES = frozenset(MirrorOptions._fields)


def make_options(**options: object) -> MirrorOptions:
    """Validate keyword options (API, command line and INI all come here)."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; known options: {', '.join(sorted(OPTION_NAMES))}")
    values: dict[str, object] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name in {"checksum", "delete_excluded", "dry_run", "create_replica"}:
            values[name] = parse_bool(name, value)
        elif name == "exclude":
            patterns = parse_patterns(value)
            Excluder(patterns)  # a bad pattern is a ConfigError now, when the pair is configured
            values[name] = patterns
        elif name == "max_delete":
            values[name] = parse_max_delete(value)
        elif name == "modify_window":
            values[name] = parse_seconds(name, value)
        elif name == "versions":
            values[name] = parse_path(name, value)
        elif name == "keep_versions":
            values[name] = parse_keep_versions(value)
        elif name == "s3_profile":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"s3_profile: expected the name of an AWS profile, got {value!r}")
            values[name] = value.strip()
        elif name == "timeout":
            seconds = parse_seconds(name, value)
            if seconds <= 0:
                raise ConfigError(f"timeout: expected a number of seconds > 0, got {value!r}")
            values[name] = seconds
    return MirrorOptions(**values)  # type: ignore[arg-type]


def parse_interval(value: object) -> float:
    """Hours between cycles; the caller raises values below the minimum."""
    if isinstance(value, bool):
        raise ConfigError(f"interval: expected a number of hours, got {value!r}")
    try:
        hours = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"interval: expected a number of hours, got {value!r}") from None
    if not math.isfinite(hours):
        raise ConfigError(f"interval: expected a number of hours, got {value!r}")
    return hours


def parse_max_cycles(value: object) -> int | None:
    """``max``: a float is rounded up; None, 0, negatives and non-numbers mean forever."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    return math.ceil(number)
