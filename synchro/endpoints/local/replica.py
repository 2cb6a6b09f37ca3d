"""A replica on a local file system: the first :class:`~synchro.endpoints.base.Replica`.

It reads like the source (:class:`~synchro.endpoints.local.tree.LocalTree`)
and writes through the same descriptors: every file and link goes to a
temporary name in its folder and is renamed over the target when complete
(:mod:`synchro.endpoints.local.filecopy`), nothing is ever followed. What
it keeps of an entry's metadata is what :meth:`LocalReplica.measure` found
the file system can hold: on an exFAT drive, no owner change and no
``chmod`` is attempted, and times are compared at its precision.
"""

from __future__ import annotations

import os
import signal
import stat
from contextlib import AbstractContextManager, suppress

from ...pipeline.lock import ReplicaLock
from ..base import Concurrency, Meta, OnChunk, Source
from ..capabilities import Capabilities
from .fds import open_root
from .filecopy import (
    copy_file,
    copy_link,
    default_opener,
    same_content,
    set_attrs,
    set_folder_meta,
    temp_name,
)
from .mounts import mount_of
from .probe import probe
from .tree import LocalTree

# A local file system answers in microseconds: a run is bound by the
# interpreter, so it is shared with a forked process, and only copies of a
# mebibyte or more go to threads (the kernel copies them without the GIL;
# for a small file the hand-off costs more than the copy). On a disk with a
# cold cache a small file's copy waits for its read: the source reads the
# next files ahead instead (synchro.pipeline.readahead), which overlaps the
# waits without threads (benchmarks/README.md: 20k small files, cold, on ext4).
LOCAL = Concurrency(fork_helper=True, copies_in_flight=4, in_flight_min_size=1 << 20)
# A FUSE file system (exfat-fuse, ntfs-3g, sshfs) answers every call through
# its daemon: a small file's copy there is mostly round trips, which copies
# of any size in flight overlap (benchmarks/README.md: 20k small files to
# exFAT through exfat-fuse).
THROUGH_DAEMON = Concurrency(fork_helper=True, copies_in_flight=8, in_flight_min_size=0)


def concurrency_for(mount_type: str) -> Concurrency:
    """How a run on a local file system of this type (as mountinfo names it) is shared."""
    return THROUGH_DAEMON if mount_type.split(".")[0] in ("fuse", "fuseblk") else LOCAL


