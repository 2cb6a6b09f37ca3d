"""Scan one folder of a tree, never following links.

A folder is read through an open descriptor (see :mod:`synchro.fds`), so a
folder swapped for a symlink cannot redirect the scan elsewhere. Each entry
is described by one ``lstat``: the descriptor-based ``scandir`` asks the
kernel relative to the folder, and ``follow_symlinks=False`` keeps links as
links.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple


class Kind(IntEnum):
    FILE = 1
    DIR = 2
    LINK = 3
    SPECIAL = 4  # socket, FIFO, device: never opened, never copied


class Meta(NamedTuple):
    """What the plan needs to know of one entry."""

    kind: Kind
    size: int
    mtime_ns: int
    mode: int  # permission bits only (stat.S_IMODE)
    uid: int
    gid: int
    target: str | None = None  # symlink text, for links only


def kind_of(st_mode: int) -> Kind:
    if stat.S_ISREG(st_mode):
        return Kind.FILE
    if stat.S_ISDIR(st_mode):
        return Kind.DIR
    if stat.S_ISLNK(st_mode):
        return Kind.LINK
    return Kind.SPECIAL


def meta_of(st: os.stat_result, target: str | None = None) -> Meta:
    return Meta(
        kind_of(st.st_mode),
        st.st_size,
        st.st_mtime_ns,
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        target,
    )


@dataclass
class Listing:
    """One folder's entries by name, and the names that could not be read."""

    entries: dict[str, Meta] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def describe(error: OSError) -> str:
    return error.strerror or str(error)


_KINDS = {stat.S_IFREG: Kind.FILE, stat.S_IFDIR: Kind.DIR, stat.S_IFLNK: Kind.LINK}


def list_folder(dir_fd: int) -> Listing:
    """List the folder open as ``dir_fd``.

    An entry that vanishes between ``readdir`` and ``lstat`` is simply absent
    (it is gone); any other per-entry error is recorded so that the caller
    neither copies nor deletes what it could not see.
    """
    listing = Listing()
    entries = listing.entries
    # This loop runs once per entry of both trees: it is the scan's hot path,
    # so meta_of is inlined and Meta built without its keyword handling.
    kinds, special, link = _KINDS, Kind.SPECIAL, Kind.LINK
    new, ifmt = tuple.__new__, stat.S_IFMT
    with os.scandir(dir_fd) as iterator:
        for entry in iterator:
            name = entry.name
            try:
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                kind = kinds.get(ifmt(mode), special)
                target = os.readlink(name, dir_fd=dir_fd) if kind is link else None
            except FileNotFoundError:
                continue
            except OSError as error:
                listing.errors[name] = describe(error)
                continue
            entries[name] = new(
                Meta, (kind, st.st_size, st.st_mtime_ns, mode & 0o7777, st.st_uid, st.st_gid, target)
            )
    return listing
