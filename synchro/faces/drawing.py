"""The :mod:`tqdm` bar that :mod:`synchro.faces.progress` draws: binary units, no thread.

Imported only when a bar is drawn (tqdm costs a noticeable share of a
short run's start).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, NoReturn

from tqdm import tqdm

from ..features.status import human_bytes

if TYPE_CHECKING:
    _Tqdm = tqdm[NoReturn]
else:
    _Tqdm = tqdm  # generic for the type checker only

# tqdm's own size formatting divides by 1024 but says "kB", "MB", "GB", and
# formats the rate in units of 1000: the bar says what the result lines
# say (KiB, MiB, GiB; see human_bytes) with fields of its own.
BYTES_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {done}/{size} [{elapsed}<{remaining}, {speed}]"
ENTRIES_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"
# Columns left free at the end of the line: the terminal echoes "^C" where
# the cursor is, and a bar as wide as the screen would wrap that echo onto
# the next line, out of reach of the clearing of the bar's line.
MARGIN = 4


class BinaryBar(_Tqdm):
    """A tqdm bar that also shows bytes: ``done``, ``size`` and ``speed`` in binary units.

    The bar's own count (``n`` of ``total``) is whatever the caller
    measures progress in; the bytes are set by the caller in
    :attr:`bytes_done` and :attr:`bytes_total`.
    """

    # No monitor thread: a thread alive in this process would keep the next
    # cycle from sharing its work with a forked helper (see
    # synchro.pipeline.helper.may_share), and it only matters for bars that
    # are not updated for many seconds, which ours redraws itself.
    monitor_interval = 0

    def __init__(self, *, bytes_done: int, bytes_total: int, **options: Any) -> None:
        # Set before tqdm draws the bar for the first time (in its __init__).
        self.bytes_done = self.bytes_before = bytes_done  # those before: not part of the speed
        self.bytes_total = bytes_total
        super().__init__(**options)

    @property
    def format_dict(self) -> MutableMapping[str, Any]:
        fields = super().format_dict
        if fields.get("ncols"):
            fields["ncols"] = max(fields["ncols"] - MARGIN, 20)
        elapsed, moved = fields["elapsed"], self.bytes_done - self.bytes_before
        fields["done"] = human_bytes(self.bytes_done)
        fields["size"] = human_bytes(self.bytes_total)
        fields["speed"] = f"{human_bytes(int(moved / elapsed))}/s" if elapsed and moved else "?/s"
        return fields

    def wipe(self) -> None:
        """Blank the whole line, the terminal's "^C" echo after the bar included."""
        width = self.ncols or 80
        self.fp.write("\r" + " " * (width - 1) + "\r")
        self.fp.flush()
