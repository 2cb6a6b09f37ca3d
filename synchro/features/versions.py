"""Old versions: keep what the mirror replaces or deletes, prune them, list them.

With a versions folder (``versions = PATH``), a replica entry that a run is
about to overwrite or delete is first kept as
``PATH/YYYY-MM-DD_HHMMSS/<its path in the replica>``, one folder per run,
named after the run's start. Nothing is copied on the same file system, and
at every moment the entry is under at least one of its names:

- *deleted*: moved with one ``rename`` (atomic);
- *overwritten*: a hard link is added in the version folder, then the
  mirror's own atomic rename puts the new entry over the replica name. The
  replica never lacks the name, and a copy that fails (a source file that
  changes while it is read) leaves the replica as it was. Where hard links
  are refused (some file systems, other users' files) the entry is moved.
- *across file systems*: copied into the version folder, complete and
  synced, and only then removed from the replica (deleted) or replaced (by
  the mirror): a crash in between leaves both, never neither.

A deleted folder is kept whole: its content is moved entry by entry (the
plan removes children first) into the same relative paths, then the emptied
folder itself gets its place, with its permissions and times.

Example::

    from synchro import mirror

    mirror("src", "dst", versions="/mnt/backup/VERSIONS", keep_versions="30d,10")
    # dst/notes.txt overwritten -> its old bytes in VERSIONS/2026-03-01_030000/notes.txt

A run also lists what it *adds* (entries where the replica had none), so
that ``restore --at`` can leave them out: ``PATH/YYYY-MM-DD_HHMMSS.added``
beside the run folders, the paths relative to the replica, each ended by a
NUL byte (the one byte a path cannot hold, so names with newlines need no
escaping). Only the top of an added tree is listed (what a new folder holds
is new too). The list is written to a temporary while the run goes (memory
stays flat however much is added) and renamed into place at the end; a run
that adds nothing writes none. Into an empty replica everything is new:
the list is the one record ``"."`` however much is added, and the very
first run (nothing in ``PATH`` yet) writes not even that, since there is
nothing before it to go back to. A run that only adds makes no run folder.

Retention (:class:`synchro.options.KeepVersions`) is applied at the end of a
successful run: run folders that no rule keeps are removed (``PRUNED``), and
with them the addition lists no complete restore can use any more.

Like the engine, the keeper never follows a link, in the replica and in
the versions folder alike: it reaches both as the mirror reaches the
replica (:class:`~synchro.endpoints.base.Folders`: relative to folders
opened with ``O_NOFOLLOW`` where the system has folder descriptors, through
paths on Windows).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from ..endpoints.base import (
    LOCK_NAME,
    TEMP_PREFIX,
    Folders,
    Kind,
    Meta,
    SourceChanged,
    SourceVanished,
    describe,
)
from ..endpoints.resolve import open_folders
from ..errors import ConfigError
from ..options import KeepVersions, MirrorOptions
from ..pipeline.log import escape
from ..pipeline.plan import Action, Op

VERSION_FORMAT = "%Y-%m-%d_%H%M%S"
VERSION_NAME = re.compile(r"(\d{4})-(\d{2})-(\d{2})_(\d{2})(\d{2})(\d{2})")
# A run folder name already taken (two runs in one second, or a killed run
# of this second) moves the new one a second later, at most this many times.
NAME_TRIES = 3600
# ``<run name>.added``: the list of what that run added (see the module docstring).
ADDED_SUFFIX = ".added"
# The one record of a run into an empty replica: everything is its own (no
# entry is named ".", so it cannot be mistaken for one).
EVERYTHING = "."
# Lists are read and written in chunks of this size: memory stays flat.
ADDED_CHUNK = 1 << 20

Emit = Callable[[str], None]
Clock = Callable[[], datetime]


class KeepError(OSError):
    """An old version could not be kept; the replica entry was left where it was.

    An ``OSError`` without an ``errno``, so that the apply step reports it as
    ``FAILED path: <message>`` and never mistakes it for a vanished entry.
    """


def version_name(moment: datetime) -> str:
    return f"{moment:{VERSION_FORMAT}}"


def version_time(name: str) -> datetime | None:
    """The run time a version folder is named after (naive), or None for other names."""
    match = VERSION_NAME.fullmatch(name)
    if match is None:
        return None
    try:
        # Not strptime: it imports a module on first use, which a run that
        # has dropped its privileges may no longer be able to read.
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        return datetime(year, month, day, hour, minute, second)
    except ValueError:  # 2026-13-01_000000
        return None


def parse_at(text: str) -> str:
    """A user's ``--at`` value: a moment written as version folders are named."""
    value = text.strip()
    if version_time(value) is None:
        raise ConfigError(f"--at: expected YYYY-MM-DD_HHMMSS (as the versions are named), got {text!r}")
    return value


