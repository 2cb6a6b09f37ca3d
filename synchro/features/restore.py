"""Restore a pair, or one path of it, from the replica, or as it was at an earlier run.

:func:`restore` copies into a folder the user names (``--to``), keeping the
path relative to the pair (``--path docs/a.txt --to /tmp/r`` writes
``/tmp/r/docs/a.txt``), so that ``--to SOURCE --force`` puts things back in
place. It never writes into the replica or the versions folder, never into
the source unless told so with ``force``, and never replaces an entry that
already exists in the target without ``force``: every entry it would
replace is found before anything is written. It adds and replaces, never
deletes.

**As of a run** (``at``, a moment written ``YYYY-MM-DD_HHMMSS`` as the runs
are named): the state of the replica just before the first run at or after
that moment. Each run folder holds the replica entries that run replaced or
deleted, as they were just before it, and each run's list of additions
(:mod:`synchro.features.versions`) the paths it created where there was nothing.
For each path, the first of these runs that did either decides: a kept
entry is how the path was (restored), an addition means it was not there
(left out, with all below it); a path no run from T on touched is taken
from the replica as it is. A folder is the union of what these hold, up to
a run that replaced it by a file or link or that added it anew.

Nothing is followed: every read and write goes through the trees as the
mirror reaches them (:class:`~synchro.endpoints.base.Folders`: relative to
folders opened with ``O_NOFOLLOW``, or through paths on Windows); files are
written to a temporary name and renamed, as the mirror does.

A replica on another machine (``sftp://``, ``s3://``) and its versions are
read through :class:`~synchro.features.history.TreeReader` and
:class:`~synchro.features.history.VersionStore` (:func:`~synchro.features.history.open_remote`);
what is restored is planned by the same code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..endpoints.base import LOCK_NAME, Folders, Kind, Meta, SourceChanged, SourceVanished, describe
from ..endpoints.local.fdtree import join
from ..endpoints.resolve import local_endpoint, open_folders, replica_at
from ..errors import ConfigError, ExitCode
from ..pipeline.log import escape
from ..pipeline.roots import is_remote, place, resolve, where_in
from .versions import ADDED_SUFFIX, EVERYTHING, addition_lists, clean_path, parse_at, read_added, run_folders

if TYPE_CHECKING:
    from .history import TreeReader, VersionStore

Emit = Callable[[str], None]


@dataclass
class RestoreReport:
    """What a restore wrote; ``failed`` holds (path, reason) of entries it could not."""

    target: str
    path: str
    at: str | None
    entries: int = 0
    files: int = 0
    bytes_copied: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.FAILED if self.failed else ExitCode.OK

    def summary(self) -> str:
        what = escape(self.path) if self.path else "the whole pair"
        when = f"as of {self.at}" if self.at else "from the replica"
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return (
            f"RESTORED {what} {when} into {escape(self.target)}: {_count(self.entries, 'entry', 'entries')}, "
            f"{_count(self.files, 'file')}, {_count(self.bytes_copied, 'byte')}{failed} "
            f"(exit {int(self.exit_code)})"
        )


def _count(number: int, one: str, many: str = "") -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


@dataclass
class _Tree:
    """What the restored state is read from: one run from the restored moment on, or the replica."""

    folders: Folders | None  # the run folder (or the replica); None: a run that only added
    remote: TreeReader | None = None  # the tree, when it is on another machine (folders is None then)
    added: set[str] = field(default_factory=set)  # the paths the run added
    above: set[str] = field(default_factory=set)  # the folders with an added path below them
    everything: bool = False  # the run was into an empty replica: all it holds it added

    def read_added(self, kept: Folders, name: str) -> None:
        self.add_records(read_added(kept, name))

    def add_records(self, paths: Iterable[str]) -> None:
        """Take in the records of the run's list of additions."""
        for path in paths:
            if path == EVERYTHING:
                self.everything = True
                continue
            self.added.add(path)
            parent = path.rpartition("/")[0]
            while parent and parent not in self.above:
                self.above.add(parent)
                parent = parent.rpartition("/")[0]

    def made(self, path: str) -> bool:
        """Whether this run added ``path`` (where there was nothing)."""
        return self.everything or path in self.added

    @property
    def holds(self) -> bool:
        """Whether this tree holds entries (a run that only added holds none)."""
        return self.folders is not None or self.remote is not None

    def listing(self, rel: str) -> dict[str, Meta]:
        if self.remote is not None:
            return self.remote.list(rel).entries
        assert self.folders is not None
        entries = self.folders.list(rel).entries
        if not rel:
            entries.pop(LOCK_NAME, None)  # the run lock's file (Windows): never part of the pair
        return entries

    def lookup(self, rel: str) -> Meta | None:
        if self.remote is not None:
            return self.remote.lookup(rel)
        return self.folders.lookup(rel) if self.folders is not None else None


