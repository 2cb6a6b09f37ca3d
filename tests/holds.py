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

import synchro.pipeline.helper
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

    patch(synchro.pipeline.helper, "_claimed", claimed)
    patch(synchro.pipeline.helper, "apply_plan", apply_plan)
    patch(Helper, "take_back", take_back)
    patch(Helper, "steal", steal)

    def close() -> None:
        for fd in (claimed_r, claimed_w, begun_r, begun_w):
            os.close(fd)

    return close


def hold_handed_folders(patch: Setattr) -> Callable[[], None]:
    """Holds for a first copy's new folders handed over once the guard has
    passed (``Helper.hand_over``); returns what closes their pipes.

    - At the end of its walk, the run takes back every sub-tree it gave
      before the helper takes any: the helper's own part is empty, as when
      a first copy's walk ends before the helper has asked for work.
    - Of the folders handed over, the helper takes the first one before the
      run takes any, and takes no other before the run has taken the last.

    Both processes then copy files, whatever the speed of either.
    """
    released_r, released_w = os.pipe()  # the run has taken back the walk's sub-trees
    first_r, first_w = os.pipe()  # the helper has taken the first folder handed over
    last_r, last_w = os.pipe()  # the run has taken the last
    helper = synchro.pipeline.helper
    real_claimed, real_then_handed = helper._claimed, helper._then_handed
    real_take_back, real_claim = Helper.take_back, Helper.claim
    # In the helper, its copies (made by the fork): whether it is applying,
    # whether it was released, and the folders handed over it asked for.
    applying, released, asked = [False], [False], [0]
    # In the run.
    took_back, claimed_once = [False], [False]

    def then_handed(*args: Any) -> Any:  # in the helper: it applies from here on
        applying[0] = True
        return real_then_handed(*args)

    def claimed(tokens: int) -> bool:  # in the helper
        if not applying[0]:
            if not released[0]:
                released[0] = True
                os.read(released_r, 1)
            return real_claimed(tokens)
        asked[0] += 1
        if asked[0] == 2:
            os.read(last_r, 1)
        got = real_claimed(tokens)
        if got and asked[0] == 1:
            os.write(first_w, b".")
        return got

    def take_back(self: Helper) -> Any:
        steps = real_take_back(self)
        if steps is None and not took_back[0]:
            took_back[0] = True
            os.write(released_w, b".")
        return steps

    def claim(self: Helper) -> Any:
        if claimed_once[0]:
            return real_claim(self)
        claimed_once[0] = True
        os.read(first_r, 1)
        unit = real_claim(self)
        os.write(last_w, b".")
        return unit

    patch(helper, "_claimed", claimed)
    patch(helper, "_then_handed", then_handed)
    patch(Helper, "take_back", take_back)
    patch(Helper, "claim", claim)

    def close() -> None:
        for fd in (released_r, released_w, first_r, first_w, last_r, last_w):
            os.close(fd)

    return close
