"""SIGTERM handled like Ctrl+C, for the command and the tasks.

systemd, ``kill`` and a cron timeout send SIGTERM; turned into
:class:`~synchro.errors.Terminated` (a :class:`KeyboardInterrupt`) it stops
a run the same clean way: temporaries removed, the log says interrupted,
the lock released. On Windows, Ctrl+Break (SIGBREAK, which would end the
process on the spot) stops a run as Ctrl+C does: exit 130. The previous
handlers come back afterwards.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from ..errors import CtrlBreak, Terminated


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _ctrl_break(signum: int, frame: FrameType | None) -> None:
    raise CtrlBreak()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _terminate)
    # Windows only: Ctrl+Break.
    ctrl_break = getattr(signal, "SIGBREAK", None)
    previous_break = signal.signal(ctrl_break, _ctrl_break) if ctrl_break is not None else None
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if ctrl_break is not None:
            signal.signal(ctrl_break, previous_break)