def clean_path(text: str, flag: str = "--path") -> str:
    """A user's path relative to the replica ("" for the whole tree); no ``..``, not absolute."""
    if text.startswith("/"):
        raise ConfigError(f"{flag}: give a path relative to the pair (such as docs/notes.txt), got {text!r}")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"{flag}: '..' is not allowed in {text!r}")
    return "/".join(parts)


def _naive(moment: datetime) -> datetime:
    # Folder names carry the clock's wall time; ages compare wall times.
    return moment.replace(tzinfo=None)


class Keeper:
    """Keeps replica entries in this run's version folder; see the module docstring.

    Made by :func:`make_keeper` for one run and handed to the apply step
    (:class:`synchro.pipeline.apply.ApplyContext`), which calls :meth:`keep` right
    before it overwrites or deletes a replica entry, and :meth:`added` right
    after it makes an entry where there was none. The run folder is created
    on the first entry kept, the list of additions on the first one added,
    so a run that changes nothing leaves nothing. :meth:`close` sets the
    permissions and times of the folders it made (after their content, as
    the mirror does) and puts the list in place; :meth:`prune` applies the
    retention.

    ``fresh``: the replica was empty before this run, whose additions are
    therefore listed as one record (see the module docstring).
    """

    def __init__(
        self,
        root: str,
        retention: KeepVersions,
        emit: Emit,
        *,
        clock: Clock = datetime.now,
        keep_owner: bool = False,
        fresh: bool = False,
        replica: Folders | None = None,
    ) -> None:
        self.root = root  # resolved by synchro.pipeline.roots.check_versions
        # The replica's folders, as the run holds them open: what is kept comes from there.
        self._replica = replica
        self.retention = retention
        self._emit = emit
        self._clock = clock
        self._keep_owner = keep_owner
        self._fresh = fresh
        self.started = clock()
        self.name: str | None = None  # the run folder's name, once made
        self.added_name: str | None = None  # the run name its list of additions got, once in place
        # The list of additions while the run goes: a temporary in the
        # versions folder (held open, as is that folder), renamed at close.
        self._added: BinaryIO | None = None
        self._added_root: Folders | None = None
        self._added_temp = f"{TEMP_PREFIX}{version_name(self.started)}{ADDED_SUFFIX}"
        self._added_done = False  # nothing more to list: everything said, or the list given up
        # The last folder this run added, with a "/": what is below it is new
        # too and goes without saying. The plan is depth first, so that
        # comes right after it: one path to remember, not a set of them.
        self._added_under: str | None = None
        self._run: Folders | None = None
        # Version folders made by this run: the replica folder's metadata to
        # give them at close (intermediate ones: as the replica folder was;
        # kept folders: as planned, before this run emptied them).
        self._folders: dict[str, Meta] = {}

    @property
    def folder(self) -> str | None:
        """The path of this run's version folder, once it exists."""
        return None if self.name is None else os.path.join(self.root, self.name)

    # --- keeping ------------------------------------------------------------------------------

    def keep(self, action: Action) -> None:
        """Keep the replica entry of ``action`` in the run folder.

        Afterwards a deleted entry (DELETE, RMDIR) is gone from the replica;
        an overwritten one (COPY, LINK) is still there, for the mirror to
        replace with its atomic rename. An entry already gone is not an
        error (there is nothing to keep).
        Errors on the replica's side propagate as they are (the apply step
        retries a read-only folder); errors on the versions side are
        :class:`KeepError`. Either way the replica entry stays in place.
        """
        rep = self._replica
        assert rep is not None, "a keeper that keeps is made with the replica's folders"
        is_folder = action.op is Op.RMDIR
        path = action.path
        here = rep.lookup(path)
        if here is None:
            return
        if (here.kind is Kind.DIR) != is_folder:
            # Swapped since the scan: as the plain removal would, fail.
            code = errno.ENOTDIR if is_folder else errno.EISDIR
            raise OSError(code, os.strerror(code), action.name)
        run = self._version_dir(rep, action.dir)
        if is_folder:
            try:
                run.make_folder(path)
            except OSError as error:
                raise self._failure(error) from None
            # As planned: the run has changed its time by emptying it.
            self._folders[path] = action.rep if action.rep is not None else here
            rep.remove_folder(path)
        else:
            try:
                there = run.lookup(path)
            except OSError as error:
                raise self._failure(error) from None
            if there is not None:
                # A rename would silently replace it: never lose a kept version.
                raise KeepError(f"cannot keep the old version: {escape(self.folder or '')}/ already holds it")
            replaced = action.op in (Op.COPY, Op.LINK)
            if not (self._link(rep, run, path) if replaced else self._move(rep, run, path)):
                if rep.lookup(path) is None:
                    return  # gone meanwhile: nothing to keep
                if here.kind not in (Kind.FILE, Kind.LINK):
                    # A socket, FIFO or device holds no data to copy across file systems.
                    rep.remove(path)
                    return
                # Another file system: a complete copy first, then (for a deletion) the removal.
                if not self._copy_over(rep, run, path, here):
                    return
                if not replaced:
                    rep.remove(path)
        suffix = "/" if is_folder else ""
        self._emit(f"KEPT {escape(action.path)}{suffix} -> {escape(self.folder or '')}/")

    def added(self, action: Action) -> None:
        """Note that ``action`` made a replica entry where there was none (for ``restore --at``).

        Called right after the entry is made (the list holds only what
        exists). Never raises: a list that cannot be written is one
        ``WARNING`` line, the run goes on (its additions are in place).
        """
        if self._added_done:
            return
        if self._fresh:
            # Into an empty replica everything is this run's: one record says so.
            self._added_done = True
            if not self._history():
                return  # the first run: nothing before it to go back to, so nothing at all
            path = EVERYTHING
        else:
            path = action.path
            if self._added_under is not None and path.startswith(self._added_under):
                return
        try:
            stream = self._added if self._added is not None else self._open_added()
            # Buffered: a system call per many paths, not per path.
            stream.write(os.fsencode(path) + b"\0")
        except OSError as error:
            self._drop_added(describe(error))
            return
        if action.op is Op.MKDIR and path != EVERYTHING:
            self._added_under = path + "/"

    def _open_added(self) -> BinaryIO:
        """Create the temporary list of additions (and the versions folder, not its parents)."""
        root = self._open_root()
        try:
            fd = root.create(self._added_temp)
        except OSError:
            root.close()
            raise
        self._added_root = root
        self._added = os.fdopen(fd, "wb", buffering=ADDED_CHUNK)
        return self._added

    def _history(self) -> bool:
        """Whether the versions folder holds a run folder or a list: a past to go back to."""
        try:
            root = open_folders(self.root)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # then the list cannot be written either: a WARNING says so
        try:
            return bool(run_folders(root) or addition_lists(root))
        finally:
            root.close()

    def _drop_added(self, reason: str) -> None:
        """Give up the list of additions: remove its temporary, say so once."""
        self._added_done = True
        stream, root = self._added, self._added_root
        self._added, self._added_root = None, None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()  # closes the descriptor even when the last write fails
        if root is not None:
            with contextlib.suppress(OSError):
                root.remove(self._added_temp)
            root.close()
        self._emit(
            f"WARNING cannot list the entries this run added in {escape(self.root)}: {escape(reason)}; "
            "a restore --at before this run will include them"
        )

    def _move(self, rep: Folders, run: Folders, path: str) -> bool:
        """Rename the entry into the version folder; False where that needs a copy (or it is gone)."""
        try:
            run.move_from(rep, path)
        except OSError as error:
            if error.errno in (errno.EXDEV, errno.ENOENT):
                return False
            raise  # the replica's side (a read-only folder: the apply step retries)
        return True

    def _link(self, rep: Folders, run: Folders, path: str) -> bool:
        """Add a hard link to the entry in the version folder (a link itself, never its target)."""
        try:
            run.link_from(rep, path)
        except OSError as error:
            if error.errno in (errno.EXDEV, errno.ENOENT):
                return False
            if error.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES):
                # No hard links here (FAT, exFAT; protected_hardlinks for another
                # user's file; too many links): move it, the mirror writes the new one.
                return self._move(rep, run, path)
            raise self._failure(error) from None
        return True

    def _copy_over(self, rep: Folders, run: Folders, path: str, here: Meta) -> bool:
        """Copy entry ``path`` into the version folder, synced; False if it vanished meanwhile."""
        try:
            if here.kind is Kind.FILE:
                run.copy_from(rep, path, keep_owner=self._keep_owner)
                run.sync(path, folder=False)
            else:
                run.copy_link(path, here, keep_owner=self._keep_owner)
            run.sync(path.rpartition("/")[0], folder=True)
        except SourceVanished:
            return False
        except FileNotFoundError:
            if rep.lookup(path) is None:
                return False
            raise self._failure(OSError(errno.ENOENT, os.strerror(errno.ENOENT))) from None
        except SourceChanged as error:
            raise KeepError(f"cannot keep the old version: {error}") from None
        except OSError as error:
            raise self._failure(error) from None
        return True

    def _failure(self, error: OSError) -> KeepError:
        where = self.folder or self.root
        return KeepError(f"cannot keep the old version in {escape(where)}: {describe(error)}")

    def _version_dir(self, rep: Folders, rel: str) -> Folders:
        """This run's folder, with folder ``rel`` in it made (with its parents) if needed."""
        run = self._run if self._run is not None else self._open_run()
        parts = rel.split("/") if rel else []
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in self._folders:
                continue
            # The replica's side first, outside the try: its errors are its own.
            meta = rep.lookup(prefix)
            if meta is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), prefix)
            try:
                run.make_folder(prefix)
            except OSError as error:
                raise self._failure(error) from None
            self._folders[prefix] = meta
        return run

    def _open_run(self) -> Folders:
        """Create this run's folder (and the versions folder, not its parents)."""
        try:
            root = self._open_root()
            try:
                for offset in range(NAME_TRIES):
                    name = version_name(self.started + timedelta(seconds=offset))
                    if root.lookup(name + ADDED_SUFFIX) is not None:
                        continue  # an earlier run of that second that only added: not ours
                    try:
                        if root.make_folder(name):
                            break
                    except FileExistsError:
                        continue  # something else has that name
                else:
                    raise KeepError(
                        f"cannot keep the old version: no free folder name in {escape(self.root)}"
                    )
                self._run = root.subtree(name)
            finally:
                root.close()
        except KeepError:
            raise
        except OSError as error:
            raise KeepError(
                f"cannot keep the old version: cannot create a folder in {escape(self.root)}: {describe(error)}"
            ) from None
        self.name = name
        return self._run

    def _open_root(self) -> Folders:
        """Open the versions folder, made if needed."""
        with contextlib.suppress(FileExistsError):
            # Not makedirs: a versions folder on a drive that is not
            # mounted must not be made on the root disk.
            os.mkdir(self.root, 0o700)
        return open_folders(self.root)

    def _free_name(self, root: Folders) -> str:
        """A run name for a run that only added: taken by no run folder nor list."""
        for offset in range(NAME_TRIES):
            name = version_name(self.started + timedelta(seconds=offset))
            if root.lookup(name) is None and root.lookup(name + ADDED_SUFFIX) is None:
                return name
        raise OSError(f"no free name in {escape(self.root)}")

    # --- the end of a run ---------------------------------------------------------------------

    def close(self) -> None:
        """Give the folders this run made their metadata (deepest first), put the list of
        additions in place, and release them.

        Called however the run ends (an interrupted run's additions are
        listed too). Never raises: the kept entries are in place, only a
        folder's permissions or times would be off, or the list missing (one
        ``WARNING`` line each).
        """
        self._close_folders()
        self._publish_added()

    def _publish_added(self) -> None:
        """Rename the list of additions to ``<run name>.added``: complete, or not there at all."""
        stream, root = self._added, self._added_root
        if stream is None or root is None:
            return
        try:
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
            self._added = None
            name = self.name if self.name is not None else self._free_name(root)
            root.replace(self._added_temp, name + ADDED_SUFFIX)
        except OSError as error:
            self._drop_added(describe(error))
            return
        self._added_root = None
        root.close()
        self.added_name = name

    def _close_folders(self) -> None:
        run = self._run
        if run is None:
            return
        problem = ""
        for rel in sorted(self._folders, key=lambda path: path.count("/"), reverse=True):
            try:
                run.set_folder_meta(rel, self._folders[rel], keep_owner=self._keep_owner)
            except OSError as error:
                problem = problem or f"{escape(rel)}: {describe(error)}"
        self._folders.clear()
        run.close()
        self._run = None
        if problem:
            self._emit(
                f"WARNING cannot set the times of version folder {escape(self.folder or '')}/{problem}"
            )

    def prune(self) -> list[str]:
        """Apply the retention now (the end of a successful run); return the names removed."""
        current = self.name if self.name is not None else self.added_name
        return prune_versions(self.root, self.retention, self._clock(), self._emit, current=current)


