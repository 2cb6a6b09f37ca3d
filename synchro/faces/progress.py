"""A progress bar for long runs on an interactive terminal, drawn by :mod:`tqdm`.

The caller decides whether a bar is wanted (the command and the tasks: only
when standard output is a terminal and not ``-q``, so cron mail stays clean)
and builds a :class:`BarConsole` around the console stream. It serves twice:

- as the run's *console*: log lines are printed above the bar instead of
  through it (a line written while a bar is drawn would be cut into it);
- as the engine's *progress factory*: called with the run's totals once a
  plan has actions, it returns a :class:`Bar` that counts entries and bytes
  and shows the rate and the time left.

What a bar promises:

- it counts what it says: every entry of the plan once it is done (both
  processes' when a run is shared), and bytes as they are written, large
  files chunk by chunk (see :mod:`synchro.pipeline.apply`);
- its percentage (and so the time left) is the smaller of the two shares
  done, entries and bytes: thousands of small files left after the large
  ones do not show as "99%, 00:00 left";
- sizes and rates are in binary units, as the result lines say them
  (KiB, MiB, GiB);
- it ends cleared: when the run ends, is interrupted or fails, the line it
  used is blank again, and nothing of it is left glued to the next line;
- a terminal that goes away stops the bar, never the run.

A bar is drawn only once a run has lasted :data:`DELAY` seconds (short runs
do not flash one), and tqdm is imported only then: ``synchro --once`` with
nothing to do, or with no terminal, never loads it. The bar is redrawn at
most every :data:`REFRESH` seconds, and after each log line printed above it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .drawing import BinaryBar

DELAY = 0.5  # seconds before a bar is drawn
REFRESH = 0.1  # seconds between two redraws of a bar
TICKS = 10_000  # the bar's own count: the share done, in ten-thousandths


class Bar:
    """Entries and bytes done of one run; bytes drive the bar when there are any."""

    def __init__(
        self,
        console: BarConsole,
        total_entries: int,
        total_bytes: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console
        self._entries = 0
        self._bytes = 0
        self._total_entries = total_entries
        self._total_bytes = total_bytes
        self._by_bytes = total_bytes > 0
        self._clock = clock
        self._due = clock() + console.delay  # when the bar may be drawn
        self._drawn: BinaryBar | None = None
        self._stopped = False  # closed, or its terminal went away

    @property
    def done(self) -> tuple[int, int]:
        """Entries and bytes done so far."""
        return self._entries, self._bytes

    @property
    def drawn(self) -> bool:
        """Whether the bar is on the screen (it may not be yet, or any more)."""
        return self._drawn is not None

    def advance(self, entries: int, nbytes: int) -> None:
        self._entries += entries
        self._bytes += nbytes
        bar = self._drawn
        if bar is None:
            if not self._stopped and self._clock() >= self._due:
                self._draw()  # with what is done so far
            return
        try:
            bar.set_description_str(self._describe(), refresh=False)
            bar.bytes_done = self._bytes
            # tqdm redraws at most every REFRESH seconds (miniters=0: also
            # when the share done has not moved since).
            bar.update(max(0, self._share() - bar.n))
        except OSError:
            self._stop()

    def grow(self, entries: int, nbytes: int) -> None:
        """More to do: a sub-tree planned while the run applies (a first copy's folders)."""
        self._total_entries += entries
        self._total_bytes += nbytes
        by_bytes = self._total_bytes > 0
        bar = self._drawn
        if bar is not None:
            bar.bytes_total = self._total_bytes
            if by_bytes and not self._by_bytes:  # drawn before any byte was known
                from .drawing import BYTES_FORMAT

                bar.bar_format = BYTES_FORMAT
        self._by_bytes = by_bytes

    def write(self, text: str) -> None:
        """Print log lines above the bar: cleared, the lines, drawn again."""
        bar = self._drawn
        if bar is not None:
            try:
                bar.clear()
            except OSError:
                self._stop()
                bar = None
        self._console.stream.write(text)  # an error here is the log's to handle
        if bar is not None:
            try:
                bar.refresh()
            except OSError:
                self._stop()

    def close(self) -> None:
        """Clear the bar's line (if it was drawn); the console prints plainly again."""
        if self._console.bar is self:
            self._console.bar = None
        self._stop()

    def _describe(self) -> str:
        return f"{self._entries}/{self._total_entries} entries"

    def _share(self) -> int:
        """The share done, in TICKS: the smaller of the entries' and the bytes'."""
        entries = self._entries / self._total_entries if self._total_entries else 1.0
        nbytes = self._bytes / self._total_bytes if self._total_bytes else 1.0
        return int(min(entries, nbytes, 1.0) * TICKS)

    def _draw(self) -> None:
        from .drawing import BYTES_FORMAT, ENTRIES_FORMAT, BinaryBar  # only a drawn bar loads tqdm

        try:
            bar = BinaryBar(
                bytes_done=self._bytes,
                bytes_total=self._total_bytes,
                total=TICKS,
                initial=self._share(),
                desc=self._describe(),
                bar_format=BYTES_FORMAT if self._by_bytes else ENTRIES_FORMAT,
                file=self._console.stream,
                leave=False,  # cleared at the end: the SUMMARY line that follows says it all
                dynamic_ncols=True,
                position=0,  # this line, whatever other bars this process has made
                mininterval=self._console.refresh,
                miniters=0,
                delay=0,  # drawn now: the delay is this class's
            )
        except OSError:
            self._stopped = True
            return
        self._drawn = bar

    def _stop(self) -> None:
        self._stopped = True
        bar, self._drawn = self._drawn, None
        if bar is not None:
            with contextlib.suppress(OSError):  # a terminal that went away: nothing to clear
                bar.close()
                bar.wipe()


class BarConsole:
    """A console stream that keeps log lines clear of the bar; also the progress factory.

    Only ``write`` and ``flush`` are used by the log (see
    :class:`synchro.pipeline.log.DailyLog`), so this is all of a stream it needs.
    """

    def __init__(self, stream: TextIO, *, delay: float | None = None, refresh: float | None = None) -> None:
        self.stream = stream
        self.delay = DELAY if delay is None else delay
        self.refresh = REFRESH if refresh is None else refresh
        self.bar: Bar | None = None

    def write(self, text: str) -> int:
        if self.bar is not None:
            self.bar.write(text)
        else:
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __call__(self, total_entries: int, total_bytes: int) -> Bar:
        self.bar = Bar(self, total_entries, total_bytes)
        return self.bar


def wanted(stream: TextIO, quiet: bool) -> bool:
    """Whether a run that prints on ``stream`` should draw a bar."""
    if quiet:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
