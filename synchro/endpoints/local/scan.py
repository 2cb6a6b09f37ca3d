"""Scan one folder of a tree, never following links.

A folder is read through an open descriptor (see :mod:`synchro.endpoints.local.fds`), so a
folder swapped for a symlink cannot redirect the scan elsewhere. Each entry
is described by one ``lstat`` relative to that descriptor, which keeps
links as links.

That loop runs once per entry of both trees, so it exists twice: compiled
(``synchro/endpoints/local/_scan.c``, built by the install when a C compiler is at hand) and
in Python (:func:`python_list_entries`), which the tests hold to the same
results entry for entry.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

# The records of a listing belong to the seam every endpoint shares; they are
# named here too, where the local scan has always made them.
from ..base import Kind, Listing, Meta, describe
from .compiled import load

__all__ = ["Kind", "Listing", "Meta", "describe", "kind_of", "list_folder", "meta_of"]


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


def list_folder(dir_fd: int) -> Listing:
    """List the folder open as ``dir_fd``.

    An entry that vanishes between ``readdir`` and ``lstat`` is simply absent
    (it is gone); any other per-entry error is recorded so that the caller
    neither copies nor deletes what it could not see.
    """
    entries, errors = list_entries(dir_fd, Meta, _KIND_ORDER)
    return Listing(entries, errors)


EntryLister = Callable[
    [int, type[Meta], tuple[Kind, Kind, Kind, Kind]], tuple[dict[str, Meta], dict[str, str]]
]
_KIND_ORDER = (Kind.FILE, Kind.DIR, Kind.LINK, Kind.SPECIAL)


def python_list_entries(
    dir_fd: int, meta: type[Meta], kinds: tuple[Kind, Kind, Kind, Kind]
) -> tuple[dict[str, Meta], dict[str, str]]:
    """The scan's hot loop in Python: ``synchro.endpoints.local._scan.list_entries`` when that is not built.

    Returns (entries, errors): see :func:`list_folder`.
    """
    entries: dict[str, Meta] = {}
    errors: dict[str, str] = {}
    # This loop runs once per entry of both trees, so meta_of is inlined and
    # Meta built without its keyword handling.
    by_type = {stat.S_IFREG: kinds[0], stat.S_IFDIR: kinds[1], stat.S_IFLNK: kinds[2]}
    special, link = kinds[3], kinds[2]
    new, ifmt, lstat = tuple.__new__, stat.S_IFMT, os.lstat
    for name in os.listdir(dir_fd):
        try:
            st = lstat(name, dir_fd=dir_fd)
            mode = st.st_mode
            kind = by_type.get(ifmt(mode), special)
            target = os.readlink(name, dir_fd=dir_fd) if kind is link else None
        except FileNotFoundError:
            continue
        except OSError as error:
            errors[name] = describe(error)
            continue
        entries[name] = new(
            meta, (kind, st.st_size, st.st_mtime_ns, mode & 0o7777, st.st_uid, st.st_gid, target)
        )
    return entries, errors


# Compiled when the package was installed with a C compiler at hand
# (setup.py; optional): the same loop in about a third less time (what is
# left is mostly the kernel's lstat). Only a module built from the _scan.c
# beside it is used (see compiled.py).
_compiled = load("_scan")[0]
list_entries: EntryLister = python_list_entries if _compiled is None else _compiled.list_entries
