"""A replica reached through paths: the portable :class:`~synchro.endpoints.base.Replica`.

Every file goes to a temporary name in its folder and is put in place with
``os.replace`` when complete, with its times (``os.utime(ns=...)``) and
permissions (on Windows the read-only, hidden and system attributes, see
:mod:`~synchro.endpoints.portable.attributes`); nothing is followed.

Windows refuses to replace or delete a file that another program holds
open (antivirus scanners and indexers do so for a moment): such a
replace or delete is tried again a few times over about a second and a
half, then fails alone, and the run goes on.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress

from ..base import TEMP_PREFIX, Concurrency, Meta, OnChunk, Source, SourceChanged
from ..capabilities import Capabilities
from .attributes import WINDOWS, make_writable, mode_of, set_mode
from .lock import run_lock
from .probe import probe
from .tree import IN_USE, PortableTree

# No fork where this endpoint is used (Windows): one process, and copies
# of a mebibyte or more in flight on four threads (the data moves in
# os.read and os.write, which release the GIL).
PORTABLE = Concurrency(fork_helper=False, copies_in_flight=4, in_flight_min_size=1 << 20)

CHUNK = 1 << 20
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
_WRITE |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# ERROR_ACCESS_DENIED (what a replace over an open file gets), ERROR_SHARING_VIOLATION.
_HELD = (5, 32)
# Waits between the tries of a replace or delete refused because the file is open elsewhere.
RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)

Sleep = Callable[[float], object]


def temp_name() -> str:
    return f"{TEMP_PREFIX}{os.urandom(6).hex()}"


class PortableReplica(PortableTree):
    """The replica folder at ``path`` (resolved)."""

    concurrency = PORTABLE

    def __init__(self, path: str, *, sleep: Sleep = time.sleep) -> None:
        super().__init__(path)
        self.folder = path
        self._sleep = sleep  # injected by tests: the waits between tries
        self.keep_owner = False
        self.keep_mode = True
        self.keep_times = True
        self.link_times = True

    def lock(self) -> AbstractContextManager[object]:
        return run_lock(self.folder, self.root)

    def open(self) -> None:
        if not stat.S_ISDIR(os.stat(self.root).st_mode):
            raise NotADirectoryError(20, "not a folder", self.folder)

    def measure(self, *, as_root: bool) -> Capabilities:
        holds = probe(self.root, as_root=as_root)
        self.keep_owner = as_root and holds.owners
        self.keep_mode = holds.permissions
        self.keep_times = holds.times
        self.link_times = holds.link_times
        return holds

    # --- the actions

    def copy_file(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None) -> int:
        src = source.open_file(folder, name)
        try:
            before = os.fstat(src)
            if not stat.S_ISREG(before.st_mode):
                raise SourceChanged("is no longer a regular file")
            tmp = self.path(folder, temp_name())
            made = False
            try:
                dst = os.open(tmp, _WRITE, 0o600)
                made = True
                try:
                    copied = _copy_data(src, dst, on_chunk)
                finally:
                    os.close(dst)
                after = os.fstat(src)
                if (
                    copied != before.st_size
                    or after.st_size != before.st_size
                    or after.st_mtime_ns != before.st_mtime_ns
                ):
                    raise SourceChanged("changed while copying")
                if self.keep_owner:
                    os.lchown(tmp, before.st_uid, before.st_gid)
                if self.keep_times:
                    os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
                if self.keep_mode:
                    set_mode(tmp, mode_of(before), fresh=True)  # last: read-only refuses nothing after it
                self.retried(lambda: self._replace(tmp, self.path(folder, name)))
            except BaseException:
                if made:
                    self._discard(tmp)
                raise
            return copied
        finally:
            os.close(src)

    def copy_job(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None) -> _CopyJob:
        return _CopyJob(self, source, folder, name, on_chunk)

    def copy_link(self, folder: str, name: str, meta: Meta) -> None:
        assert meta.target is not None
        tmp = self.path(folder, temp_name())
        os.symlink(meta.target, tmp)
        try:
            if self.keep_owner:
                os.lchown(tmp, meta.uid, meta.gid)
            if self.link_times:
                os.utime(tmp, ns=(meta.mtime_ns, meta.mtime_ns), follow_symlinks=False)
            self.retried(lambda: os.replace(tmp, self.path(folder, name)))
        except BaseException:
            self._discard(tmp)
            raise

    def make_folder(self, folder: str, name: str) -> None:
        os.mkdir(self.path(folder, name), 0o700)

    def set_file_meta(self, folder: str, name: str, meta: Meta) -> None:
        path = self.path(folder, name)
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise OSError(22, "is no longer a regular file", path)
        if self.keep_owner:
            os.lchown(path, meta.uid, meta.gid)
        if self.keep_mode:
            set_mode(path, meta.mode)

    def set_folder_meta(self, path: str, meta: Meta) -> None:
        full = self.path(path)
        if self.keep_owner:
            os.lchown(full, meta.uid, meta.gid)
        if self.keep_mode:
            set_mode(full, meta.mode)
        if self.keep_times:
            os.utime(full, ns=(meta.mtime_ns, meta.mtime_ns))

    def remove(self, folder: str, name: str) -> None:
        path = self.path(folder, name)
        with suppress(FileNotFoundError):  # already gone: the goal is reached
            if WINDOWS:
                make_writable(path)  # Windows refuses to delete a read-only file
            self.retried(lambda: os.unlink(path))

    def remove_folder(self, folder: str, name: str) -> None:
        path = self.path(folder, name)
        with suppress(FileNotFoundError):
            self.retried(lambda: os.rmdir(path))

    def rename(self, folder: str, old: str, new: str) -> None:
        # Through a temporary name, as the local replica does: a case-only
        # rename is a no-op on some case-insensitive file systems.
        temp = self.path(folder, temp_name())
        os.rename(self.path(folder, old), temp)
        try:
            os.rename(temp, self.path(folder, new))
        except BaseException:
            os.rename(temp, self.path(folder, old))
            raise

    def same_content(self, source: Source, folder: str, name: str) -> bool:
        src = source.open_file(folder, name)
        try:
            with open(self.path(folder, name), "rb", buffering=0) as rep:
                while True:
                    left = os.read(src, CHUNK)
                    right = rep.read(CHUNK)
                    if left != right:
                        return False
                    if not left:
                        return True
        finally:
            os.close(src)

    def make_writable(self, folder: str) -> bool:
        """Add the owner's write permission to read-only ``folder`` (POSIX; Windows
        lets a run write into a folder marked read-only)."""
        if WINDOWS:
            return False
        path = self.path(folder)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & stat.S_IWUSR:
                return False
            os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
        except OSError:
            return False
        return True

    # --- helpers

    def _replace(self, tmp: str, target: str) -> None:
        try:
            os.replace(tmp, target)
        except PermissionError:
            if not WINDOWS:
                raise
            # A read-only file cannot be replaced: clear that, then try again
            # (an error now is the file being open elsewhere).
            with suppress(FileNotFoundError):
                make_writable(target)
            os.replace(tmp, target)

    def retried(self, call: Callable[[], None]) -> None:
        """``call``, tried again while Windows says another program holds the file."""
        for delay in (*RETRY_DELAYS, None):
            try:
                call()
                return
            except PermissionError as error:
                if getattr(error, "winerror", None) not in _HELD:
                    raise
                if delay is None:
                    waited = sum(RETRY_DELAYS)
                    raise PermissionError(
                        error.errno, f"{IN_USE} (still after {waited:.1f} s)", error.filename
                    ) from None
            self._sleep(delay)

    def _discard(self, tmp: str) -> None:
        with suppress(OSError):
            if WINDOWS:
                make_writable(tmp)
            os.unlink(tmp)


def _copy_data(src: int, dst: int, on_chunk: OnChunk | None) -> int:
    copied = 0
    while True:
        data = os.read(src, CHUNK)
        if not data:
            return copied
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view) :]
        copied += len(data)
        if on_chunk is not None:
            on_chunk(copied)


class _CopyJob:
    """One copy run on another thread: paths only, so nothing is shared with the main thread."""

    def __init__(
        self, replica: PortableReplica, source: Source, folder: str, name: str, on_chunk: OnChunk | None
    ) -> None:
        self._replica, self._source, self._folder, self._name = replica, source, folder, name
        self._on_chunk = on_chunk

    def run(self) -> int:
        return self._replica.copy_file(self._source, self._folder, self._name, self._on_chunk)

    def discard(self) -> None:
        pass  # holds nothing open
