"""The seam between the pipeline and the trees it reads and writes.

The pipeline (:mod:`synchro.pipeline`) reaches the source and the replica
only through the small interfaces below, whatever holds them: the local
file system through folder descriptors (:mod:`synchro.endpoints.local`)
today; a portable local tree, an SFTP server and an S3 bucket later. The
shape follows rclone's backend interface (``List``, ``Put``, ``Mkdir``,
``Rmdir``, ``Remove``, ``Precision``, and a ``Features`` record the sync
core reads instead of asking which backend it talks to) and borrows
fsspec's words where they fit.

- A :class:`Tree` lists one folder at a time: every entry's kind, size,
  modification time, permission bits and owner, from one call per folder
  (what an SFTP ``READDIR`` or an S3 listing returns; never a stat per
  entry).
- The :class:`Source` is always on this machine: a :class:`Tree` whose files
  can be opened for reading without following a link.
- A :class:`Replica` is a :class:`Tree` that carries out the planner's
  typed actions, says what it can hold (:class:`Capabilities`, measured
  when a run starts) and how a run may be shared (:class:`Concurrency`).

Paths are ``/``-separated and relative to the tree's root: ``""`` is the
root, ``folder`` is a folder's path and ``name`` one entry in it. No method
ever follows a symbolic link. Errors are :class:`OSError` with ``errno``
set (an entry gone is ``ENOENT``); a source that changes or vanishes under
a copy raises :class:`SourceChanged` or :class:`SourceVanished`, and
nothing is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from enum import IntEnum
from typing import NamedTuple, Protocol, runtime_checkable

from .capabilities import Capabilities

# Names starting with this are temporaries of an interrupted copy: every
# endpoint writes a file under such a name first, and the planner removes
# leftovers in the replica and never copies one from the source.
TEMP_PREFIX = ".synchro-tmp-"
# The run lock's file in a replica's root, where the replica folder cannot
# be locked itself (Windows): never copied from a source root, never
# deleted from a replica root by the planner.
LOCK_NAME = ".synchro-lock"


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


class Listing(NamedTuple):
    """One folder's entries by name, and the names that could not be read."""

    entries: dict[str, Meta]
    errors: dict[str, str]


def describe(error: OSError) -> str:
    return error.strerror or str(error)


class SourceChanged(Exception):
    """The source file changed while it was copied; nothing was installed."""


class SourceVanished(Exception):
    """The source entry disappeared before it could be copied."""


class ReplicaLost(ConnectionError):
    """The replica cannot be reached any more (its server's connection is lost).

    Every later action on it would fail the same way: the pipeline stops
    carrying them out and says so once, with how many were not done,
    instead of one ``FAILED`` line each. Its text names the replica.
    """


# Told the bytes copied so far after each chunk of a file: the progress of a
# large file, and a test hook that changes the source (or fails the write)
# in the middle of a copy.
OnChunk = Callable[[int], None]
# A copy up to this size is one quick step for every endpoint (locally one
# kernel call): it is not followed chunk by chunk, and an endpoint may take
# a faster way for it when no one follows it.
SMALL_COPY = 1 << 20


class Concurrency(NamedTuple):
    """How a run on this replica may be shared; the pipeline reads it, it does not guess.

    A local file system answers each system call in microseconds and a run
    is bound by the interpreter: two processes (a forked helper sharing the
    sub-trees, :mod:`synchro.pipeline.helper`) go twice as fast, and only
    large copies gain from threads (the kernel copies without the GIL). A
    remote replica answers each request after a round trip: a run is bound
    by waiting, so it wants many copies in flight and no second process.
    """

    # Whether the pipeline may fork a helper process that works on the same
    # replica through :meth:`Forkable.forked` (and the source alike).
    fork_helper: bool
    # Copies the applier keeps in flight at once, each through a
    # :class:`CopyJob` run on a thread (0: every copy in order).
    copies_in_flight: int
    # Only copies of at least this many bytes go in flight: below it, a
    # hand-off to a thread costs more than the copy (local); remote: 0.
    in_flight_min_size: int
    # Removals and folders' metadata go in flight too, each after what it
    # depends on (the content of a folder, an earlier action on the same
    # path): on a remote replica each is a round trip of its own.
    actions_in_flight: bool = False
    # Copy jobs are :class:`StartsItself`: one with nothing to wait for is
    # started without a thread of the pipeline's (a remote replica's upload
    # runs on its connection's event loop; a thread waiting for each would
    # cost a hand-over and a contest for the GIL per file).
    jobs_start_themselves: bool = False


