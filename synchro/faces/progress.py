"""A progress bar for long runs on an interactive terminal, drawn by :mod:`tqdm`.

The caller decides whether a bar is wanted (the command and the tasks: only
when standard output is a terminal and not ``-q``, so cron mail stays clean)
and builds a :class:`BarConsole` around the console stream. It serves twice:

- as the run's *console*: log lines are printed above the bar instead of
  through it (a line written while a bar is drawn would be cut into it);
- as the engine's *progress factory*: called with the run's totals once a
  plan has actions, it returns a :class:`Bar` that counts entries and bytes
  and shows the rate and the time left.

tqdm is imported only when a bar is made, so ``synchro --once`` on a run with
nothing to do, or with no terminal, never loads it. A bar appears only once
a run has lasted :data:`DELAY` seconds: short runs do not flash one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm

DELAY = 0.5  # seconds before a bar is drawn
BYTES_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}, {rate_fmt}]"


class Bar:
    """Entries and bytes done of one run; bytes drive the bar when there are any."""

    def __init__(self, console: BarConsole, total_entries: int, total_bytes: int, delay: float) -> None:
        from tqdm import tqdm  # here, not at the top: only a drawn bar pays for it

        self._console = console
        self._entries = 0
        self._bytes = 0
        self._total_entries = total_entries
        self._by_bytes = total_bytes > 0
        self._tqdm: tqdm[NoReturn] = tqdm(
            total=total_bytes if self._by_bytes else total_entries,
            desc=self._describe(),
            unit="B" if self._by_bytes else " entries",
            unit_scale=self._by_bytes,
            unit_divisor=1024,
            # tqdm puts the unit on the rate only; bytes say so on the counts too.
            bar_format=BYTES_FORMAT if self._by_bytes else None,
            file=console.stream,
            leave=False,  # the SUMMARY line that follows says it all
            dynamic_ncols=True,
            delay=delay,
        )

    def _describe(self) -> str:
        return f"{self._entries}/{self._total_entries} entries"

    @property
    def done(self) -> tuple[int, int]:
        """Entries and bytes done so far."""
        return self._entries, self._bytes

    def advance(self, entries: int, nbytes: int) -> None:
        self._entries += entries
        self._bytes += nbytes
        self._tqdm.set_description_str(self._describe(), refresh=False)
        self._tqdm.update(nbytes if self._by_bytes else entries)

    def write(self, text: str) -> None:
        self._tqdm.write(text, file=self._console.stream, end="")

    def close(self) -> None:
        self._tqdm.close()
        self._console.bar = None


class BarConsole:
    """A console stream that keeps log lines clear of the bar; also the progress factory.

    Only ``write`` and ``flush`` are used by the log (see
    :class:`synchro.pipeline.log.DailyLog`), so this is all of a stream it needs.
    """

    def __init__(self, stream: TextIO, *, delay: float | None = None) -> None:
        self.stream = stream
        self.delay = DELAY if delay is None else delay
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
        self.bar = Bar(self, total_entries, total_bytes, self.delay)
        return self.bar


def wanted(stream: TextIO, quiet: bool) -> bool:
    """Whether a run that prints on ``stream`` should draw a bar."""
    if quiet:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