# The trees a folder's content is read from, in order: (tree index, whether
# the tree holds the folder; if not, only its list of additions matters).
Origins = list[tuple[int, bool]]


@dataclass(frozen=True)
class _Node:
    """One entry of the state to restore: where it is read from, and what it is."""

    rel: str
    meta: Meta
    origin: int  # index of the tree it is read from (runs oldest first, the replica last)
    own: bool  # inside the restored path (False: a folder on the way to it)
    leave: bool = False  # a folder's second visit, after its content


def _merge(
    trees: list[_Tree], rel: str, origins: Origins, only: str | None
) -> Iterator[tuple[str, Meta, int, Origins]]:
    """The entries of folder ``rel`` as of the restored moment: (name, meta, origin, origins below).

    ``origins`` are the trees that say something about folder ``rel``, in
    order. A name is decided by the first of them that holds it (it was
    there: taken from that tree) or added it (it was not: left out). A
    folder's own origins are those from there on, up to one that holds it
    as something else or added it anew (the folder as it was did not exist
    before that run): those that hold it as a folder, and those that do not
    hold it but added something below it.
    """
    listings = {index: trees[index].listing(rel) if held else {} for index, held in origins}
    names = {only} if only is not None else set().union(*listings.values())
    for name in sorted(names):
        path = join(rel, name)
        meta: Meta | None = None
        origin = -1
        below: Origins = []
        for index, _ in origins:
            tree, here = trees[index], listings[index].get(name)
            if meta is None:
                if here is not None:
                    meta, origin = here, index  # first it was there: as this tree holds it
                    if meta.kind is not Kind.DIR:
                        break
                    below.append((index, True))
                elif tree.made(path):
                    break  # first it was added: it did not exist at the restored moment
                elif path in tree.above:
                    below.append((index, False))  # not held here, but what it added below counts
                continue
            # A folder: its content is read from here on, up to a run that made it anew.
            if tree.made(path) or (here is not None and here.kind is not Kind.DIR):
                break
            if here is not None:
                below.append((index, True))
            elif path in tree.above:
                below.append((index, False))
        if meta is not None:
            yield name, meta, origin, below if meta.kind is Kind.DIR else []


def _nodes(trees: list[_Tree], path: str) -> Iterator[_Node]:
    """The entries to restore, depth first: a folder before its content, and again (``leave``) after."""
    replica = len(trees) - 1
    root = trees[replica].lookup("")
    assert root is not None
    parts = path.split("/") if path else []
    # Depth-first stack of (node, origins of its content, remaining parts of the path).
    pending: list[tuple[_Node, Origins, list[str]]] = [
        (
            _Node("", root, replica, own=not parts),
            [(index, tree.holds) for index, tree in enumerate(trees)],
            parts,
        )
    ]
    while pending:
        node, origins, rest = pending.pop()
        if node.leave:
            yield node
            continue
        yield node
        if node.meta.kind is not Kind.DIR:
            continue
        pending.append((_Node(node.rel, node.meta, node.origin, node.own, leave=True), [], []))
        children = []
        for name, meta, origin, below in _merge(trees, node.rel, origins, rest[0] if rest else None):
            own = node.own or len(rest) == 1
            children.append((_Node(join(node.rel, name), meta, origin, own), below, rest[1:]))
        pending.extend(reversed(children))


def _check_target(
    target: str, replica: str | None, versions: str | None, source: str | None, *, force: bool
) -> None:
    # By identity, as the mirror's own checks: a bind mount or a symlink
    # is another name for the same folder.
    goal = place(target)
    for role, root in (("replica", replica), ("versions folder", versions)):
        if root is None:
            continue
        there = place(root)
        inside = where_in(goal, there)
        if inside is not None or where_in(there, goal) is not None:
            relation = "is" if inside == "" else ("is inside" if inside else "contains")
            raise ConfigError(
                f"--to {escape(target)} {relation} the {role} {escape(root)}; restore into another folder"
            )
    inside = where_in(goal, place(source)) if source is not None else None
    if inside is not None and not force:
        relation = "is the source folder" if inside == "" else f"is inside the source {escape(source or '')}"
        raise ConfigError(
            f"--to {escape(target)} {relation}: restoring there replaces your files; "
            "add --force if that is what you want"
        )
    if os.path.lexists(target) and not os.path.isdir(target):
        raise ConfigError(f"--to {escape(target)} is not a folder")