def make_keeper(
    versions: str | None,
    options: MirrorOptions,
    emit: Emit,
    *,
    clock: Clock = datetime.now,
    keep_owner: bool = False,
    replica: Folders | None = None,
) -> Keeper | None:
    """The keeper of one run: None without a versions folder, or for a dry run (which moves nothing).

    ``replica`` holds the replica's folders open, before the run: into an
    empty one, the run's additions are one record (or none).
    """
    if versions is None or options.dry_run:
        return None
    fresh = replica is not None and _is_empty(replica)
    return Keeper(
        versions,
        options.keep_versions,
        emit,
        clock=clock,
        keep_owner=keep_owner,
        fresh=fresh,
        replica=replica,
    )


def _is_empty(replica: Folders) -> bool:
    try:
        # Two names read, not the whole listing; the run lock's file (Windows) is no content.
        return not [name for name in replica.first_names("", 2) if name != LOCK_NAME]
    except OSError:
        return False  # unknown: list the additions, the safe side


# --- retention --------------------------------------------------------------------------------


def run_folders(root: Folders) -> list[str]:
    """The run folders in an open versions folder, oldest first (other names are ignored)."""
    return _runs(root, "", Kind.DIR)


def addition_lists(root: Folders) -> list[str]:
    """The names of the runs with a list of additions in an open versions folder, oldest first."""
    return _runs(root, ADDED_SUFFIX, Kind.FILE)


