"""What a replica can hold: one record per run, read by the planner and the applier.

A replica on ext4 or tmpfs holds everything the source has; a USB drive
formatted exFAT or FAT32 holds no owners, no permission bits and no links,
keeps times to a step (10 ms, 1 s or 2 s), and does not tell ``A.txt`` from
``a.txt``; an SSH server keeps times to the second; an object store keeps
no folders or owners of its own. Each endpoint says so once, at the start
of a run, in a :class:`Capabilities` record (the local one by measuring the
folder, see :mod:`synchro.endpoints.local.probe`), and the pipeline
compares and sets only what the record says is kept, instead of asking
which kind of replica it talks to. rclone's per-backend ``Features`` and
``Precision()`` are the model.

>>> exfat = FULL_POSIX._replace(fs_type="exfat", owners=False, permissions=False,
...                             time_precision_ns=10**9)
>>> exfat.cannot_keep()
['owners', 'permissions', 'exact times (1 s)']
>>> FULL_POSIX.cannot_keep()
[]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

# What Windows refuses in a name, and with it exFAT and FAT (and NTFS as
# Windows writes it): the printable ones, then the control characters.
WINDOWS_PRINTABLE = '"*:<>?\\|'
WINDOWS_FORBIDDEN = WINDOWS_PRINTABLE + "".join(map(chr, range(1, 32)))
# Names Windows gives to devices, in any case and with any extension
# ("con.txt" is the console too), and whose trailing dot or space it drops.
WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in [*"123456789", "\u00b9", "\u00b2", "\u00b3"]]
)


class Capabilities(NamedTuple):
    """What a replica's file system can hold, as this run can use it.

    Times: two modification times are the same on this replica when they
    differ by less than :attr:`time_precision_ns` (a file system that keeps
    whole seconds truncates 12.7 s to 12 s; FAT may also round up).
    """

    fs_type: str  # for messages: "ext4", "tmpfs", "exfat", "vfat", "fuse.sshfs"...
    owners: bool = True  # a file's uid/gid can be set (by root) and sticks
    permissions: bool = True  # chmod round-trips the permission bits exactly
    symlinks: bool = True  # symbolic links can be made
    link_times: bool = True  # a link's own times can be set (utime without following it)
    special_files: bool = True  # FIFOs can be made (synchro copies none; for the record)
    time_precision_ns: int = 1  # the step of the modification times it keeps
    case_sensitive: bool = True  # "A.txt" and "a.txt" are two names
    max_name_bytes: int = 255  # the longest name component, in bytes (statvfs f_namemax)
    forbidden_chars: str = ""  # characters a name cannot hold (besides "/" and NUL)
    times: bool = True  # modification times can be set at all (not the owner: they cannot)
    utf8_only: bool = False  # a name that is not valid UTF-8 is refused (exFAT, FAT)
    windows_names: bool = False  # device names (CON, NUL, COM1...) and trailing dots or spaces refused

    def cannot_keep(self, source: Capabilities | None = None) -> list[str]:
        """What a mirror onto this replica loses, in words for the run's one WARNING line.

        ``source``: what the source's side cannot have either (on Windows, no
        tree holds ``CON`` or two names that differ in case): not a loss.
        """
        if source is not None:
            already = set(source.cannot_keep())
            return [word for word in self.cannot_keep() if word not in already]
        lost: list[str] = []
        if not self.owners:
            lost.append("owners")
        if not self.permissions:
            lost.append("permissions")
        if not self.symlinks:
            lost.append("symbolic links")
        elif not self.link_times:
            lost.append("the times of symbolic links")
        if not self.times:
            lost.append("modification times")
        elif self.time_precision_ns > 1:
            lost.append(f"exact times ({step_words(self.time_precision_ns)})")
        if not self.case_sensitive:
            lost.append("names that differ only in case")
        if self.forbidden_chars:
            lost.append(f"names with {chars_words(self.forbidden_chars)}")
        if self.utf8_only:
            lost.append("names that are not UTF-8")
        if self.windows_names:
            lost.append("names Windows reserves")
        return lost

    @property
    def holds_every_name(self) -> bool:
        """No name a Linux source can have is refused (so :meth:`name_problem` need not be asked)."""
        return (
            not self.forbidden_chars
            and not self.utf8_only
            and not self.windows_names
            and self.max_name_bytes >= 255
        )

    def name_key(self, name: str) -> str:
        """The key under which this replica files ``name``: equal keys are one name here.

        Case-insensitive file systems fold with their own upper-case table
        (exFAT keeps one on the volume); upper-casing character by character
        folds at least what they fold (``É``/``é``, ``Σ``/``ς``), and a few
        pairs more (dotless i and ``I``): a name taken for another one fails
        visibly, which is the safe side of getting it wrong.
        """
        if self.case_sensitive:
            return name
        upper = name.upper()
        if len(upper) == len(name):
            return upper
        # "ß".upper() is "SS": one character becomes two, which no file
        # system's table does; keep such characters as they are.
        return "".join(c if len(u := c.upper()) != 1 else u for c in name)

    def name_problem(self, name: str) -> str | None:
        """Why this replica cannot hold a name, or None when it can."""
        if self.forbidden_chars:
            bad = [c for c in dict.fromkeys(name) if c in self.forbidden_chars]
            if bad:
                return f"the replica's file system ({self.fs_type}) cannot hold {chars_words(''.join(bad))} in a name"
        if self.windows_names:
            reserved = windows_reserved(name)
            if reserved:
                return f"the replica's file system ({self.fs_type}) cannot hold {reserved}"
        try:
            encoded = name.encode("utf-8")
        except UnicodeEncodeError:
            # A name read from a POSIX folder that is not valid UTF-8 comes
            # back with surrogate escapes, which do not encode strictly.
            if self.utf8_only:
                return f"the replica's file system ({self.fs_type}) cannot hold a name that is not UTF-8"
            encoded = name.encode("utf-8", "surrogateescape")
        if len(encoded) > self.max_name_bytes:
            return (
                f"the name is longer than the replica's file system ({self.fs_type}) can hold "
                f"({len(encoded)} bytes, at most {self.max_name_bytes})"
            )
        return None


# What an ext4, XFS, Btrfs or tmpfs replica holds: everything, exactly.
FULL_POSIX = Capabilities("posix")
# What no tree on Windows holds, whatever its file system: owners as POSIX
# has them, names that differ only in case or that Windows refuses, times
# finer than NTFS's 100 ns (the source of a Windows run cannot have them).
WINDOWS_NATIVE = Capabilities(
    "ntfs",
    owners=False,
    case_sensitive=False,
    time_precision_ns=100,
    forbidden_chars=WINDOWS_FORBIDDEN,
    windows_names=True,
)


def windows_reserved(name: str) -> str | None:
    """Why Windows cannot hold ``name`` (a device name, a trailing dot or space), or None.

    >>> windows_reserved("con.txt"), windows_reserved("notes. "), windows_reserved("icon.txt")
    ('a device name (CON)', 'a name ending in a dot or a space', None)
    """
    if name.endswith((".", " ")):
        return "a name ending in a dot or a space"
    stem = name.split(".", 1)[0].rstrip(" ").upper()
    if stem in WINDOWS_DEVICES:
        return f"a device name ({stem})"
    return None


def step_words(ns: int) -> str:
    """A time step in words: 1 s, 2 s, 10 ms, 100 ns."""
    for unit, size in (("s", 10**9), ("ms", 10**6), ("µs", 10**3)):
        if ns >= size and ns % size == 0:
            return f"{ns // size} {unit}"
    return f"{ns} ns"


def chars_words(chars: str) -> str:
    """Characters in words, control characters named as such: ``: ? or control characters``."""
    shown = [c for c in chars if c.isprintable()]
    words = " ".join(shown)
    if len(shown) < len(chars):
        words = f"{words} or control characters" if words else "control characters"
    return words


# How a probe measures the step of the times a file system keeps: an even
# second well inside every file system's range (FAT: 1980-2107), then a time
# with a fraction that no step keeps, then an odd second (FAT keeps even ones
# only).
PROBE_BASE_NS = 1_600_000_000 * 10**9
_FRACTION = PROBE_BASE_NS + 1_234_567_891
_ODD_SECOND = PROBE_BASE_NS + 3 * 10**9
# The steps file systems keep times in: ns (ext4, tmpfs), 100 ns (NTFS),
# µs, ms, 10 ms (exFAT), 1 s (exfat-fuse, SFTP), 2 s (FAT).
_STEPS = (1, 100, 10**3, 10**6, 10**7, 10**9, 2 * 10**9)


def time_step(set_time: Callable[[int], None], get_time: Callable[[], int]) -> int | None:
    """The step of the times kept, measured by setting and reading back two
    times; None when times cannot be set (or do not stick)."""
    try:
        set_time(_FRACTION)
        first = get_time()
        if first == _FRACTION:
            return 1
        set_time(_ODD_SECOND)
        second = get_time()
    except OSError:
        return None
    worst = max(abs(first - _FRACTION), abs(second - _ODD_SECOND))
    return next((step for step in _STEPS if worst < step), None)
