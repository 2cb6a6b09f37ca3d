"""Kept versions read back, wherever they are kept: the seam of ``restore --at`` and ``inv versions``.

A versions folder (:mod:`synchro.features.versions`) holds one run folder
per run that replaced or deleted something, and one list per run that
added something. Off this machine they are kept where the replica is
(:mod:`synchro.endpoints.sftp.versions`, :mod:`synchro.endpoints.s3.versions`),
in the same layout. What reads them back needs only two small interfaces,
which the sftp:// and s3:// endpoints provide (a local pair is read by descriptor):

- a :class:`TreeReader`, one tree (the replica, or one run folder): list a
  folder (every entry's kind, size, time, mode, owner and link text), look
  one entry up, and download a file into a local folder;
- a :class:`VersionStore`, the versions folder: the names of its run
  folders and of its lists of additions, a run folder as a tree, and the
  records of a list.

The planning of what ``restore --at`` restores (:mod:`synchro.features.restore`)
and the table of ``inv versions`` (:func:`kept_versions`) are written once
over them. :func:`open_remote` opens the pair of a replica on another
machine, for both.

Example::

    with open_remote("sftp://nas/backups/docs", "/backups/docs-versions") as pair:
        rows = kept_versions(pair.versions, "notes.txt")
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import NamedTuple, Protocol

from ..endpoints.base import Kind, Listing, Meta, describe
from ..errors import ConfigError, ExitCode, SynchroError
from ..pipeline.log import escape
from .versions import KeptVersion


class ReadBackFailed(SynchroError):
    """A replica on another machine could not be read on in the middle of a restore
    (what was restored is in place): exit 1, as for entries that failed."""

    exit_code = ExitCode.FAILED


class TreeReader(Protocol):
    """One tree read back: ``""`` is its root, paths are ``/``-separated; nothing is followed."""

    def list(self, folder: str) -> Listing:
        """The entries of ``folder`` (OSError: it cannot be listed)."""
        ...

    def lookup(self, path: str) -> Meta | None:
        """The entry at ``path`` (``""``: the root), or None where there is none."""
        ...

    def download(self, folder: str, name: str, target_dir: int, *, keep_owner: bool) -> int:
        """Copy file ``folder/name`` into the local folder descriptor ``target_dir`` (a temporary
        name renamed over ``name``), with its mode and time (and owner); return its size."""
        ...


class Listed:
    """A :class:`TreeReader` whose folders are each listed once: a restore plans its tree twice
    (what it would replace, then what it writes), and a remote listing costs a round trip
    (or, listed ahead, can be taken once only)."""

    def __init__(self, tree: TreeReader) -> None:
        self._tree = tree
        self._listings: dict[str, Listing] = {}

    def list(self, folder: str) -> Listing:
        found = self._listings.get(folder)
        if found is None:
            found = self._listings[folder] = self._tree.list(folder)
        return found

    def lookup(self, path: str) -> Meta | None:
        parent, _, name = path.rpartition("/")
        listed = self._listings.get(parent) if name else None
        if listed is not None:
            return listed.entries.get(name)
        return self._tree.lookup(path)

    def download(self, folder: str, name: str, target_dir: int, *, keep_owner: bool) -> int:
        return self._tree.download(folder, name, target_dir, keep_owner=keep_owner)


class RunNames(NamedTuple):
    """What a versions folder holds, by run name (``YYYY-MM-DD_HHMMSS``), oldest first."""

    folders: list[str]  # the runs that kept something
    lists: list[str]  # the runs that listed what they added


class VersionStore(Protocol):
    """A versions folder read back."""

    where: str  # as the user names it, for messages

    def runs(self) -> RunNames:
        """Its run folders and lists (none if it does not exist yet)."""
        ...

    def run(self, name: str) -> TreeReader:
        """Run folder ``name`` as a tree."""
        ...

    def added(self, name: str) -> Iterator[str]:
        """The records of run ``name``'s list of additions (OSError: it cannot be read)."""
        ...


class RemotePair(NamedTuple):
    """A replica on another machine and its versions folder, open for reading."""

    replica: TreeReader
    versions: VersionStore | None


def records(chunks: Iterable[bytes]) -> Iterator[str]:
    """The NUL-ended records of a list of additions read in ``chunks``; an unended last one
    (a list cut short) is left out."""
    rest = b""
    for chunk in chunks:
        *done, rest = (rest + chunk).split(b"\0")
        for record in done:
            if record:
                yield os.fsdecode(record)


def kept_versions(store: VersionStore, path: str = "") -> list[KeptVersion]:
    """The kept versions of ``path`` ("" = every run folder), oldest first: the rows of
    ``inv versions``, as :func:`synchro.features.versions.list_versions` gives them locally."""
    found = []
    for name in store.runs().folders:
        tree = store.run(name)
        meta = tree.lookup(path)
        if meta is None:
            continue
        entries, size = _tree_size(tree, path) if meta.kind is Kind.DIR else (0, meta.size)
        if meta.kind is Kind.LINK:
            size = 0
        found.append(KeptVersion(name, path, meta.kind, size, entries, meta.mtime_ns, meta.target))
    return found


def _tree_size(tree: TreeReader, top: str) -> tuple[int, int]:
    """(entries, bytes of files) below folder ``top``."""
    count = size = 0
    pending = [top]
    while pending:
        folder = pending.pop()
        for name, meta in tree.list(folder).entries.items():
            count += 1
            if meta.kind is Kind.FILE:
                size += meta.size
            elif meta.kind is Kind.DIR:
                pending.append(f"{folder}/{name}" if folder else name)
    return count, size


@contextmanager
def open_remote(
    url: str,
    versions: str | None,
    *,
    lock: bool = False,
    profile: str | None = None,
    timeout: float = 30.0,
) -> Iterator[RemotePair]:
    """The replica at ``url`` (``sftp://`` or ``s3://``) and its versions (``versions`` as the
    pair names them), open for reading until the block ends.

    ``lock``: refuse (:class:`~synchro.errors.ReplicaLocked`) while a run
    writes the replica, and keep runs out until the block ends, as a
    restore does. Listing versions reads what is there, run or not.
    """
    if url.startswith("s3://"):
        from ..endpoints.s3.history import open_bucket  # only an s3:// pair needs boto3

        with open_bucket(url, versions, lock=lock, profile=profile) as pair:
            yield pair
    elif url.startswith("sftp://"):
        from ..endpoints.sftp.history import open_server  # only an sftp:// pair loads asyncssh

        with open_server(url, versions, lock=lock, timeout=timeout) as pair:
            yield pair
    else:
        raise ConfigError(f"not a replica on another machine: {escape(url)}")


def remote_versions(
    url: str, versions: str, path: str = "", *, profile: str | None = None, timeout: float = 30.0
) -> list[KeptVersion]:
    """:func:`kept_versions` of the pair whose replica is ``url`` (``inv versions``)."""
    with open_remote(url, versions, profile=profile, timeout=timeout) as pair:
        assert pair.versions is not None  # a pair with versions has a store
        try:
            return kept_versions(pair.versions, path)
        except OSError as error:
            raise ConfigError(
                f"cannot read the versions in {escape(pair.versions.where)}: {describe(error)}"
            ) from None