class Tree(Protocol):
    """What the walk reads of either side."""

    def list(self, folder: str) -> Listing:
        """Every entry of ``folder`` with its :class:`Meta`, from one listing.

        An entry that vanishes while it is listed is absent; one that cannot
        be described is in :attr:`Listing.errors` with the reason (neither
        copied nor deleted). A folder that cannot be listed raises OSError.
        """
        ...

    def lookup(self, path: str) -> Meta | None:
        """The entry at ``path`` ("" is the root), not followed; None if absent."""
        ...

    def identity(self, folder: str) -> object | None:
        """What tells folder ``folder`` from every other folder this machine
        shows (device and inode); None for a tree no other can show (remote).

        The walk never enters a folder that is the source or the replica
        itself, seen inside the other tree through a bind mount.
        """
        ...

    def close(self) -> None:
        """Let go of what the tree holds open (descriptors, connections)."""
        ...


class Source(Tree, Protocol):
    """The source: always on this machine."""

    def check_folder(self, path: str) -> None:
        """Raise OSError if folder ``path`` cannot be read (``ENOENT``: gone since it was listed)."""
        ...

    def open_file(self, folder: str, name: str) -> int:
        """A descriptor reading file ``name``, never through a link.

        Raises :class:`SourceVanished` if it is gone, :class:`SourceChanged`
        if it became a link or a folder.
        """
        ...

    def read_ahead(self, folder: str, names: Sequence[str]) -> bool:
        """A hint: files ``names`` of ``folder`` are copied next, start reading them.

        Where a read waits for a disk, the disk then serves many at once
        while the copies go on one by one (see
        :mod:`synchro.pipeline.readahead`). It never fails: a file it cannot
        open is left to its copy, which says why. False: this tree never
        reads ahead (its reads do not wait, or it has no way to), so the
        caller need not say more.
        """
        ...


class CopyJob(Protocol):
    """One copy prepared in the main thread and run on another one."""

    def run(self) -> int:
        """Copy, install, return the bytes copied (errors as :meth:`Replica.copy_file`)."""
        ...

    def discard(self) -> None:
        """Release what the job holds: it will never run."""
        ...


Finished = Callable[[int, BaseException | None], None]


class StartsItself(CopyJob, Protocol):
    """A :class:`CopyJob` that can run without a thread of the caller's."""

    def start(self, finished: Finished) -> None:
        """Begin the copy and return at once; ``finished`` is called once, from any
        thread, with the bytes copied, or 0 and the error (as :meth:`CopyJob.run` raises it)."""
        ...


class Replica(Tree, Protocol):
    """The tree a run makes equal to the source.

    Each method carries out one of the planner's typed actions
    (:class:`synchro.pipeline.plan.Op`); the pipeline calls them in the
    plan's order, never in a dry run, and from one thread (a
    :class:`CopyJob` excepted). What is kept of an entry's metadata is what
    :meth:`measure` found the replica can hold: an endpoint attempts
    nothing else (no owner change where owners are not kept).
    """

    concurrency: Concurrency

    def lock(self) -> AbstractContextManager[object]:
        """The run lock: one run at a time on this replica (raises ReplicaLocked).

        Taken before :meth:`open`: a replica is locked, then opened.
        """
        ...

    def open(self) -> None:
        """Reach the replica's root (raises OSError: unreachable, gone)."""
        ...

    def measure(self, *, as_root: bool) -> Capabilities:
        """What the replica can hold, measured at the start of a run, and kept from then on.

        ``as_root``: the run may give entries other owners, so owners are
        kept where the replica holds them.
        """
        ...

    def copy_file(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None) -> int:
        """Copy source file ``folder/name`` here, atomically (a temporary, then
        a rename over the name); return the bytes copied."""
        ...

    def copy_job(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None) -> CopyJob:
        """:meth:`copy_file` prepared to run on another thread (see :class:`Concurrency`);
        ``on_chunk`` is called in that thread."""
        ...

    def copy_link(self, folder: str, name: str, meta: Meta) -> None:
        """Make symlink ``folder/name`` with the source's target text (and time), atomically."""
        ...

    def make_folder(self, folder: str, name: str) -> None:
        """Create folder ``folder/name`` (owner-only until :meth:`set_folder_meta`)."""
        ...

    def set_file_meta(self, folder: str, name: str, meta: Meta) -> None:
        """Give file ``folder/name`` the permission bits (and owner) of ``meta``."""
        ...

    def set_folder_meta(self, path: str, meta: Meta) -> None:
        """Give folder ``path`` the permission bits, owner and time of ``meta`` (after its content)."""
        ...

    def remove(self, folder: str, name: str) -> None:
        """Remove file or link ``folder/name`` (a leftover temporary too); absent is fine."""
        ...

    def remove_folder(self, folder: str, name: str) -> None:
        """Remove the emptied folder ``folder/name``; absent is fine."""
        ...

    def rename(self, folder: str, old: str, new: str) -> None:
        """Respell entry ``old`` as ``new`` in ``folder``: a case-only rename
        on a replica that does not tell the two apart."""
        ...

    def same_content(self, source: Source, folder: str, name: str) -> bool:
        """Whether file ``folder/name`` holds the same bytes on both sides (``--checksum``)."""
        ...

    def make_writable(self, folder: str) -> bool:
        """Let this run write into read-only ``folder`` (mirrored read-only); False if it cannot."""
        ...