class LocalReplica(LocalTree):
    """The replica folder at ``path`` (resolved), open for one run."""

    concurrency = LOCAL

    # Not LocalTree's __init__: a replica is locked before it is opened.
    def __init__(self, path: str) -> None:
        self.path = path
        self.opener = default_opener
        self.root = -1
        # What is attempted: until measured, what an ext4 file system holds.
        self.keep_owner = False
        self.keep_mode = True
        self.keep_times = True
        self.link_times = True

    def lock(self) -> AbstractContextManager[object]:
        return ReplicaLock(self.path)

    def open(self) -> None:
        """Open the replica folder (raises OSError)."""
        self._attach(open_root(self.path), owns_root=True)

    def measure(self, *, as_root: bool) -> Capabilities:
        capabilities = measure(self.root, as_root=as_root)
        self.keep_owner = as_root and capabilities.owners
        self.keep_mode = capabilities.permissions
        self.keep_times = capabilities.times
        self.link_times = capabilities.times and capabilities.link_times
        mount = mount_of(os.fstat(self.root).st_dev)
        if self.concurrency is LOCAL and mount is not None:  # a subclass that states its own keeps it
            self.concurrency = concurrency_for(mount.fs_type)
        return capabilities

    def close(self) -> None:
        if self.root >= 0:
            super().close()

    def forked(self) -> LocalReplica:
        twin = LocalReplica(self.path)
        twin._attach(self.root, owns_root=False)
        twin.keep_owner, twin.keep_mode = self.keep_owner, self.keep_mode
        twin.keep_times, twin.link_times = self.keep_times, self.link_times
        twin.concurrency = self.concurrency
        return twin

    # --- the actions

    def copy_file(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None) -> int:
        # Once per copied file: the check of _local, without the call.
        src = source if isinstance(source, LocalTree) else _local(source)
        return copy_file(
            src.fd(folder),
            self.fd(folder),
            name,
            keep_owner=self.keep_owner,
            keep_mode=self.keep_mode,
            keep_times=self.keep_times,
            opener=src.opener,
            on_chunk=on_chunk,
        )

    def copy_job(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None) -> _CopyJob:
        src = _local(source)
        # Duplicates, so the main thread may move on to other folders.
        src_dir = os.dup(src.fd(folder))
        try:
            rep_dir = os.dup(self.fd(folder))
        except BaseException:
            os.close(src_dir)
            raise
        return _CopyJob(self, src, src_dir, rep_dir, name, on_chunk)

    def copy_link(self, folder: str, name: str, meta: Meta) -> None:
        copy_link(self.fd(folder), name, meta, keep_owner=self.keep_owner, link_times=self.link_times)

    def make_folder(self, folder: str, name: str) -> None:
        # Owner-only until set_folder_meta gives it the source's bits after its content.
        os.mkdir(name, 0o700, dir_fd=self.fd(folder))

    def set_file_meta(self, folder: str, name: str, meta: Meta) -> None:
        set_attrs(self.fd(folder), name, meta, keep_owner=self.keep_owner, keep_mode=self.keep_mode)

    def set_folder_meta(self, path: str, meta: Meta) -> None:
        set_folder_meta(
            self.fd(path),
            meta,
            keep_owner=self.keep_owner,
            keep_mode=self.keep_mode,
            keep_times=self.keep_times,
        )

    def remove(self, folder: str, name: str) -> None:
        with suppress(FileNotFoundError):  # already gone (its folder too): the goal is reached
            os.unlink(name, dir_fd=self.fd(folder))

    def remove_folder(self, folder: str, name: str) -> None:
        with suppress(FileNotFoundError):
            os.rmdir(name, dir_fd=self.fd(folder))

    def rename(self, folder: str, old: str, new: str) -> None:
        # Through a temporary name: on a case-insensitive Linux file system
        # (ext4 with casefold) "A" and "a" are one entry to the kernel, which
        # makes rename("A", "a") a no-op. A crash in between leaves a
        # temporary the next run removes (and copies the entry anew).
        fd = self.fd(folder)
        temp = temp_name()
        os.rename(old, temp, src_dir_fd=fd, dst_dir_fd=fd)
        try:
            os.rename(temp, new, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            os.rename(temp, old, src_dir_fd=fd, dst_dir_fd=fd)
            raise

    def same_content(self, source: Source, folder: str, name: str) -> bool:
        src = _local(source)
        return same_content(src.fd(folder), self.fd(folder), name, src.opener)

    def make_writable(self, folder: str) -> bool:
        """Add the owner's write permission to ``folder``; False if not ours to change.

        A read-only folder of the source is mirrored read-only; without this, a
        run that is not root could never again change or delete what it holds
        (rsync does the same). The folder's own metadata (set after every
        change in it) puts its mode back, and a replica-only folder is
        removed anyway.
        """
        try:
            fd = self.fd(folder)
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or st.st_mode & stat.S_IWUSR:
                return False
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
        except OSError:
            return False
        return True


def measure(root_fd: int, *, as_root: bool) -> Capabilities:
    """What the local folder open at ``root_fd`` holds (:func:`~synchro.endpoints.local.probe.probe`).

    Ctrl+C and SIGTERM wait for the probe's few system calls: one that
    landed inside would leave its hidden folder in the replica.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        return probe(root_fd, as_root=as_root)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _local(source: Source) -> LocalTree:
    # The descriptor-based copy moves bytes between two descriptors in the
    # kernel: it needs the source's folder descriptors.
    if not isinstance(source, LocalTree):
        raise TypeError(f"a local replica copies from a local tree, not {type(source).__name__}")
    return source


class _CopyJob:
    """One copy on its own duplicates of the two folder descriptors (see :meth:`LocalReplica.copy_job`)."""

    def __init__(
        self,
        replica: LocalReplica,
        source: LocalTree,
        src_dir: int,
        rep_dir: int,
        name: str,
        on_chunk: OnChunk | None,
    ) -> None:
        self._replica, self._source = replica, source
        self._dirs = (src_dir, rep_dir)
        self._name = name
        self._on_chunk = on_chunk

    def run(self) -> int:
        src_dir, rep_dir = self._dirs
        try:
            return copy_file(
                src_dir,
                rep_dir,
                self._name,
                keep_owner=self._replica.keep_owner,
                keep_mode=self._replica.keep_mode,
                keep_times=self._replica.keep_times,
                opener=self._source.opener,
                on_chunk=self._on_chunk,
            )
        finally:
            self.discard()

    def discard(self) -> None:
        dirs, self._dirs = self._dirs, (-1, -1)
        for fd in dirs:
            if fd >= 0:
                os.close(fd)