def _runs(root: Folders, suffix: str, kind: Kind) -> list[str]:
    """Run names of the entries named ``<run name><suffix>`` of the right kind, oldest first."""
    names = []
    for entry, meta in root.list("").entries.items():
        name = entry.removesuffix(suffix) if suffix else entry
        if (suffix and name == entry) or version_time(name) is None:
            continue
        if meta.kind is kind:
            names.append(name)
    return sorted(names)


def read_added(root: Folders, name: str) -> Iterator[str]:
    """The paths run ``name`` added, as listed: relative to the replica, or ``EVERYTHING``.

    Only used to leave entries out, never to open anything, so a damaged
    list can make a restore miss entries but never reach outside it. An
    unterminated last record (a list cut short) is ignored.
    """
    fd = root.open_read(name + ADDED_SUFFIX)
    with os.fdopen(fd, "rb", buffering=0) as stream:
        rest = b""
        while chunk := stream.read(ADDED_CHUNK):
            *records, rest = (rest + chunk).split(b"\0")
            for record in records:
                if record:
                    yield os.fsdecode(record)


def to_prune(names: list[str], keep: KeepVersions, now: datetime) -> list[str]:
    """The run folders (oldest first) that no rule keeps at ``now``; pure."""
    if keep.forever:
        return []
    max_age = keep.max_age
    newest_first = sorted(names, reverse=True)
    doomed = []
    for index, name in enumerate(newest_first):
        moment = version_time(name)
        assert moment is not None
        if keep.newest is not None and index < keep.newest:
            continue
        if max_age is not None and _naive(now) - moment <= max_age:
            continue
        doomed.append(name)
    return sorted(doomed)


