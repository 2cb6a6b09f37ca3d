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

Retention (:class:`synchro.options.KeepVersions`) is applied at the end of a
successful run: run folders that no rule keeps are removed (``PRUNED``).

Like the engine, the keeper works relative to folders opened with
``O_NOFOLLOW``, in the replica and in the versions folder alike.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import ConfigError
from .fds import DIR_FLAGS, DirStack, open_root
from .fdtree import lookup, make_folder, remove_tree, tree_size
from .filecopy import SourceChanged, SourceVanished, copy_file, copy_link, set_folder_meta
from .log import escape
from .options import KeepVersions, MirrorOptions
from .plan import Action, Op
from .scan import Kind, Meta, describe, meta_of

VERSION_FORMAT = "%Y-%m-%d_%H%M%S"
VERSION_NAME = re.compile(r"(\d{4})-(\d{2})-(\d{2})_(\d{2})(\d{2})(\d{2})")
# A run folder name already taken (two runs in one second, or a killed run
# of this second) moves the new one a second later, at most this many times.
NAME_TRIES = 3600

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
    (:class:`synchro.apply.ApplyContext`), which calls :meth:`keep` right
    before it overwrites or deletes a replica entry. The run folder is
    created on the first entry kept, so a run that changes nothing leaves
    nothing. :meth:`close` sets the permissions and times of the folders it
    made (after their content, as the mirror does); :meth:`prune` applies
    the retention.
    """

    def __init__(
        self,
        root: str,
        retention: KeepVersions,
        emit: Emit,
        *,
        clock: Clock = datetime.now,
        keep_owner: bool = False,
    ) -> None:
        self.root = root  # resolved by synchro.roots.check_versions
        self.retention = retention
        self._emit = emit
        self._clock = clock
        self._keep_owner = keep_owner
        self.started = clock()
        self.name: str | None = None  # the run folder's name, once made
        self._run_fd = -1
        self._stack: DirStack | None = None
        # Version folders made by this run: the replica folder's metadata to
        # give them at close (intermediate ones: as the replica folder was;
        # kept folders: as planned, before this run emptied them).
        self._folders: dict[str, Meta] = {}

    @property
    def folder(self) -> str | None:
        """The path of this run's version folder, once it exists."""
        return None if self.name is None else os.path.join(self.root, self.name)

    # --- keeping ------------------------------------------------------------------------------

    def keep(self, rep: DirStack, action: Action) -> None:
        """Keep the replica entry of ``action`` in the run folder.

        Afterwards a deleted entry (DELETE, RMDIR) is gone from the replica;
        an overwritten one (COPY, LINK) is still there, for the mirror to
        replace with its atomic rename. An entry already gone is not an
        error (there is nothing to keep).
        Errors on the replica's side propagate as they are (the apply step
        retries a read-only folder); errors on the versions side are
        :class:`KeepError`. Either way the replica entry stays in place.
        """
        is_folder = action.op is Op.RMDIR
        name = action.name
        try:
            st = os.stat(name, dir_fd=rep.fd(action.dir), follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode) != is_folder:
            # Swapped since the scan: as the plain removal would, fail.
            code = errno.ENOTDIR if is_folder else errno.EISDIR
            raise OSError(code, os.strerror(code), name)
        target = self._version_dir(rep, action.dir)
        rep_dir = rep.fd(action.dir)  # after: making version folders reads the replica's
        if is_folder:
            path = action.path
            try:
                make_folder(target, name)
            except OSError as error:
                raise self._failure(error) from None
            # As planned: the run has changed its time by emptying it.
            self._folders[path] = action.rep if action.rep is not None else meta_of(st)
            os.rmdir(name, dir_fd=rep_dir)
        else:
            try:
                os.stat(name, dir_fd=target, follow_symlinks=False)
            except FileNotFoundError:
                pass
            except OSError as error:
                raise self._failure(error) from None
            else:
                # A rename would silently replace it: never lose a kept version.
                raise KeepError(f"cannot keep the old version: {escape(self.folder or '')}/ already holds it")
            replaced = action.op in (Op.COPY, Op.LINK)
            if not (self._link(rep_dir, target, name) if replaced else self._move(rep_dir, target, name)):
                if not _exists(rep_dir, name):
                    return  # gone meanwhile: nothing to keep
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                    # A socket, FIFO or device holds no data to copy across file systems.
                    os.unlink(name, dir_fd=rep_dir)
                    return
                # Another file system: a complete copy first, then (for a deletion) the removal.
                if not self._copy_over(rep_dir, target, name, st):
                    return
                if not replaced:
                    os.unlink(name, dir_fd=rep_dir)
        suffix = "/" if is_folder else ""
        self._emit(f"KEPT {escape(action.path)}{suffix} -> {escape(self.folder or '')}/")

    def _move(self, rep_dir: int, target: int, name: str) -> bool:
        """Rename the entry into the version folder; False where that needs a copy (or it is gone)."""
        try:
            os.rename(name, name, src_dir_fd=rep_dir, dst_dir_fd=target)
        except OSError as error:
            if error.errno in (errno.EXDEV, errno.ENOENT):
                return False
            raise  # the replica's side (a read-only folder: the apply step retries)
        return True

    def _link(self, rep_dir: int, target: int, name: str) -> bool:
        """Add a hard link to the entry in the version folder (a link itself, never its target)."""
        try:
            os.link(name, name, src_dir_fd=rep_dir, dst_dir_fd=target, follow_symlinks=False)
        except OSError as error:
            if error.errno in (errno.EXDEV, errno.ENOENT):
                return False
            if error.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES):
                # No hard links here (FAT, exFAT; protected_hardlinks for another
                # user's file; too many links): move it, the mirror writes the new one.
                return self._move(rep_dir, target, name)
            raise self._failure(error) from None
        return True

    def _copy_over(self, rep_dir: int, target: int, name: str, st: os.stat_result) -> bool:
        """Copy entry ``name`` into the version folder, synced; False if it vanished meanwhile."""
        try:
            if stat.S_ISREG(st.st_mode):
                copy_file(rep_dir, target, name, keep_owner=self._keep_owner)
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=target)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                meta = meta_of(st, os.readlink(name, dir_fd=rep_dir))
                copy_link(target, name, meta, keep_owner=self._keep_owner)
            os.fsync(target)
        except SourceVanished:
            return False
        except FileNotFoundError:
            if not _exists(rep_dir, name):
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

    def _version_dir(self, rep: DirStack, rel: str) -> int:
        """The descriptor of folder ``rel`` of the run folder, made (with its parents) if needed."""
        stack = self._stack if self._stack is not None else self._open_run()
        try:
            return stack.fd(rel)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise self._failure(error) from None
        parts = rel.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in self._folders:
                continue
            # The replica's side first, outside the try: its errors are its own.
            meta = meta_of(os.fstat(rep.fd(prefix)))
            try:
                make_folder(stack.fd("/".join(parts[: depth - 1])), parts[depth - 1])
            except OSError as error:
                raise self._failure(error) from None
            self._folders[prefix] = meta
        try:
            return stack.fd(rel)
        except OSError as error:
            raise self._failure(error) from None

    def _open_run(self) -> DirStack:
        """Create this run's folder (and the versions folder, not its parents)."""
        try:
            with contextlib.suppress(FileExistsError):
                # Not makedirs: a versions folder on a drive that is not
                # mounted must not be made on the root disk.
                os.mkdir(self.root, 0o700)
            root_fd = open_root(self.root)
            try:
                for offset in range(NAME_TRIES):
                    name = version_name(self.started + timedelta(seconds=offset))
                    try:
                        os.mkdir(name, 0o700, dir_fd=root_fd)
                    except FileExistsError:
                        continue
                    break
                else:
                    raise KeepError(
                        f"cannot keep the old version: no free folder name in {escape(self.root)}"
                    )
                self._run_fd = os.open(name, DIR_FLAGS, dir_fd=root_fd)
            finally:
                os.close(root_fd)
        except KeepError:
            raise
        except OSError as error:
            raise KeepError(
                f"cannot keep the old version: cannot create a folder in {escape(self.root)}: {describe(error)}"
            ) from None
        self.name = name
        self._stack = DirStack(self._run_fd)
        return self._stack

    # --- the end of a run ---------------------------------------------------------------------

    def close(self) -> None:
        """Give the folders this run made their metadata (deepest first) and release them.

        Never raises: the kept entries are in place, only a folder's
        permissions or times would be off (one ``WARNING`` line).
        """
        if self._stack is None:
            return
        problem = ""
        for rel in sorted(self._folders, key=lambda path: path.count("/"), reverse=True):
            try:
                set_folder_meta(self._stack.fd(rel), self._folders[rel], keep_owner=self._keep_owner)
            except OSError as error:
                problem = problem or f"{escape(rel)}: {describe(error)}"
        self._folders.clear()
        self._stack.close()
        os.close(self._run_fd)
        self._stack, self._run_fd = None, -1
        if problem:
            self._emit(
                f"WARNING cannot set the times of version folder {escape(self.folder or '')}/{problem}"
            )

    def prune(self) -> list[str]:
        """Apply the retention now (the end of a successful run); return the names removed."""
        return prune_versions(self.root, self.retention, self._clock(), self._emit, current=self.name)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def make_keeper(
    versions: str | None,
    options: MirrorOptions,
    emit: Emit,
    *,
    clock: Clock = datetime.now,
    keep_owner: bool = False,
) -> Keeper | None:
    """The keeper of one run: None without a versions folder, or for a dry run (which moves nothing)."""
    if versions is None or options.dry_run:
        return None
    return Keeper(versions, options.keep_versions, emit, clock=clock, keep_owner=keep_owner)


