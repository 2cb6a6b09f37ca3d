"""Copy one file or link atomically into a replica folder.

The data goes to a temporary name in the target folder (``.synchro-tmp-*``),
gets its permissions and times, and is renamed over the final name only when
complete: a crash leaves at worst a temporary, which the next run removes.
All names are relative to open folder descriptors and opened with
``O_NOFOLLOW``, so neither side's symlinks are ever followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable

from .plan import TEMP_PREFIX
from .scan import Meta

READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20
# copy_file_range and sendfile move at most this much per call.
MAX_CALL = 1 << 30

Opener = Callable[[str, int], int]  # (name, dir_fd) -> fd: the source opener, a test hook


class SourceChanged(Exception):
    """The source file changed while it was copied; nothing was installed."""


class SourceVanished(Exception):
    """The source entry disappeared before it could be copied."""


def temp_name() -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(6)}"


def default_opener(name: str, dir_fd: int) -> int:
    return os.open(name, READ_FLAGS, dir_fd=dir_fd)


def _copy_data(src: int, dst: int) -> int:
    """Copy until end of file with the kernel's fast paths; return bytes copied."""
    total = 0
    try:
        while True:
            sent = os.copy_file_range(src, dst, MAX_CALL)
            if sent == 0:
                return total
            total += sent
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) or total:
            raise
    try:
        while True:
            sent = os.sendfile(dst, src, None, MAX_CALL)
            if sent == 0:
                return total
            total += sent
    except OSError as error:
        if error.errno not in (errno.ENOSYS, errno.EINVAL) or total:
            raise
    while chunk := os.read(src, CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]
        total += len(chunk)
    return total


def _discard(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _open_source(opener: Opener, name: str, dir_fd: int) -> int:
    try:
        return opener(name, dir_fd)
    except FileNotFoundError:
        raise SourceVanished(name) from None
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SourceChanged("became a link while copying") from None
        raise


def copy_file(
    src_dir: int,
    rep_dir: int,
    name: str,
    *,
    keep_owner: bool,
    opener: Opener = default_opener,
) -> int:
    """Copy file ``name`` from ``src_dir`` to ``rep_dir``; return the bytes copied."""
    src = _open_source(opener, name, src_dir)
    try:
        before = os.fstat(src)
        if not stat.S_ISREG(before.st_mode):
            raise SourceChanged("is no longer a regular file")
        tmp = temp_name()
        dst = os.open(tmp, WRITE_FLAGS, 0o600, dir_fd=rep_dir)
        try:
            try:
                copied = _copy_data(src, dst)
                after = os.fstat(src)
                if (
                    copied != before.st_size
                    or after.st_size != before.st_size
                    or after.st_mtime_ns != before.st_mtime_ns
                ):
                    raise SourceChanged("changed while copying")
                if keep_owner:
                    # chown before chmod: chown clears set-user-ID bits.
                    os.fchown(dst, before.st_uid, before.st_gid)
                os.fchmod(dst, stat.S_IMODE(before.st_mode))
                os.utime(dst, ns=(before.st_atime_ns, before.st_mtime_ns))
            finally:
                os.close(dst)
            os.rename(tmp, name, src_dir_fd=rep_dir, dst_dir_fd=rep_dir)
        except BaseException:
            _discard(tmp, rep_dir)
            raise
        return copied
    finally:
        os.close(src)


def copy_link(rep_dir: int, name: str, meta: Meta, *, keep_owner: bool) -> None:
    """Make symlink ``name`` in ``rep_dir`` with the source's target text."""
    assert meta.target is not None
    tmp = temp_name()
    os.symlink(meta.target, tmp, dir_fd=rep_dir)
    try:
        if keep_owner:
            os.chown(tmp, meta.uid, meta.gid, dir_fd=rep_dir, follow_symlinks=False)
        os.utime(tmp, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=rep_dir, follow_symlinks=False)
        os.rename(tmp, name, src_dir_fd=rep_dir, dst_dir_fd=rep_dir)
    except BaseException:
        _discard(tmp, rep_dir)
        raise


def same_content(src_dir: int, rep_dir: int, name: str, opener: Opener = default_opener) -> bool:
    """Compare the bytes of ``name`` on both sides (for ``--checksum``)."""
    src = _open_source(opener, name, src_dir)
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


def set_attrs(rep_dir: int, name: str, meta: Meta, *, keep_owner: bool) -> None:
    """Fix permissions (and owner) of an existing replica file without copying it."""
    fd = os.open(name, READ_FLAGS, dir_fd=rep_dir)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "is no longer a regular file")
        if keep_owner:
            os.fchown(fd, meta.uid, meta.gid)
        os.fchmod(fd, meta.mode)
    finally:
        os.close(fd)


def set_folder_meta(fd: int, meta: Meta, *, keep_owner: bool) -> None:
    if keep_owner:
        os.fchown(fd, meta.uid, meta.gid)
    os.fchmod(fd, meta.mode)
    os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
