"""What the keepers of versions off this machine share: the list of additions, and pruning.

The local keeper (:class:`synchro.features.versions.Keeper`) lists what a
run adds and prunes its versions folder through folder descriptors. The
keepers of a replica on a server (:mod:`synchro.endpoints.sftp.versions`) and
in a bucket (:mod:`synchro.endpoints.s3.versions`) keep the same layout
where the replica is, with the same rules, written once here:

- :class:`Additions` collects the records of ``<run>.added`` while the run
  goes (only the top of an added tree; into an empty replica one record,
  ``.``, or none on the very first run) in a spooled temporary: memory
  stays small however much is added, and the keeper uploads it at the end;
- :func:`prune_store` applies the retention (:func:`~synchro.features.versions.to_prune`,
  :func:`~synchro.features.versions.stale_lists`) through a :class:`PrunableStore`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from typing import IO, NamedTuple, Protocol

from ..options import KeepVersions
from ..pipeline.plan import Action, Op
from .versions import ADDED_CHUNK, ADDED_SUFFIX, EVERYTHING, _prune_reason, stale_lists, to_prune

Emit = Callable[[str], None]


class Additions:
    """The list of what one run adds, as :meth:`synchro.features.versions.Keeper.added` lists it.

    ``fresh``: the replica was empty before the run, so everything it adds
    is one record; ``history`` says whether the versions folder holds any
    run folder or list already (asked once, only then): without one, the
    first run lists nothing at all. :meth:`note` never raises; a list that
    cannot be made is given up, and :attr:`problem` says why.
    """

    def __init__(self, *, fresh: bool, history: Callable[[], bool]) -> None:
        self._fresh = fresh
        self._history = history
        self._done = False  # nothing more to list: everything said, or the list given up
        self._under: str | None = None  # the last folder added, with a "/": what is below goes unsaid
        self._stream: IO[bytes] | None = None
        self.problem = ""

    def note(self, action: Action) -> None:
        """Record ``action``, which made an entry where there was none."""
        if self._done:
            return
        try:
            if self._fresh:
                self._done = True
                if not self._history():
                    return  # the first run: nothing before it to go back to
                path = EVERYTHING
            else:
                path = action.path
                if self._under is not None and path.startswith(self._under):
                    return
            if self._stream is None:
                # Held open across calls, closed by discard(): no block can hold it.
                self._stream = tempfile.SpooledTemporaryFile(max_size=ADDED_CHUNK)  # noqa: SIM115
            self._stream.write(os.fsencode(path) + b"\0")
        except OSError as error:
            self.give_up(error.strerror or str(error))
            return
        if action.op is Op.MKDIR and path != EVERYTHING:
            self._under = path + "/"

    def give_up(self, reason: str) -> None:
        self._done = True
        self.problem = self.problem or reason
        self.discard()

    def take(self) -> IO[bytes] | None:
        """The list, from its start, if anything was listed (the caller uploads it, then discards)."""
        if self._stream is None:
            return None
        self._stream.seek(0)
        return self._stream

    def discard(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


def warning(where: str, reason: str) -> str:
    """The line of a list of additions that could not be kept (the local keeper's words)."""
    return (
        f"WARNING cannot list the entries this run added in {where}: {reason}; "
        "a restore --at before this run will include them"
    )


class StoreNames(NamedTuple):
    """A versions folder's names, by run name, oldest first."""

    folders: list[str]
    lists: list[str]


class PrunableStore(Protocol):
    """A versions folder where old runs can be removed."""

    def names(self) -> StoreNames: ...

    def remove_run(self, name: str) -> None:
        """Remove run folder ``name`` whole (FileNotFoundError: nothing of it was there)."""
        ...

    def remove_list(self, name: str) -> None: ...

    def shown(self, name: str) -> str:
        """How a run folder (``name/``) or a list (``name.added``) is named in a line of the log."""
        ...


def prune_store(
    store: PrunableStore, keep: KeepVersions, now: datetime, emit: Emit, *, current: str | None
) -> list[str]:
    """Remove the run folders no rule keeps, and the lists that go with them, as
    :func:`synchro.features.versions.prune_versions` does locally; ``PRUNED`` lines.

    Whatever cannot be removed is a ``WARNING``: pruning never fails a run.
    Returns the run folders removed.
    """
    if keep.forever:
        return []
    try:
        found = store.names()
    except OSError as error:
        emit(f"WARNING cannot prune versions in {store.shown('')}: {error.strerror or error}")
        return []
    removed: list[str] = []
    for name in to_prune(found.folders, keep, now):
        if name == current:
            continue  # this run's own versions (a clock set backwards)
        try:
            store.remove_run(name)
        except FileNotFoundError:
            continue  # gone already: nothing was pruned now
        except OSError as error:
            emit(f"WARNING cannot prune {store.shown(name + '/')}: {error.strerror or error}")
            continue
        removed.append(name)
        emit(f"PRUNED {store.shown(name + '/')} ({_prune_reason(keep)})")
    remaining = [name for name in found.folders if name not in removed]
    for name, reason in stale_lists(found.lists, removed, remaining, keep, now):
        if name == current:
            continue
        shown = store.shown(name + ADDED_SUFFIX)
        try:
            store.remove_list(name)
        except OSError as error:
            emit(f"WARNING cannot prune {shown}: {error.strerror or error}")
            continue
        emit(f"PRUNED {shown} ({reason})")
    return removed