# Optional abilities, as rclone's optional interfaces: the pipeline asks
# with isinstance() (once per run) and uses what is there.


@runtime_checkable
class ForkableSource(Source, Protocol):
    """A source a forked process can keep reading (see :attr:`Concurrency.fork_helper`)."""

    def forked(self) -> ForkableSource:
        """The same tree for the child process, sharing nothing that moves (positions, caches)."""
        ...


@runtime_checkable
class ForkableReplica(Replica, Protocol):
    """A replica a forked process can keep writing (see :attr:`Concurrency.fork_helper`)."""

    def forked(self) -> ForkableReplica:
        """The same replica for the child process, keeping what :meth:`Replica.measure` decided."""
        ...


class Folders(Protocol):
    """A local folder tree that the features read and write whole: a replica, a
    versions folder or one of its run folders, a restore's target.

    What :mod:`synchro.features.versions`, :mod:`~synchro.features.restore`
    and :mod:`~synchro.features.verify` do to local trees goes through here,
    so that their decisions exist once: through folder descriptors where the
    system has them (:class:`synchro.endpoints.local.folders.DescriptorFolders`),
    through paths elsewhere (:class:`synchro.endpoints.portable.folders.PathFolders`,
    Windows). ``rel`` is ``/``-separated and relative to the root (``""``:
    the root). Nothing is ever followed. The ``*_from`` methods act on the
    entry at the same ``rel`` in ``other``, a tree of the same kind: a run
    folder holds each kept entry at its path in the replica, and a restore
    writes each entry at its path in the pair.
    """

    def lookup(self, rel: str) -> Meta | None:
        """The entry at ``rel``, not followed; None if absent (or below a file or a link)."""
        ...

    def list(self, rel: str) -> Listing:
        """Folder ``rel``'s entries (see :meth:`Tree.list`); raises OSError."""
        ...

    def first_names(self, rel: str, count: int) -> tuple[str, ...]:
        """Up to ``count`` names in folder ``rel``, without listing it whole."""
        ...

    def open_read(self, rel: str) -> int:
        """A descriptor reading file ``rel`` (never through a link; access time left
        alone where allowed). Raises OSError, ``EINVAL`` if it is not a regular file."""
        ...

    def create(self, rel: str) -> int:
        """A descriptor writing file ``rel``, made (owner-only) or emptied; never through a link."""
        ...

    def sync(self, rel: str, *, folder: bool) -> None:
        """Flush file or folder ``rel`` to the disk (a folder: where the system can)."""
        ...

    def make_folder(self, rel: str) -> bool:
        """Make folder ``rel`` (owner-only) unless there; True if made. ``EEXIST`` if
        something else is there."""
        ...

    def subtree(self, rel: str) -> Folders:
        """Folder ``rel`` as a tree of its own (closed by the caller)."""
        ...

    def set_folder_meta(self, rel: str, meta: Meta, *, keep_owner: bool) -> None:
        """Give folder ``rel`` the permissions, times (and owner) of ``meta``."""
        ...

    def copy_link(self, rel: str, meta: Meta, *, keep_owner: bool) -> None:
        """Make link ``rel`` with ``meta``'s target (and time), atomically."""
        ...

    def copy_from(self, other: Folders, rel: str, *, keep_owner: bool) -> int:
        """Copy file ``rel`` of ``other`` to ``rel`` here, atomically, with its
        permissions and times; return the bytes. Raises SourceChanged, SourceVanished."""
        ...

    def link_from(self, other: Folders, rel: str) -> None:
        """Add a hard link at ``rel`` to ``other``'s entry ``rel`` (a link itself, never
        its target). Raises OSError as ``link`` does: ``EXDEV`` across file systems,
        ``EPERM``/``EOPNOTSUPP`` where hard links are refused."""
        ...

    def move_from(self, other: Folders, rel: str) -> None:
        """Move ``other``'s entry ``rel`` here with one rename (``EXDEV`` across file systems)."""
        ...

    def replace(self, rel: str, new: str) -> None:
        """Rename entry ``rel`` to ``new``, replacing what is there."""
        ...

    def remove(self, rel: str) -> None:
        """Remove file or link ``rel`` (FileNotFoundError if absent)."""
        ...

    def remove_folder(self, rel: str) -> None:
        """Remove the empty folder ``rel``."""
        ...

    def remove_tree(self, rel: str) -> None:
        """Remove entry ``rel``, and all it holds if it is a folder; absent is fine."""
        ...

    def close(self) -> None:
        """Let go of what is held open."""
        ...
