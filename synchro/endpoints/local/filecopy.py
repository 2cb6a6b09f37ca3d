"""Copy one file or link atomically into a replica folder.

The data goes to a temporary name in the target folder (``.synchro-tmp-*``),
gets its permissions and times, and is renamed over the final name only when
complete: a crash leaves at worst a temporary, which the next run removes.
All names are relative to open folder descriptors and opened with
``O_NOFOLLOW``, so neither side's symlinks are ever followed.

A sparse file (a VM image, a database) is copied as it is stored: only its
data segments (``SEEK_DATA``/``SEEK_HOLE``) are read and written, and its
holes stay holes in the copy, as ``cp`` does. The bytes are the same either
way: a hole reads as zeros, and a replica file system that cannot hold
holes fills them with zeros itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable

from ..base import SMALL_COPY, TEMP_PREFIX, Meta, OnChunk, SourceChanged, SourceVanished
from .compiled import load
from .flags import O_CLOEXEC, O_NOFOLLOW, O_NONBLOCK

READ_FLAGS = os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
CHUNK = 1 << 20
# copy_file_range and sendfile move at most this much per call.
MAX_CALL = 1 << 30

Opener = Callable[[str, int], int]  # (name, dir_fd) -> fd: the source opener, a test hook
# OnChunk (a test hook told the bytes copied so far after each chunk): without
# it the copy moves a whole file per kernel call, as fast as it can.


# Files up to this size may be copied by synchro.endpoints.local._copy (when built): one
# kernel call moves them, so an interruption waits for a moment at most.
SMALL_FILE = SMALL_COPY  # one CHUNK: what the pipeline does not follow chunk by chunk

# synchro.endpoints.local._copy.copy_small's outcomes (see synchro/endpoints/local/_copy.c).
_COPIED, _VANISHED, _LINKED, _IRREGULAR, _CHANGED, _UNLINKED, _DECLINED = range(7)
# What a SKIPPED line says of a source that changed under the copy.
BECAME_LINK = "became a link while copying"
NOT_REGULAR = "is no longer a regular file"
CHANGED_WHILE_COPYING = "changed while copying"
_CHANGES = {_LINKED: BECAME_LINK, _IRREGULAR: NOT_REGULAR, _CHANGED: CHANGED_WHILE_COPYING}
# Built by the install only when a C compiler was at hand, and used only
# when built from the _copy.c beside it (see compiled.py).
_compiled = load("_copy")[0]
_copy_small: Callable[[int, int, str, str, bool, int, bool, bool], tuple[int, int]] | None = (
    None if _compiled is None else _compiled.copy_small
)


def temp_name() -> str:
    # Unique enough: O_EXCL refuses a clash, and the lock keeps other runs out.
    return f"{TEMP_PREFIX}{os.urandom(6).hex()}"


def default_opener(name: str, dir_fd: int) -> int:
    return os.open(name, READ_FLAGS, dir_fd=dir_fd)


def _copy_data(
    src: int,
    dst: int,
    on_chunk: OnChunk | None = None,
    size: int | None = None,
    *,
    length: int | None = None,
    before: int = 0,
) -> int:
    """Copy from both files' offsets with the kernel's fast paths; return bytes copied.

    The copy runs until end of file, or ``length`` bytes (one data segment
    of a sparse file). With ``on_chunk`` the kernel calls move at most
    ``CHUNK`` bytes each and ``on_chunk`` is told the total (plus
    ``before``, the part of the file done before this call) after each of
    them. With ``size`` (the size fstat gave) the copy stops once that much
    is copied, saving the call that would find the end: a file that grew
    meanwhile is caught by the caller's second fstat.
    """
    step = MAX_CALL if on_chunk is None else CHUNK
    total = 0
    # Linux only (macOS and Windows have none): looked up here, not at
    # import, so that a test can take it away as macOS does.
    copy_file_range: Callable[[int, int, int], int] | None = getattr(os, "copy_file_range", None)
    try:
        while copy_file_range is not None and (length is None or total < length):
            sent = copy_file_range(src, dst, step if length is None else min(step, length - total))
            if sent == 0:
                return total
            total += sent
            if size is not None and total >= size and on_chunk is None:
                return total
            if on_chunk is not None:
                on_chunk(before + total)
        if copy_file_range is not None:
            return total
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) or total:
            raise
    try:
        while length is None or total < length:
            sent = os.sendfile(dst, src, None, step if length is None else min(step, length - total))
            if sent == 0:
                return total
            total += sent
            if on_chunk is not None:
                on_chunk(before + total)
        return total
    except OSError as error:
        # macOS sends to sockets only: ENOTSOCK for a file (EOPNOTSUPP on
        # older versions), as Linux before 2.6.33 said EINVAL.
        if error.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSOCK, errno.EOPNOTSUPP) or total:
            raise
    while (length is None or total < length) and (
        chunk := os.read(src, CHUNK if length is None else min(CHUNK, length - total))
    ):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]
        total += len(chunk)
        if on_chunk is not None:
            on_chunk(before + total)
    return total


def may_have_holes(st: os.stat_result) -> bool:
    """The cheap hint that a file is sparse: fewer bytes allocated than its size.

    A compressed file (ZFS, btrfs) looks the same; the walk of its data
    segments (:func:`_copy_sparse`) tells the two apart, and finds one
    segment, the whole file, in a compressed one.
    """
    return st.st_blocks * 512 < st.st_size


def _copy_sparse(src: int, dst: int, size: int, on_chunk: OnChunk | None) -> int | None:
    """Copy the data segments of the first ``size`` bytes of ``src``, leaving the holes unwritten.

    Both files' offsets are at 0 and ``dst`` is empty. Returns the bytes of
    the file accounted for (holes included): ``size``, or less where the
    source ended early (it shrank meanwhile, which the caller reports).
    Returns None, having changed nothing, where the source's file system
    cannot say where its data is: the caller copies the file whole.

    The holes are made by seeking past them and, for a hole at the end, by
    ``ftruncate``; POSIX has the gap read as zeros either way, so a replica
    file system that cannot hold holes (exFAT, FAT) writes the zeros itself
    and the bytes are exact on any of them.
    """
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:
                break  # no data from offset on: the rest of the file is a hole
            if offset == 0 and error.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                return None  # no SEEK_DATA here (a /proc file that states a size)
            raise
        if start >= size:
            break  # data past the size fstat gave: it grew, which the second fstat catches
        try:
            end = min(os.lseek(src, start, os.SEEK_HOLE), size)
        except OSError as error:
            if error.errno == errno.ENXIO:
                return start  # cut short between the two calls
            raise
        os.lseek(src, start, os.SEEK_SET)
        os.lseek(dst, start, os.SEEK_SET)
        copied = _copy_data(src, dst, on_chunk, length=end - start, before=start)
        if copied < end - start:
            return start + copied  # the source ended early: it shrank meanwhile
        offset = end
    os.ftruncate(dst, size)
    return size


def _discard(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def open_source(opener: Opener, name: str, dir_fd: int) -> int:
    try:
        return opener(name, dir_fd)
    except FileNotFoundError:
        raise SourceVanished(name) from None
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SourceChanged(BECAME_LINK) from None
        raise


def _check_replaced(name: str, src_dir: int) -> None:
    """Raise for a source file that lost its name during the copy: gone or replaced."""
    try:
        os.stat(name, dir_fd=src_dir, follow_symlinks=False)
    except FileNotFoundError:
        raise SourceVanished(name) from None
    raise SourceChanged("replaced while copying")


def copy_file(
    src_dir: int,
    rep_dir: int,
    name: str,
    *,
    keep_owner: bool,
    keep_mode: bool = True,
    keep_times: bool = True,
    opener: Opener = default_opener,
    on_chunk: OnChunk | None = None,
) -> int:
    """Copy file ``name`` from ``src_dir`` to ``rep_dir``; return the bytes copied.

    The bytes copied are the file's size, holes included: what a reader of
    the copy gets, and what the progress bar counts. ``keep_mode`` False:
    the replica cannot hold permission bits, so none are set (a FAT drive
    refuses the attempt; an exFAT one refuses some). ``keep_times`` False:
    times cannot be set there at all (a drive mounted for another user).
    """
    if _copy_small is not None and opener is default_opener and on_chunk is None:
        # A small file (most of a first copy) in one call into C: the same
        # steps in the same order (see synchro/endpoints/local/_copy.c); a
        # large one, or one with a test hook, below, where a Ctrl+C can stop
        # it between chunks, and a sparse one, below too: its holes are kept there.
        status, copied = _copy_small(
            src_dir, rep_dir, name, temp_name(), keep_owner, SMALL_FILE, keep_mode, keep_times
        )
        if status == _COPIED:
            return copied
        if status == _VANISHED:
            raise SourceVanished(name)
        if status == _UNLINKED:
            _check_replaced(name, src_dir)
        if status != _DECLINED:
            raise SourceChanged(_CHANGES[status])
    src = open_source(opener, name, src_dir)
    try:
        before = os.fstat(src)
        if not stat.S_ISREG(before.st_mode):
            raise SourceChanged(NOT_REGULAR)
        tmp = temp_name()
        dst = -1
        try:
            # Inside the try: a Ctrl+C that lands just as open() returns must
            # still remove the temporary it made.
            dst = os.open(tmp, WRITE_FLAGS, 0o600, dir_fd=rep_dir)
            try:
                # None: not sparse, or its file system cannot say where the data is.
                sparse = _copy_sparse(src, dst, before.st_size, on_chunk) if may_have_holes(before) else None
                copied = _copy_data(src, dst, on_chunk, before.st_size or None) if sparse is None else sparse
                after = os.fstat(src)
                if after.st_nlink == 0 < before.st_nlink:
                    # Deleted, or replaced by a rename (an editor's save), while
                    # it was read: these bytes are no longer the source's. (A
                    # file system that always says 0 links is left alone.)
                    _check_replaced(name, src_dir)
                # The change time too: a rewrite that puts the modification
                # time back (touch -r) would otherwise install a torn mix
                # that no later run would ever see as different.
                if (
                    copied != before.st_size
                    or after.st_size != before.st_size
                    or after.st_mtime_ns != before.st_mtime_ns
                    or after.st_ctime_ns != before.st_ctime_ns
                ):
                    raise SourceChanged(CHANGED_WHILE_COPYING)
                if keep_owner:
                    # chown before chmod: chown clears set-user-ID bits.
                    os.fchown(dst, before.st_uid, before.st_gid)
                if keep_mode:
                    os.fchmod(dst, stat.S_IMODE(before.st_mode))
                if keep_times:
                    os.utime(dst, ns=(before.st_atime_ns, before.st_mtime_ns))
            finally:
                os.close(dst)
            os.rename(tmp, name, src_dir_fd=rep_dir, dst_dir_fd=rep_dir)
        except BaseException as error:
            # Not when open() itself failed: that name is not this copy's.
            if dst >= 0 or not isinstance(error, OSError):
                _discard(tmp, rep_dir)
            raise
        return copied
    finally:
        os.close(src)


def copy_link(rep_dir: int, name: str, meta: Meta, *, keep_owner: bool, link_times: bool = True) -> None:
    """Make symlink ``name`` in ``rep_dir`` with the source's target text
    (and time, unless ``link_times`` is False: the replica cannot set a link's own time)."""
    assert meta.target is not None
    tmp = temp_name()
    made = False
    try:
        os.symlink(meta.target, tmp, dir_fd=rep_dir)
        made = True
        if keep_owner:
            os.chown(tmp, meta.uid, meta.gid, dir_fd=rep_dir, follow_symlinks=False)
        if link_times:
            os.utime(tmp, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=rep_dir, follow_symlinks=False)
        os.rename(tmp, name, src_dir_fd=rep_dir, dst_dir_fd=rep_dir)
    except BaseException as error:
        if made or not isinstance(error, OSError):  # see copy_file
            _discard(tmp, rep_dir)
        raise


def same_content(src_dir: int, rep_dir: int, name: str, opener: Opener = default_opener) -> bool:
    """Compare the bytes of ``name`` on both sides (for ``--checksum``)."""
    src = open_source(opener, name, src_dir)
    try:
        rep = os.open(name, READ_FLAGS, dir_fd=rep_dir)
        try:
            while True:
                left = os.read(src, CHUNK)
                right = os.read(rep, CHUNK)
                if left != right:
                    return False
                if not left:
                    return True
        finally:
            os.close(rep)
    finally:
        os.close(src)


def set_attrs(rep_dir: int, name: str, meta: Meta, *, keep_owner: bool, keep_mode: bool = True) -> None:
    """Fix permissions (and owner) of an existing replica file without copying it."""
    fd = os.open(name, READ_FLAGS, dir_fd=rep_dir)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "is no longer a regular file")
        if keep_owner:
            os.fchown(fd, meta.uid, meta.gid)
        if keep_mode:
            os.fchmod(fd, meta.mode)
    finally:
        os.close(fd)


def set_folder_meta(
    fd: int, meta: Meta, *, keep_owner: bool, keep_mode: bool = True, keep_times: bool = True
) -> None:
    if keep_owner:
        os.fchown(fd, meta.uid, meta.gid)
    if keep_mode:
        os.fchmod(fd, meta.mode)
    if keep_times:
        os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