def stale_lists(
    lists: list[str], removed: list[str], remaining: list[str], keep: KeepVersions, now: datetime
) -> list[tuple[str, str]]:
    """The addition lists to remove after pruning: (run name, why), oldest first; pure.

    ``restore --at T`` is exact while every run from T on still has its
    run folder and its list. So a list goes when a run folder at or after
    it is pruned (``removed``): the restores it served are incomplete
    anyway. Otherwise it stays, even older than every remaining run folder
    (``remaining``), with one bound: under an age rule, a list older than
    that age and than every remaining run folder goes too (a pair that only
    ever adds would keep them forever). The count rule counts run folders
    only.
    """
    if keep.forever:
        return []
    horizon = max(removed, default=None)
    oldest = min(remaining, default=None)
    max_age = keep.max_age
    doomed = []
    for name in lists:
        if horizon is not None and name <= horizon:
            doomed.append((name, "goes with the pruned run folders"))
            continue
        moment = version_time(name)
        assert moment is not None
        if max_age is not None and _naive(now) - moment > max_age and (oldest is None or name < oldest):
            doomed.append((name, f"older than {keep.days} day{'s' if keep.days != 1 else ''}"))
    return doomed


def _prune_reason(keep: KeepVersions) -> str:
    reasons = []
    if keep.days is not None:
        reasons.append(f"older than {keep.days} day{'s' if keep.days != 1 else ''}")
    if keep.newest is not None:
        reasons.append(f"not one of the {keep.newest} newest")
    return " and ".join(reasons)


