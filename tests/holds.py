"""Holds that make a run shared with a helper process divide its work the same way every time.

How a shared run divides its work depends on how fast each process gets
on: at the end of its walk the run takes back the sub-trees the helper has
not started yet, and while applying it takes back the ones the helper has
not begun to apply. On a busy machine the helper may start late and lose
everything it was given. A test that needs the helper to do something
installs these holds: the run waits on a pipe until the helper has reached
the point, instead of hoping it is fast enough.

Imported by the tests and by the scripts they start (``sys.path`` gets
this folder), so that it needs nothing but synchro.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import synchro.endpoints.local.replica
import synchro.pipeline.helper
from synchro.endpoints.local.replica import LOCAL
from synchro.pipeline.helper import Helper

Setattr = Callable[[Any, str, Any], None]


def hold_shared_runs(patch: Setattr, *, keep: str = "all") -> Callable[[], None]:
    """Install the holds with ``patch`` (pytest's ``monkeypatch.setattr``, or
    the built-in in a script); returns what closes their pipes.

    - At the end of its walk, the run takes nothing back before the helper
      has taken every sub-tree given (``keep="all"``: the helper keeps them
      all), or the first one (``keep="first"``).
    - While applying, the run asks for nothing back before the helper has
      begun to apply its part: the helper's first sub-tree stays with it.
    - Copies are carried out one at a time, in plan order, as on a RAM disk
      (on a real disk small copies go to threads): a test that counts or
      holds the copies of a process sees each one where it happens.
    """
    claimed_r, claimed_w = os.pipe()  # a byte per sub-tree the helper takes
    begun_r, begun_w = os.pipe()  # a byte when the helper begins to apply
    real_claimed, real_apply = synchro.pipeline.helper._claimed, synchro.pipeline.helper.apply_plan
    real_take_back, real_steal = Helper.take_back, Helper.steal
    first_slice = [True]  # in the helper: a copy of this list, made by the fork

    def claimed(tokens: int) -> bool:  # in the helper
        got = real_claimed(tokens)
        if got:
            os.write(claimed_w, b".")
        return got

    def apply_plan(actions: Any, ctx: Any) -> None:  # in the helper (the run has its own apply_plan)
        if first_slice[0]:
            first_slice[0] = False
            os.write(begun_w, b".")
        real_apply(actions, ctx)

    def take_back(self: Helper) -> Any:
        if not getattr(self, "held_take_back", False):
            self.held_take_back = True  # type: ignore[attr-defined]
            if not self.stopped:
                for _ in self.given if keep == "all" else self.given[:1]:
                    os.read(claimed_r, 1)
        return real_take_back(self)

    def steal(self: Helper) -> Any:
        if not getattr(self, "held_steal", False):
            self.held_steal = True  # type: ignore[attr-defined]
            if not self.stopped:
                os.read(begun_r, 1)
        return real_steal(self)

    patch(synchro.endpoints.local.replica, "concurrency_for", lambda fs_type: LOCAL)
    patch(synchro.pipeline.helper, "_claimed", claimed)
    patch(synchro.pipeline.helper, "apply_plan", apply_plan)
    patch(Helper, "take_back", take_back)
    patch(Helper, "steal", steal)

    def close() -> None:
        for fd in (claimed_r, claimed_w, begun_r, begun_w):
            os.close(fd)

    return close
