"""Restore a pair, or one path of it, from the replica, or as it was at an earlier run.

:func:`restore` copies into a folder the user names (``--to``), keeping the
path relative to the pair (``--path docs/a.txt --to /tmp/r`` writes
``/tmp/r/docs/a.txt``), so that ``--to SOURCE --force`` puts things back in
place. It never writes into the replica or the versions folder, never into
the source unless told so with ``force``, and never replaces an entry that
already exists in the target without ``force``: every entry it would
replace is found before anything is written. It adds and replaces, never
deletes.

**As of a run** (``at``, a version folder name ``YYYY-MM-DD_HHMMSS``): each
run folder holds the replica entries that run replaced or deleted, as they
were just before it. The state at moment T is therefore, for each path, the
entry in the oldest run folder from T on that holds it, else the replica's
current entry; a folder is the union of what these hold (up to a run that
replaced it by a file or link). The versions record what runs replaced or
deleted, not what they added: entries created after T are restored too.

Every read and write is relative to folders opened with ``O_NOFOLLOW``;
files are written to a temporary name and renamed, as the mirror does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .errors import ConfigError, ExitCode
from .fds import DIR_FLAGS, DirStack, open_root
from .fdtree import join, lookup, make_folder, remove_tree
from .filecopy import SourceChanged, SourceVanished, copy_file, copy_link, set_folder_meta
from .lock import ReplicaLock
from .log import escape
from .roots import resolve
from .scan import Kind, Meta, describe, list_folder
from .versions import clean_path, parse_at, run_folders

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


@dataclass(frozen=True)
class _Node:
    """One entry of the state to restore: where it is read from, and what it is."""

    rel: str
    meta: Meta
    origin: int  # index of the tree it is read from (run folders oldest first, the replica last)
    own: bool  # inside the restored path (False: a folder on the way to it)
    leave: bool = False  # a folder's second visit, after its content


def _merge(
    stacks: list[DirStack], rel: str, origins: list[int], only: str | None
) -> Iterator[tuple[str, Meta, int, list[int]]]:
    """The entries of folder ``rel`` as of the restored moment: (name, meta, origin, origins below).

    ``origins`` are the trees where ``rel`` is this folder, in order. A name
    is taken from the first of them that has it; a folder's own origins are
    those from there on that have it as a folder, up to one that has it as
    something else (the folder did not exist before that run replaced it).
    """
    listings = {index: list_folder(stacks[index].fd(rel)).entries for index in origins}
    names = {only} if only is not None else set().union(*listings.values())
    for name in sorted(names):
        holders = [index for index in origins if name in listings[index]]
        if not holders:
            continue
        meta = listings[holders[0]][name]
        below = []
        if meta.kind is Kind.DIR:
            for index in holders:
                if listings[index][name].kind is not Kind.DIR:
                    break
                below.append(index)
        yield name, meta, holders[0], below


def _nodes(stacks: list[DirStack], path: str) -> Iterator[_Node]:
    """The entries to restore, depth first: a folder before its content, and again (``leave``) after."""
    replica = len(stacks) - 1
    root = lookup(stacks[replica], "")
    assert root is not None
    parts = path.split("/") if path else []
    # Depth-first stack of (node, origins of its content, remaining parts of the path).
    pending: list[tuple[_Node, list[int], list[str]]] = [
        (_Node("", root, replica, own=not parts), list(range(len(stacks))), parts)
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
        for name, meta, origin, below in _merge(stacks, node.rel, origins, rest[0] if rest else None):
            own = node.own or len(rest) == 1
            children.append((_Node(join(node.rel, name), meta, origin, own), below, rest[1:]))
        pending.extend(reversed(children))


def _check_target(
    target: str, replica: str, versions: str | None, source: str | None, *, force: bool
) -> None:
    def inside(child: str, parent: str) -> bool:
        return child != parent and os.path.commonpath([child, parent]) == parent

    for role, root in (("replica", replica), ("versions folder", versions)):
        if root is None:
            continue
        if target == root or inside(target, root) or inside(root, target):
            relation = "is" if target == root else ("is inside" if inside(target, root) else "contains")
            raise ConfigError(
                f"--to {escape(target)} {relation} the {role} {escape(root)}; restore into another folder"
            )
    if source is not None and (target == source or inside(target, source)) and not force:
        relation = "is the source folder" if target == source else f"is inside the source {escape(source)}"
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

    with ReplicaLock(rep):
        fds: list[int] = []
        stacks: list[DirStack] = []
        try:
            if moment is not None and kept is not None and os.path.isdir(kept):
                kept_fd = open_root(kept)
                try:
                    for name in run_folders(kept_fd):
                        if name >= moment:
                            fds.append(os.open(name, DIR_FLAGS, dir_fd=kept_fd))
                finally:
                    os.close(kept_fd)
            fds.append(open_root(rep))
            stacks = [DirStack(fd) for fd in fds]
            if rel and not any(lookup(stack, rel) is not None for stack in stacks):
                where = f"in the replica or any version from {moment} on" if moment else "in the replica"
                raise ConfigError(f"--path {escape(rel)}: not found {where}")
            report = RestoreReport(goal, rel, moment)
            _refuse_replacing(stacks, rel, goal, force)
            os.makedirs(goal, exist_ok=True)
            _write(stacks, rel, goal, report, say)
        finally:
            for stack in stacks:
                stack.close()
            for fd in fds:
                os.close(fd)
    return report


def _refuse_replacing(stacks: list[DirStack], rel: str, goal: str, force: bool) -> None:
    """Without ``force``, refuse (before writing anything) to replace what the target holds."""
    if force or not os.path.isdir(goal):
        return
    target_fd = open_root(goal)
    target = DirStack(target_fd)
    clashes = []
    try:
        for node in _nodes(stacks, rel):
            if node.leave or not node.rel:
                continue
            there = lookup(target, node.rel)
            if there is None or (there.kind is Kind.DIR and node.meta.kind is Kind.DIR):
                continue
            clashes.append(node.rel)
    finally:
        target.close()
        os.close(target_fd)
    if clashes:
        count = len(clashes)
        raise ConfigError(
            f"--to {escape(goal)}: {count} entr{'y' if count == 1 else 'ies'} would be replaced "
            f"(first: {escape(clashes[0])}); restore into a new or empty folder, or add --force"
        )


def _write(stacks: list[DirStack], rel: str, goal: str, report: RestoreReport, say: Emit) -> None:
    keep_owner = os.geteuid() == 0
    target_fd = open_root(goal)
    target = DirStack(target_fd)
    made: set[str] = set()  # folders created here: they get their metadata even on the way
    broken: set[str] = set()  # folders that could not be made: their content is skipped
    try:
        for node in _nodes(stacks, rel):
            parent, _, name = node.rel.rpartition("/")
            if node.rel and (parent in broken or node.rel in broken):
                if node.meta.kind is Kind.DIR:
                    broken.add(node.rel)
                continue
            shown = escape(node.rel or ".") + ("/" if node.meta.kind is Kind.DIR else "")
            try:
                if node.leave:
                    if node.own or node.rel in made:
                        set_folder_meta(target.fd(node.rel), node.meta, keep_owner=keep_owner)
                    continue
                if node.meta.kind is Kind.SPECIAL:
                    report.skipped.append(shown)
                    say(f"SKIPPED {shown}: not a file, folder or link")
                    continue
                if not node.rel:
                    continue  # the target folder itself: its metadata comes at its leave
                there = lookup(target, node.rel)
                folder_fd = target.fd(parent)
                if there is not None and (there.kind is Kind.DIR) != (node.meta.kind is Kind.DIR):
                    remove_tree(folder_fd, name)  # checked by _refuse_replacing unless forced
                if node.meta.kind is Kind.DIR:
                    if make_folder(folder_fd, name):
                        made.add(node.rel)
                elif node.meta.kind is Kind.LINK:
                    copy_link(folder_fd, name, node.meta, keep_owner=keep_owner)
                else:
                    source_fd = stacks[node.origin].fd(parent)
                    report.bytes_copied += copy_file(
                        source_fd, target.fd(parent), name, keep_owner=keep_owner
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
        os.close(target_fd)
