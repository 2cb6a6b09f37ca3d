"""The daily log: ``LOGS/LOG-YYYY-MM-DD.txt``, shared safely by many processes.

Each line starts with ``YYYY-MM-DD HH:MM:SS``. Lines are buffered in memory
and appended in batches under a :class:`filelock.FileLock`, so that several
processes (several pairs from cron, several scripts in one folder) never
interleave or cut each other's lines, while a run that copies thousands of
files does not pay a lock and an ``open`` per line. A batch is written at
least every half second, when the run ends, and before any refusal exits.

The name of the file follows the date of each line, so a run across
midnight continues in the next day's file. Names are escaped
(:func:`escape`) so that an entry is always exactly one line and no control
sequence reaches a terminal.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from filelock import FileLock

LOGS_DIR = "LOGS"
FLUSH_LINES = 512
FLUSH_SECONDS = 0.5

Clock = Callable[[], datetime]

_logger = logging.getLogger("synchro")


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


def log_dir(logpath: str | os.PathLike[str]) -> Path:
    return Path(logpath).expanduser() / LOGS_DIR


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

    def _ensure_folder(self) -> Path:
        assert self.folder is not None
        if self._lock is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            # The lock lives beside what it guards; filelock's Unix lock is an
            # flock on this file, released by the kernel if the process dies.
            self._lock = FileLock(self.folder / ".lock", mode=0o666)
        return self.folder

    def write(self, text: str, *, console: bool = True) -> None:
        """Log one line (``text`` must already be escaped where it holds names).

        ``console=False`` keeps the line off the console, for errors that the
        caller reports there itself.
        """
        now = self._clock()
        line = f"{now:%Y-%m-%d %H:%M:%S} {text}"
        # Queued for the file before it is shown: a Ctrl+C that lands between
        # the two must not leave a line on the console (an unbuffered one
        # shows it at once) that the file never gets.
        if self.folder is not None:
            self._pending.append((f"{now:%Y-%m-%d}", line))
        if console and self.console is not None:
            self.console.write(line + "\n")
        if _logger.isEnabledFor(logging.INFO):
            _logger.info(text)
        if self.folder is None:
            return
        if len(self._pending) >= FLUSH_LINES or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.console is not None:
            self.console.flush()
        self._last_flush = time.monotonic()
        if not self._pending or self.folder is None:
            return
        folder = self._ensure_folder()
        by_date: dict[str, list[str]] = {}
        for date, line in self._pending:
            by_date.setdefault(date, []).append(line)
        assert self._lock is not None
        with self._lock:
            for date, lines in by_date.items():
                data = ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
                fd = os.open(
                    folder / f"LOG-{date}.txt",
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                    0o644,
                )
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                # Dropped only once written: a Ctrl+C while waiting for the lock
                # or writing leaves the lines pending, and the close() that
                # follows an interruption writes them (the SUMMARY included).
                self._pending = [item for item in self._pending if item[0] != date]

    def close(self) -> None:
        """Write what is pending. The file is opened per batch, so nothing stays
        open; calling this twice is harmless, and writing after it works."""
        self.flush()