def prune_versions(
    root: str, keep: KeepVersions, now: datetime, emit: Emit, *, current: str | None = None
) -> list[str]:
    """Remove the run folders of ``root`` that ``keep`` lets go, and the addition lists that
    go with them (:func:`stale_lists`); log each (``PRUNED``). Return the run folders removed.

    Leftover temporary lists (of a killed run) are removed whatever the
    retention. Whatever cannot be removed is a ``WARNING``: pruning never
    fails a run.
    """
    try:
        kept = open_folders(root)
    except FileNotFoundError:
        return []
    except OSError as error:
        emit(f"WARNING cannot prune versions in {escape(root)}: {describe(error)}")
        return []
    removed: list[str] = []
    try:
        _remove_temporaries(kept, root, emit)
        if keep.forever:
            return []
        folders = run_folders(kept)
        for name in to_prune(folders, keep, now):
            if name == current:
                continue  # this run's own versions (a clock set backwards)
            try:
                kept.remove_tree(name)
            except OSError as error:
                emit(f"WARNING cannot prune {escape(os.path.join(root, name))}/: {describe(error)}")
                continue
            removed.append(name)
            emit(f"PRUNED {escape(os.path.join(root, name))}/ ({_prune_reason(keep)})")
        remaining = [name for name in folders if name not in removed]
        for name, reason in stale_lists(addition_lists(kept), removed, remaining, keep, now):
            if name == current:
                continue
            shown = escape(os.path.join(root, name + ADDED_SUFFIX))
            try:
                kept.remove(name + ADDED_SUFFIX)
            except FileNotFoundError:
                continue
            except OSError as error:
                emit(f"WARNING cannot prune {shown}: {describe(error)}")
                continue
            emit(f"PRUNED {shown} ({reason})")
    finally:
        kept.close()
    return removed


