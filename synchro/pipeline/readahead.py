"""Start reading the next source files before their copies begin.

On a disk with a cold cache, a small file's copy is mostly waiting for its
read, and each process copies one file at a time. Telling the source which
files are copied next (:meth:`~synchro.endpoints.base.Source.read_ahead`)
puts their reads in flight together: the disk serves many at once while the
copies go on in order, in one thread, with nothing handed between threads
(benchmarks/README.md, "Reading ahead instead of threads").

The applier tells a :class:`ReadAhead` the steps it will take, in the order
it takes them: the plan's, then each folder's as an ``Op.TREE`` lists it.
A folder listed while applying is applied before what remains of the
folders around it, so its steps are read ahead first too (a stack of
lists, as the applier's own). At most :data:`AHEAD` files are read ahead
of the copies begun; what the stack holds is one position per list that
still has files to read ahead, never a copy of the steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..endpoints.base import SMALL_COPY, Source
from .plan import Action, Op, Step

# Files read ahead of the copies begun: the reads the disk is given at once.
# On 20k small files on ext4, cold, 16, 64 and 256 did alike (within the
# spread, benchmarks/README.md); 64 holds most folders' files whole.
AHEAD = 64


def _worth_reading(step: Step) -> bool:
    """A copy of a small file. A larger one is read in order by its copy,
    which the kernel reads ahead of by itself."""
    return (
        isinstance(step, Action)
        and step.op is Op.COPY
        and step.src is not None
        and 0 < step.src.size <= SMALL_COPY
    )


class ReadAhead:
    """Reads the sources of the next copies ahead of them (see the module's docstring)."""

    def __init__(self, src: Source, ahead: int | None = None) -> None:
        self._src = src
        self._ahead = AHEAD if ahead is None else ahead
        self._on = True  # until the source says it never reads ahead
        # Lists of steps still to read ahead of, and the index to go on from;
        # the last is the one applied next.
        self._lists: list[tuple[Sequence[Step], int]] = []
        self._in_flight = 0  # files read ahead whose copies have not begun

    def add(self, steps: Sequence[Step]) -> None:
        """``steps`` are applied next, before what remains of those added earlier."""
        if self._on:
            self._lists.append((steps, 0))
            self._fill()

    def copying(self, action: Action) -> None:
        """The copy of ``action`` begins (whatever its outcome)."""
        if self._in_flight and _worth_reading(action):
            self._in_flight -= 1
            if self._in_flight <= self._ahead // 2:
                self._fill()  # in batches: one call per folder for half the window

    def _fill(self) -> None:
        folder: str | None = None
        names: list[str] = []
        lists = self._lists
        while lists and self._in_flight < self._ahead:
            steps, index = lists.pop()
            while index < len(steps) and self._in_flight < self._ahead:
                step = steps[index]
                index += 1
                if _worth_reading(step):
                    assert isinstance(step, Action)
                    if step.dir != folder:
                        self._send(folder, names)
                        folder, names = step.dir, []
                    names.append(step.name)
                    self._in_flight += 1
            if index < len(steps):
                lists.append((steps, index))
        self._send(folder, names)

    def _send(self, folder: str | None, names: list[str]) -> None:
        if folder is not None and names and self._on and not self._src.read_ahead(folder, names):
            self._on = False
            self._lists.clear()
            self._in_flight = 0  # nothing was read: no copy need count down