def restore(
    replica: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    path: str = "",
    at: str | None = None,
    versions: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
    force: bool = False,
    emit: Emit | None = None,
    profile: str | None = None,
    timeout: float = 30.0,
) -> RestoreReport:
    """Restore ``path`` of the pair ("" = all of it) into folder ``target``; see the module docstring.

    ``source`` is the pair's source, refused as a target unless ``force``.
    Raises :class:`ConfigError` for a refusal (nothing written) and
    :class:`~synchro.errors.ReplicaLocked` while a run writes the replica.
    ``emit`` gets a ``RESTORED path`` line per entry, and ``FAILED`` lines.
    """
    say: Emit = emit if emit is not None else (lambda line: None)
    rel = clean_path(path)
    moment = parse_at(at) if at else None
    if is_remote(replica):
        remote = Remote(os.fspath(replica), os.fspath(versions) if versions else None, profile, timeout)
        return _restore_remote(remote, target, rel, moment, source=source, force=force, say=say)
    rep = resolve(replica)
    if not os.path.isdir(rep):
        raise ConfigError(
            f"replica folder does not exist: {escape(os.fspath(replica))} (is the backup drive mounted?)"
        )
    kept = resolve(versions) if versions is not None and os.fspath(versions) else None
    if moment is not None and kept is None:
        raise ConfigError("--at: this pair keeps no versions (give it a versions folder: versions = PATH)")
    goal = resolve(target)
    _check_target(goal, rep, kept, resolve(source) if source is not None else None, force=force)

    with replica_at(rep).lock():
        trees: list[_Tree] = []
        try:
            if moment is not None and kept is not None and os.path.isdir(kept):
                _open_runs(kept, moment, trees)
            trees.append(_Tree(open_folders(rep)))
            if rel:
                _check_path(trees, rel, moment)
            report = RestoreReport(goal, rel, moment)
            _refuse_replacing(trees, rel, goal, force)
            os.makedirs(goal, exist_ok=True)
            _write(trees, rel, goal, report, say)
        finally:
            for tree in trees:
                if tree.folders is not None:
                    tree.folders.close()
    return report


@dataclass(frozen=True)
class Remote:
    """A pair's replica on another machine, as the pair names it and its versions."""

    url: str
    versions: str | None
    profile: str | None
    timeout: float


def _restore_remote(
    remote: Remote,
    target: str | os.PathLike[str],
    rel: str,
    moment: str | None,
    *,
    source: str | os.PathLike[str] | None,
    force: bool,
    say: Emit,
) -> RestoreReport:
    """:func:`restore` from a replica on another machine (and its versions there), read through
    :mod:`synchro.features.history`, under its run lock."""
    if local_endpoint() != "local":
        # The download writes through the target's folder descriptors.
        raise ConfigError(
            "restore from a replica on a server needs folder descriptors, which this system lacks (Windows)"
        )
    from .history import ReadBackFailed, open_remote

    if moment is not None and remote.versions is None:
        raise ConfigError("--at: this pair keeps no versions (give it a versions folder: versions = PATH)")
    goal = resolve(target)
    # The replica is on another machine: no local folder of it to stay out of.
    _check_target(goal, None, None, resolve(source) if source is not None else None, force=force)
    versions = remote.versions if moment is not None else None
    with open_remote(remote.url, versions, lock=True, profile=remote.profile, timeout=remote.timeout) as pair:
        trees: list[_Tree] = []
        report = RestoreReport(goal, rel, moment)
        try:
            if moment is not None and pair.versions is not None:
                _remote_runs(pair.versions, moment, trees)
            trees.append(_Tree(None, remote=pair.replica))
            if rel:
                _check_path(trees, rel, moment)
            _refuse_replacing(trees, rel, goal, force)
        except OSError as error:
            raise ConfigError(f"cannot read {escape(remote.url)}: {describe(error)}") from None
        os.makedirs(goal, exist_ok=True)
        try:
            _write(trees, rel, goal, report, say)
        except OSError as error:
            # A listing failed (the server went away): what was restored is in place.
            raise ReadBackFailed(
                f"cannot read {escape(remote.url)}: {describe(error)}; the restore stopped after "
                f"{_count(report.entries, 'entry', 'entries')} (exit 1)"
            ) from None
    return report


def _remote_runs(store: VersionStore, moment: str, trees: list[_Tree]) -> None:
    """Add to ``trees`` the runs from ``moment`` on kept off this machine, oldest first."""
    found = store.runs()
    folders, lists = set(found.folders), set(found.lists)
    for name in sorted(folders | lists):
        if name < moment:
            continue
        tree = _Tree(None, remote=store.run(name) if name in folders else None)
        if name in lists:
            try:
                tree.add_records(store.added(name))
            except OSError as error:
                shown = escape(f"{store.where}/{name}{ADDED_SUFFIX}")
                raise ConfigError(f"cannot read the list of additions {shown}: {describe(error)}") from None
        trees.append(tree)