def _remove_temporaries(kept: Folders, root: str, emit: Emit) -> None:
    """Remove the temporary lists of additions that killed runs left (the current one is in place)."""
    for name in kept.list("").entries:
        if not (name.startswith(TEMP_PREFIX) and name.endswith(ADDED_SUFFIX)):
            continue
        try:
            kept.remove(name)
        except FileNotFoundError:
            continue
        except OSError as error:
            emit(f"WARNING cannot remove {escape(os.path.join(root, name))}: {describe(error)}")


# --- listing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeptVersion:
    """One kept version of a path: the run folder it is in, and what it is."""

    version: str  # the run folder's name: the --at value that restores it
    path: str  # relative to the replica; "" for the whole run folder
    kind: Kind
    size: int  # bytes: the file's, or those of every file below a folder
    entries: int  # entries below a folder; 0 for files and links
    mtime_ns: int
    target: str | None = None  # a link's target text


def list_versions(root: str, path: str = "") -> list[KeptVersion]:
    """The kept versions of ``path`` ("" = every run folder), oldest first; none if ``root`` is missing."""
    try:
        kept = open_folders(root)
    except FileNotFoundError:
        return []
    found = []
    try:
        for name in run_folders(kept):
            run = kept.subtree(name)
            try:
                meta = run.lookup(path)
                if meta is None:
                    continue
                entries, size = _tree_size(run, path) if meta.kind is Kind.DIR else (0, meta.size)
                if meta.kind is Kind.LINK:
                    size = 0
                found.append(KeptVersion(name, path, meta.kind, size, entries, meta.mtime_ns, meta.target))
            finally:
                run.close()
    finally:
        kept.close()
    return found


def _tree_size(tree: Folders, rel: str) -> tuple[int, int]:
    """(entries, bytes of files) below folder ``rel``; one listing held at a time."""
    count = size = 0
    pending = [rel]
    while pending:
        folder = pending.pop()
        for name, meta in tree.list(folder).entries.items():
            count += 1
            if meta.kind is Kind.FILE:
                size += meta.size
            elif meta.kind is Kind.DIR:
                pending.append(f"{folder}/{name}" if folder else name)
    return count, size


def format_versions(rows: list[KeptVersion], human_bytes: Callable[[int], str]) -> str:
    """The table of ``inv versions``: one row per kept version, oldest first."""
    table = [["version", "size", "modified", "what"]]
    for row in rows:
        modified = datetime.fromtimestamp(row.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
        shown = escape(row.path) if row.path else "."
        if row.kind is Kind.DIR:
            if not row.path:
                modified = "-"  # the run folder's own time says nothing
            what = f"{shown}{'' if shown == '.' else '/'} ({row.entries} entr{'y' if row.entries == 1 else 'ies'})"
        elif row.kind is Kind.LINK:
            what = f"{shown} -> {escape(row.target or '')}"
        else:
            what = shown
        table.append([row.version, human_bytes(row.size), modified, what])
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    return "\n".join(
        "  ".join([line[0].ljust(widths[0]), line[1].rjust(widths[1]), line[2].ljust(widths[2]), line[3]])
        for line in table
    )