# --- retention --------------------------------------------------------------------------------


def run_folders(root_fd: int) -> list[str]:
    """The run folders in an open versions folder, oldest first (other names are ignored)."""
    names = []
    for name in os.listdir(root_fd):
        if version_time(name) is None:
            continue
        try:
            st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            names.append(name)
    return sorted(names)


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
        if keep.count is not None and index < keep.count:
            continue
        if max_age is not None and _naive(now) - moment <= max_age:
            continue
        doomed.append(name)
    return sorted(doomed)


def _prune_reason(keep: KeepVersions) -> str:
    reasons = []
    if keep.days is not None:
        reasons.append(f"older than {keep.days} day{'s' if keep.days != 1 else ''}")
    if keep.count is not None:
        reasons.append(f"not one of the {keep.count} newest")
    return " and ".join(reasons)


def prune_versions(
    root: str, keep: KeepVersions, now: datetime, emit: Emit, *, current: str | None = None
) -> list[str]:
    """Remove the run folders of ``root`` that ``keep`` lets go; log each (``PRUNED``).

    A folder that cannot be removed is a ``WARNING``: pruning never fails a run.
    """
    if keep.forever:
        return []
    try:
        root_fd = open_root(root)
    except FileNotFoundError:
        return []
    except OSError as error:
        emit(f"WARNING cannot prune versions in {escape(root)}: {describe(error)}")
        return []
    removed = []
    try:
        for name in to_prune(run_folders(root_fd), keep, now):
            if name == current:
                continue  # this run's own versions (a clock set backwards)
            try:
                remove_tree(root_fd, name)
            except OSError as error:
                emit(f"WARNING cannot prune {escape(os.path.join(root, name))}/: {describe(error)}")
                continue
            removed.append(name)
            emit(f"PRUNED {escape(os.path.join(root, name))}/ ({_prune_reason(keep)})")
    finally:
        os.close(root_fd)
    return removed


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
        root_fd = open_root(root)
    except FileNotFoundError:
        return []
    found = []
    try:
        for name in run_folders(root_fd):
            run_fd = os.open(name, DIR_FLAGS, dir_fd=root_fd)
            stack = DirStack(run_fd)
            try:
                meta = lookup(stack, path)
                if meta is None:
                    continue
                entries, size = tree_size(stack, path) if meta.kind is Kind.DIR else (0, meta.size)
                if meta.kind is Kind.LINK:
                    size = 0
                found.append(KeptVersion(name, path, meta.kind, size, entries, meta.mtime_ns, meta.target))
            finally:
                stack.close()
                os.close(run_fd)
    finally:
        os.close(root_fd)
    return found


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
