"""The pure planner: compare one folder of the source with its replica.

:func:`plan_folder` looks at two listings (no file system access) and
returns the steps that make the replica folder equal to the source folder,
in a safe order:

1. removals that free a name (deletions, and entries whose type changes),
2. files and links to copy (written beside the target, then renamed over),
3. sub-folders to create and to descend into (depth first),
4. last, the folder's own permissions and times, so that writing its
   content does not change them again.

The walker (:mod:`synchro.pipeline.walk`) expands each :class:`Descend` into the
steps of that sub-folder, which yields the whole run's plan as one flat
list in execution order.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, IntEnum
from typing import NamedTuple

from ..endpoints.local.scan import Kind, Listing, Meta

TEMP_PREFIX = ".synchro-tmp-"


class Op(IntEnum):
    DELETE = 1  # remove a non-folder entry from the replica
    RMDIR = 2  # remove an (emptied) folder from the replica
    COPY = 3  # copy a file (temporary + rename)
    LINK = 4  # make a symlink (temporary + rename)
    MKDIR = 5  # create a folder
    ATTRS = 6  # same content: fix permissions / owner only
    DIRMETA = 7  # set a folder's permissions and times after its content
    SKIP = 8  # source entry that is not copied (special file)
    FAIL = 9  # source entry that could not be read during the scan
    CLEANUP = 10  # leftover temporary of an interrupted run


# Action and Descend are immutable records like Meta: NamedTuples, because
# a plan builds one per changed entry (20,000 for a first copy of 20,000
# files), and a frozen dataclass costs four times as much to build.
class Action(NamedTuple):
    op: Op
    dir: str  # folder relative to the roots, "" for the top
    name: str  # entry name in that folder, "" for the folder itself
    src: Meta | None = None
    rep: Meta | None = None
    # COPY/LINK/MKDIR: the replica had another entry of that name before
    # (logged as OVERWRITTEN); DELETE/RMDIR: removal frees the name for a
    # new type (not a deletion of data, not counted by the guard).
    replaces: bool = False
    check_content: bool = False  # --checksum: copy only if the bytes differ
    reason: str = ""

    @property
    def path(self) -> str:
        if not self.dir:
            return self.name
        return f"{self.dir}/{self.name}" if self.name else self.dir


class Side(Enum):
    BOTH = "both"
    SOURCE = "source"  # only in the source: everything below is added
    REPLICA = "replica"  # only in the replica: everything below is deleted


class Descend(NamedTuple):
    rel: str
    side: Side
    src: Meta | None  # the folder itself in the source
    rep: Meta | None  # the folder itself in the replica
    replaces: bool = False  # REPLICA side: the name becomes a file or link


Step = Action | Descend
Excluded = Callable[[str, bool], bool]


class PlanRules(NamedTuple):
    checksum: bool = False
    modify_window_ns: int = 0
    delete_excluded: bool = False
    keep_owner: bool = False  # running as root: owner and group are mirrored too
    excluded: Excluded | None = None


def join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def same_time(a: int, b: int, window_ns: int) -> bool:
    return a == b if window_ns == 0 else abs(a - b) <= window_ns


def same_attrs(src: Meta, rep: Meta, rules: PlanRules) -> bool:
    if src.mode != rep.mode:
        return False
    return not rules.keep_owner or (src.uid == rep.uid and src.gid == rep.gid)


def plan_folder(
    folder: Descend,
    src: Listing | None,
    rep: Listing | None,
    rules: PlanRules,
) -> tuple[list[Step], list[str]]:
    """Steps for one folder, and the names of entries left untouched.

    ``src`` is None when the folder exists only in the replica (all of it is
    deleted), ``rep`` is None when it exists only in the source (all of it is
    added, the folder itself having been created by the parent's MKDIR).
    """
    rel, src_self, rep_self = folder.rel, folder.src, folder.rep
    removals: list[Step] = []
    copies: list[Step] = []
    descents: list[Step] = []
    untouched: list[str] = []
    src_entries = src.entries if src is not None else {}
    rep_entries = rep.entries if rep is not None else {}
    unreadable = src.errors if src is not None else {}
    excluded = rules.excluded
    window = rules.modify_window_ns
    # Source names left out by the patterns: their replica counterpart is
    # judged like a replica-only entry (kept, or deleted with delete_excluded).
    left_out: set[str] = set()
    # Most entries of a daily run are files equal in every field; with no
    # pattern and no --checksum nothing else can make them change, so they
    # are settled by one tuple comparison (this loop runs for every entry).
    fast = excluded is None and not rules.checksum
    file_kind, copy, new = Kind.FILE, Op.COPY, tuple.__new__

    for name, s in src_entries.items():
        r = rep_entries.get(name)
        if fast and s.kind is file_kind and not name.startswith(TEMP_PREFIX):
            if r == s:
                untouched.append(name)
                continue
            if r is None:
                # A new file (all of a first copy): the Action made below,
                # built without the keyword handling of its __new__.
                copies.append(new(Action, (copy, rel, name, s, None, False, False, "")))
                continue
        path = join(rel, name)
        if excluded is not None and excluded(path, s.kind is Kind.DIR):
            left_out.add(name)
            continue
        if s.kind is Kind.SPECIAL:
            copies.append(Action(Op.SKIP, rel, name, s, r, reason="not a file, folder or link"))
            continue
        if name.startswith(TEMP_PREFIX):
            copies.append(Action(Op.SKIP, rel, name, s, r, reason="name reserved for temporaries"))
            continue
        if r is not None and r.kind is not s.kind:
            # The name changes type: free it first. A replica folder is
            # emptied depth first, then removed, before the new entry comes.
            if r.kind is Kind.DIR:
                removals.append(Descend(path, Side.REPLICA, None, r, replaces=True))
            else:
                removals.append(Action(Op.DELETE, rel, name, None, r, replaces=True))
            if s.kind is Kind.DIR:
                descents.append(Action(Op.MKDIR, rel, name, s, None, replaces=True))
                descents.append(Descend(path, Side.SOURCE, s, None))
            else:
                op = Op.COPY if s.kind is Kind.FILE else Op.LINK
                copies.append(Action(op, rel, name, s, None, replaces=True))
            continue
        if s.kind is Kind.DIR:
            if r is None:
                descents.append(Action(Op.MKDIR, rel, name, s, None))
                descents.append(Descend(path, Side.SOURCE, s, None))
            else:
                descents.append(Descend(path, Side.BOTH, s, r))
            continue
        if s.kind is Kind.LINK:
            if r is None:
                copies.append(Action(Op.LINK, rel, name, s, None))
            elif r.target != s.target or (
                not same_time(s.mtime_ns, r.mtime_ns, window)
                or (rules.keep_owner and (s.uid, s.gid) != (r.uid, r.gid))
            ):
                copies.append(Action(Op.LINK, rel, name, s, r))
            else:
                untouched.append(name)
            continue
        # A regular file.
        if r is None:
            copies.append(Action(Op.COPY, rel, name, s, None))
        elif s.size != r.size or not same_time(s.mtime_ns, r.mtime_ns, window):
            copies.append(Action(Op.COPY, rel, name, s, r))
        elif rules.checksum:
            copies.append(Action(Op.COPY, rel, name, s, r, check_content=True))
        elif not same_attrs(s, r, rules):
            copies.append(Action(Op.ATTRS, rel, name, s, r))
        else:
            untouched.append(name)

    for name, error in unreadable.items():
        # Not seen, so neither copied nor deleted: the replica keeps its copy.
        copies.append(Action(Op.FAIL, rel, name, None, rep_entries.get(name), reason=error))

    # Most folders of a daily run have no name only in the replica: one set
    # comparison (in C) settles that, instead of three lookups per entry here.
    judged = not left_out and not unreadable and rep_entries.keys() <= src_entries.keys()
    for name, r in () if judged else rep_entries.items():
        if (name in src_entries and name not in left_out) or name in unreadable:
            continue
        path = join(rel, name)
        # A temporary is a file, or a link when the run stopped in copy_link.
        if name.startswith(TEMP_PREFIX) and r.kind in (Kind.FILE, Kind.LINK):
            removals.append(Action(Op.CLEANUP, rel, name, None, r))
            continue
        if excluded is not None and not rules.delete_excluded and excluded(path, r.kind is Kind.DIR):
            continue
        if r.kind is Kind.DIR:
            removals.append(Descend(path, Side.REPLICA, None, r))
        else:
            removals.append(Action(Op.DELETE, rel, name, None, r))

    steps: list[Step] = [*removals, *copies, *descents]
    if src_self is not None and rep_self is not None and rel and same_attrs(src_self, rep_self, rules):
        untouched.append("")  # the folder itself ("" = this folder)
    if src_self is not None:
        # ATTRS counts too: a replica file that cannot be opened to chmod it
        # is copied anew (see apply), which changes the folder's time.
        changed = any(
            (isinstance(step, Descend) and step.side is not Side.BOTH)
            or (isinstance(step, Action) and step.op not in (Op.SKIP, Op.FAIL))
            for step in steps
        )
        if (
            rep_self is None
            or changed
            or not same_attrs(src_self, rep_self, rules)
            or not same_time(src_self.mtime_ns, rep_self.mtime_ns, window)
        ):
            steps.append(Action(Op.DIRMETA, rel, "", src_self, rep_self))
    elif rep_self is not None:
        # Only in the replica: its content was deleted above, now the folder.
        parent, _, name = rel.rpartition("/")
        steps.append(Action(Op.RMDIR, parent, name, None, rep_self, replaces=folder.replaces))
    return steps, untouched
