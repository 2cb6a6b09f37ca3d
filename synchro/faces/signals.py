"""SIGTERM handled like Ctrl+C, for the command and the tasks.

systemd, ``kill`` and a cron timeout send SIGTERM; turned into
:class:`~synchro.errors.Terminated` (a :class:`KeyboardInterrupt`) it stops
a run the same clean way: temporaries removed, the log says interrupted,
the lock released. The previous handler comes back afterwards.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from ..errors import Terminated


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