def _open_runs(kept: str, moment: str, trees: list[_Tree]) -> None:
    """Add to ``trees`` the runs from ``moment`` on, oldest first (the caller closes them)."""
    versions = open_folders(kept)
    try:
        folders, lists = set(run_folders(versions)), set(addition_lists(versions))
        for name in sorted(folders | lists):
            if name < moment:
                continue
            tree = _Tree(versions.subtree(name) if name in folders else None)
            trees.append(tree)  # before reading: it is closed whatever happens
            if name in lists:
                try:
                    tree.read_added(versions, name)
                except OSError as error:
                    shown = escape(os.path.join(kept, name + ADDED_SUFFIX))
                    raise ConfigError(
                        f"cannot read the list of additions {shown}: {describe(error)}"
                    ) from None
    finally:
        versions.close()


def _check_path(trees: list[_Tree], rel: str, moment: str | None) -> None:
    """Refuse a ``--path`` that is nowhere, or that did not exist as of ``moment``."""
    if not any(tree.lookup(rel) is not None for tree in trees):
        where = f"in the replica or any version from {moment} on" if moment else "in the replica"
        raise ConfigError(f"--path {escape(rel)}: not found {where}")
    if moment is not None and not any(node.own for node in _nodes(trees, rel)):  # stops at the path
        raise ConfigError(f"--path {escape(rel)}: did not exist as of {moment} (a run from then on added it)")


def _refuse_replacing(trees: list[_Tree], rel: str, goal: str, force: bool) -> None:
    """Without ``force``, refuse (before writing anything) to replace what the target holds."""
    if force or not os.path.isdir(goal):
        return
    target = open_folders(goal)
    clashes = []
    try:
        for node in _nodes(trees, rel):
            if node.leave or not node.rel:
                continue
            there = target.lookup(node.rel)
            if there is None or (there.kind is Kind.DIR and node.meta.kind is Kind.DIR):
                continue
            clashes.append(node.rel)
    finally:
        target.close()
    if clashes:
        count = len(clashes)
        raise ConfigError(
            f"--to {escape(goal)}: {count} entr{'y' if count == 1 else 'ies'} would be replaced "
            f"(first: {escape(clashes[0])}); restore into a new or empty folder, or add --force"
        )


def _write(trees: list[_Tree], rel: str, goal: str, report: RestoreReport, say: Emit) -> None:
    keep_owner = hasattr(os, "geteuid") and os.geteuid() == 0  # Windows has no owners to give
    target = open_folders(goal)
    made: set[str] = set()  # folders created here: they get their metadata even on the way
    broken: set[str] = set()  # folders that could not be made: their content is skipped
    try:
        for node in _nodes(trees, rel):
            parent, _, name = node.rel.rpartition("/")
            if node.rel and (parent in broken or node.rel in broken):
                if node.meta.kind is Kind.DIR:
                    broken.add(node.rel)
                continue
            shown = escape(node.rel or ".") + ("/" if node.meta.kind is Kind.DIR else "")
            try:
                if node.leave:
                    if node.own or node.rel in made:
                        target.set_folder_meta(node.rel, node.meta, keep_owner=keep_owner)
                    continue
                if node.meta.kind is Kind.SPECIAL:
                    report.skipped.append(shown)
                    say(f"SKIPPED {shown}: not a file, folder or link")
                    continue
                if not node.rel:
                    continue  # the target folder itself: its metadata comes at its leave
                there = target.lookup(node.rel)
                if there is not None and (there.kind is Kind.DIR) != (node.meta.kind is Kind.DIR):
                    target.remove_tree(node.rel)  # checked by _refuse_replacing unless forced
                if node.meta.kind is Kind.DIR:
                    if target.make_folder(node.rel):
                        made.add(node.rel)
                elif node.meta.kind is Kind.LINK:
                    target.copy_link(node.rel, node.meta, keep_owner=keep_owner)
                else:
                    origin = trees[node.origin]
                    if origin.remote is not None:
                        report.bytes_copied += origin.remote.download(
                            parent, name, _descriptor(target, parent), keep_owner=keep_owner
                        )
                    else:
                        assert origin.folders is not None  # a node comes from a tree that holds it
                        report.bytes_copied += target.copy_from(
                            origin.folders, node.rel, keep_owner=keep_owner
                        )
                    report.files += 1
            except (OSError, SourceChanged, SourceVanished) as error:
                reason = describe(error) if isinstance(error, OSError) else str(error) or "vanished"
                report.failed.append((shown, reason))
                say(f"FAILED {shown}: {escape(reason)}")
                if node.meta.kind is Kind.DIR and not node.leave:
                    broken.add(node.rel)
                continue
            if node.own:
                report.entries += 1
                say(f"RESTORED {shown}")
    finally:
        target.close()


def _descriptor(target: Folders, folder: str) -> int:
    """The descriptor of ``folder`` in the target: what a download from a server writes through."""
    from ..endpoints.local.folders import DescriptorFolders

    assert isinstance(target, DescriptorFolders), "refused where descriptors are missing (_restore_remote)"
    return target.stack.fd(folder)
