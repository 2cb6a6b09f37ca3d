"""The daily log: ``LOGS/LOG-YYYY-MM-DD.txt``, shared safely by many processes.

Each line starts with ``YYYY-MM-DD HH:MM:SS``. Lines are buffered in memory
and appended in batches under a :class:`~synchro.pipeline.lock.FileLock`, so that several
processes (several pairs from cron, several scripts in one folder) never
interleave or cut each other's lines, while a run that copies thousands of
files does not pay a lock and an ``open`` per line. A batch is written at
least every half second, when the run ends, and before any refusal exits.

The name of the file follows the date of each line, so a run across
midnight continues in the next day's file. Names are escaped
(:func:`escape`) so that an entry is always exactly one line and no control
sequence reaches a terminal.

The log never stops a backup: a log folder that cannot be written, a full
disk or a console that went away is one warning on standard error, and the
run goes on (lines wait in memory, up to :data:`MAX_PENDING`, for the file).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TextIO

from ..endpoints.local.flags import O_BINARY, O_CLOEXEC, O_NOFOLLOW, O_NOINHERIT, O_NONBLOCK
from .lock import FileLock, not_a_regular_file

if TYPE_CHECKING:
    import logging

LOGS_DIR = "LOGS"
FLUSH_LINES = 512
FLUSH_SECONDS = 0.5
_STAMP_WIDTH = len("YYYY-MM-DD HH:MM:SS ")
# Lines kept in memory while the log file cannot be written (a full disk, a
# folder that is not writable); beyond that the oldest are dropped and
# counted, so that an ongoing run that lasts for months stays small.
MAX_PENDING = 10_000

Clock = Callable[[], datetime]


def _app_logger() -> logging.Logger | None:
    """The ``synchro`` logger of :mod:`logging`, if the application uses logging.

    An application that never imported :mod:`logging` cannot have configured
    a handler, so the import (a noticeable share of a small run) is skipped.
    """
    module = sys.modules.get("logging")
    return module.getLogger("synchro") if module is not None else None


def escape(text: str) -> str:
    """Make ``text`` safe for one log line.

    Backslashes are doubled; control and other non-printable characters
    become ``\\xNN``/``\\uNNNN``; bytes that were not valid UTF-8 (kept by
    Python as lone surrogates) become ``\\xNN`` of the original byte.
    """
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char == " " or char.isprintable():
            out.append(char)
        elif 0xDC80 <= code <= 0xDCFF:  # surrogateescape of an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def _warn(message: str) -> None:
    """One line on standard error, which may itself be gone."""
    with contextlib.suppress(OSError, ValueError):
        print(f"synchro: warning: {message}", file=sys.stderr, flush=True)


def log_dir(logpath: str | os.PathLike[str]) -> str:
    """``logpath/LOGS``, spelled as :mod:`pathlib` spells it: no ``.`` parts, no
    doubled or trailing ``/`` (pathlib itself is not imported: a few ms of
    every start)."""
    path = os.path.expanduser(os.fspath(logpath))
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return ("/" if path.startswith("/") else "") + "/".join([*parts, LOGS_DIR])


# Opened as the lock files are: O_NONBLOCK, so that a FIFO planted at the
# name cannot block the run (and every other run waiting for LOGS/.lock);
# O_NOFOLLOW, so that a symlink there is never a way to append to its target.
_LOG_FLAGS = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_BINARY | O_NOINHERIT
)
# What open(2) says for a name that is not a regular file, with these flags:
# a symlink, a FIFO nobody reads, a folder.
_NOT_A_FILE = frozenset({errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EISDIR})


def open_log_file(path: str) -> int:
    """A descriptor to append to the regular file at ``path``, created if missing.

    Anything else there (a symlink, a FIFO, a folder, a device, a socket) is
    an :class:`OSError` saying what it is: the "cannot write the log" case,
    never a wait and never a write elsewhere.
    """
    try:
        fd = os.open(path, _LOG_FLAGS, 0o644)
    except OSError as error:
        if error.errno not in _NOT_A_FILE:
            raise
        raise not_a_regular_file(path, error.errno) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # a FIFO that has a reader, a device
            raise not_a_regular_file(path, mode=mode)
        if O_NONBLOCK:  # Windows has no O_NONBLOCK (and no set_blocking on files)
            os.set_blocking(fd, True)  # a regular file: writes wait for the disk as usual
    except BaseException:
        os.close(fd)
        raise
    return fd


class DailyLog:
    """Writes timestamped lines to the daily file and (optionally) a console.

    ``logpath=None`` keeps no file (for :func:`synchro.mirror` without a log).
    ``console`` receives the same lines; ``None`` keeps the console quiet.
    """

    def __init__(
        self,
        logpath: str | os.PathLike[str] | None,
        console: TextIO | None = None,
        clock: Clock = datetime.now,
    ) -> None:
        self.folder = log_dir(logpath) if logpath is not None else None
        self.console = console
        self._clock = clock
        self._pending: list[tuple[str, str]] = []  # (date, line)
        self._last_flush = time.monotonic()
        self._lock: FileLock | None = None
        self._failing = False  # the last batch could not be written (warned once)
        self._dropped = 0  # lines lost while the file could not be written
        # The time stamp of the last line, reused within the same second: a
        # run that copies thousands of files would otherwise spend a good part
        # of its time formatting dates.
        self._second: datetime | None = None
        self._next_second: datetime | None = None
        self._stamp = ("", "")  # (date, date and time)
        self._logger: logging.Logger | None = None  # found once logging is imported

    def sibling(self) -> DailyLog:
        """A log for another process of the same run: the same files and clock, no console."""
        other = DailyLog(None, None, self._clock)
        other.folder = self.folder
        # A log folder that could not be written has been warned about by
        # this process already: the other one must not say it again.
        other._failing = self._failing
        return other

    def stamp(self, text: str) -> tuple[str, str]:
        """``text`` as a line of this log: (its date, the line with its time stamp).

        For another process of the run, whose lines this log writes
        (:meth:`relay`) stamped with the time they happened.
        """
        now = self._clock()
        second, following = self._second, self._next_second
        if second is None or following is None or not second <= now < following:
            second = now.replace(microsecond=0)
            self._second, self._next_second = second, second + timedelta(seconds=1)
            self._stamp = (f"{now:%Y-%m-%d}", f"{now:%Y-%m-%d %H:%M:%S}")
        date, stamp = self._stamp
        return date, f"{stamp} {text}"

    def relay(self, lines: list[tuple[str, str]]) -> None:
        """Log lines made by :meth:`stamp` (in another process), as :meth:`write` logs its own."""
        if not lines:
            return
        if self.folder is not None:
            self._pending.extend(lines)
        if self.console is not None:
            self._show("".join(f"{line}\n" for _, line in lines))
        logger = self._logger
        if logger is None:
            logger = self._logger = _app_logger()
        if logger is not None and logger.isEnabledFor(20):  # logging.INFO
            for _, line in lines:
                logger.info(line[_STAMP_WIDTH:])
        if self.folder is not None:
            self._flush_if_due()

    def flush_streams(self) -> None:
        """Write the console's and the standard streams' buffers, not the file.

        Enough before a fork: the lines pending for the file are this
        object's, which the forked process never writes (it logs through
        :meth:`sibling`), while a stream's buffer would be written by both.
        """
        if self.console is not None:
            try:
                self.console.flush()
            except OSError as error:
                self._lose_console(error)
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()

    def _ensure_folder(self) -> str:
        assert self.folder is not None
        if self._lock is None:
            os.makedirs(self.folder, exist_ok=True)
            # The lock lives beside what it guards: an flock on this file,
            # released by the kernel if the process dies. No timeout: a batch
            # waits as long as another process writes (Ctrl+C still stops it).
            self._lock = FileLock(os.path.join(self.folder, ".lock"))
        return self.folder

    def write(self, text: str, *, console: bool = True) -> None:
        """Log one line (``text`` must already be escaped where it holds names).

        ``console=False`` keeps the line off the console, for errors that the
        caller reports there itself.
        """
        date, line = self.stamp(text)
        # Queued for the file before it is shown: a Ctrl+C that lands between
        # the two must not leave a line on the console (an unbuffered one
        # shows it at once) that the file never gets.
        if self.folder is not None:
            self._pending.append((date, line))
        if console and self.console is not None:
            self._show(line + "\n")
        logger = self._logger
        if logger is None:
            logger = self._logger = _app_logger()
        if logger is not None and logger.isEnabledFor(20):  # logging.INFO
            logger.info(text)
        if self.folder is not None:
            # Inline, not _flush_if_due(): this runs for every entry of a run.
            full = len(self._pending) >= FLUSH_LINES and not self._failing
            if full or time.monotonic() - self._last_flush > FLUSH_SECONDS:
                self.flush()

    def _flush_if_due(self) -> None:
        # While the file cannot be written, retry by time only, not at every line.
        full = len(self._pending) >= FLUSH_LINES and not self._failing
        if full or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the pending lines. Never raises OSError: a log that cannot be
        written is one warning on standard error, and the run goes on."""
        if self.console is not None:
            try:
                self.console.flush()
            except OSError as error:
                self._lose_console(error)
        self._last_flush = time.monotonic()
        if not self._pending or self.folder is None:
            return
        try:
            self._append()
        except OSError as error:
            self._cannot_write(error)
        else:
            self._failing = False

    def _cannot_write(self, error: OSError) -> None:
        if not self._failing:
            self._failing = True
            _warn(
                f"cannot write the log in {escape(self.folder or '')}: {error.strerror or error}; "
                "the run goes on without it"
            )
        excess = len(self._pending) - MAX_PENDING
        if excess > 0:
            del self._pending[:excess]
            self._dropped += excess

    def _show(self, text: str) -> None:
        assert self.console is not None
        try:
            try:
                self.console.write(text)
            except UnicodeEncodeError:
                # A console whose encoding cannot show a name (LANG with
                # Latin-1, PYTHONIOENCODING=ascii): escaped there, whole in the file.
                encoding = getattr(self.console, "encoding", None) or "ascii"
                self.console.write(text.encode(encoding, "backslashreplace").decode(encoding))
        except OSError as error:
            self._lose_console(error)

    def _lose_console(self, error: OSError) -> None:
        # A console that went away must not stop a backup: the log file
        # still gets every line. A closed pipe (``synchro ... | head``) is
        # the reader's choice, not a problem: it ends the output silently.
        self.console = None
        if not isinstance(error, BrokenPipeError):
            _warn(
                f"cannot write to the console: {error.strerror or error}; the log file still gets every line"
            )

    def _append(self) -> None:
        folder = self._ensure_folder()
        pending = self._pending
        lost = ""
        if self._dropped:  # said first, in the file of the day it is said
            now = self._clock()
            lost = f"{now:%Y-%m-%d}"
            text = f"WARNING {self._dropped} log lines could not be written and were dropped"
            pending = [(lost, f"{now:%Y-%m-%d %H:%M:%S} {text}"), *pending]
        by_date: dict[str, list[str]] = {}
        for date, line in pending:
            by_date.setdefault(date, []).append(line)
        assert self._lock is not None
        with self._lock:
            for date, lines in by_date.items():
                data = ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
                fd = open_log_file(os.path.join(folder, f"LOG-{date}.txt"))
                try:
                    end = os.fstat(fd).st_size
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view) :]
                    except OSError:
                        # A full disk can stop a batch midway: cut it off, so
                        # that the file never ends in half a line (the lines
                        # stay pending). Every writer appends under the lock,
                        # so the end of the file is still this batch's.
                        with contextlib.suppress(OSError):
                            os.ftruncate(fd, end)
                        raise
                finally:
                    os.close(fd)
                # Dropped only once written: a Ctrl+C while waiting for the lock
                # or writing leaves the lines pending, and the close() that
                # follows an interruption writes them (the SUMMARY included).
                self._pending = [item for item in self._pending if item[0] != date]
                if date == lost:
                    self._dropped = 0

    def close(self) -> None:
        """Write what is pending. The file is opened per batch, so nothing stays
        open; calling this twice is harmless, and writing after it works."""
        self.flush()
