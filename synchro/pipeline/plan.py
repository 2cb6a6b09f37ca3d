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
list in execution order; a sub-folder only in the source stays one
``Op.TREE`` action there, which the applier expands folder by folder with
this same function (:mod:`synchro.pipeline.apply`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import Enum, IntEnum
from typing import NamedTuple

from ..endpoints.base import LOCK_NAME, TEMP_PREFIX, Kind, Listing, Meta
from ..endpoints.capabilities import FULL_POSIX, Capabilities


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
    RENAME = 11  # respell a replica entry (case only): ``reason`` holds its old name
    # A sub-tree only in the source (its folder made by the MKDIR before it),
    # planned folder by folder while applying: it deletes nothing, so the
    # guard does not need its actions, and the plan need not hold them.
    TREE = 12


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
    reason: str = ""  # SKIP, FAIL: why; RENAME: the replica's spelling before

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
    # REPLICA side: the name becomes a file or link. BOTH side: the replica's
    # folder is respelled first (RENAME), so the sub-tree stays in the process
    # that renames it.
    replaces: bool = False


Step = Action | Descend
Excluded = Callable[[str, bool], bool]


class PlanRules(NamedTuple):
    checksum: bool = False
    modify_window_ns: int = 0
    delete_excluded: bool = False
    keep_owner: bool = False  # running as root: owner and group are mirrored too
    excluded: Excluded | None = None
    # What the replica can hold, measured at the start of the run: only that
    # is compared (permission bits if it holds them, times at its precision,
    # names as it tells them apart). Set with fit_rules, with what follows.
    holds: Capabilities = FULL_POSIX
    # Some source names may not fit the replica (see fit_names): a replica
    # that holds every name and tells case apart (ext4) skips the look.
    fit_names: bool = False


def fit_rules(rules: PlanRules, holds: Capabilities) -> PlanRules:
    """The rules for a replica that holds ``holds``.

    Owners are kept only by root (``rules.keep_owner``) on a replica that
    holds them; ``modify_window_ns`` becomes the window the planner uses
    (:func:`time_window`); what is asked of every folder is settled here,
    once, so that an ext4 replica is planned at the cost it always was.
    """
    if holds == rules.holds:
        return rules
    return rules._replace(
        keep_owner=rules.keep_owner and holds.owners,
        holds=holds,
        modify_window_ns=time_window(rules._replace(holds=holds)),
        fit_names=not holds.case_sensitive or not holds.holds_every_name,
    )


def time_window(rules: PlanRules) -> int:
    """How far apart two modification times may be and still be the same.

    The replica keeps times to its precision (exFAT, SFTP: the second; FAT:
    two): a time it rounded or cut is the same time. ``--modify-window``
    widens that, never narrows it (a narrower window would copy every file
    of such a replica on every run).
    """
    if not rules.holds.times:
        return NEVER_SAME  # times it cannot set at all: sizes alone tell changes
    return max(rules.modify_window_ns, rules.holds.time_precision_ns - 1)


# A window no two times are apart by (about 290 years).
NEVER_SAME = 1 << 63


def join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def same_time(a: int, b: int, window_ns: int) -> bool:
    return a == b if window_ns == 0 else abs(a - b) <= window_ns


def same_attrs(src: Meta, rep: Meta, rules: PlanRules) -> bool:
    if src.mode != rep.mode and rules.holds.permissions:
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
    if not rel and (LOCK_NAME in src_entries or LOCK_NAME in rep_entries):
        # A run lock's file (a replica's on Windows, or one this source had
        # as a replica): neither copied nor deleted.
        src_entries = {k: v for k, v in src_entries.items() if k != LOCK_NAME}
        rep_entries = {k: v for k, v in rep_entries.items() if k != LOCK_NAME}
    excluded = rules.excluded
    holds = rules.holds
    window = rules.modify_window_ns  # the replica's step in it already (fit_rules)
    # Renames of replica entries to the source's spelling, and source names
    # the replica cannot hold (see fit_names): none on a POSIX replica.
    respelled: dict[str, str] = {}
    if rules.fit_names:
        src_entries, rep_entries, respelled, unfit = fit_names(rel, src_entries, rep_entries, rules)
        copies.extend(unfit)
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
        if s.kind is Kind.LINK and not holds.symlinks:
            # Like a special file: not copied, and the replica's entry of
            # that name (if any) is left alone.
            reason = f"the replica's file system ({holds.fs_type}) cannot hold symbolic links"
            copies.append(Action(Op.SKIP, rel, name, s, r, reason=reason))
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
                descents.append(Descend(path, Side.BOTH, s, r, replaces=name in respelled))
            continue
        if s.kind is Kind.LINK:
            if r is None:
                copies.append(Action(Op.LINK, rel, name, s, None))
            elif r.target != s.target or (
                (holds.link_times and not same_time(s.mtime_ns, r.mtime_ns, window))
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

    if respelled:
        # First of all: the copies and descents below use the new spelling.
        removals[:0] = [
            Action(Op.RENAME, rel, new, src_entries[new], rep_entries[new], reason=old)
            for new, old in respelled.items()
        ]
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


def fit_names(
    rel: str, src: dict[str, Meta], rep: dict[str, Meta], rules: PlanRules
) -> tuple[dict[str, Meta], dict[str, Meta], dict[str, str], list[Action]]:
    """Fit one folder's source names to what the replica can hold.

    Returns the source entries left to plan, the replica entries under the
    source's spelling, the replica entries to respell first ({new: old}),
    and a FAIL action for each source name that cannot be mirrored:

    - a name the replica refuses (a character it forbids, too long, not UTF-8);
    - on a case-insensitive replica, every name but one of those it files
      under one name: the first in byte order is mirrored (the same one on
      every run, whatever the replica holds now), the others fail.

    A replica entry spelled otherwise than its source name (``Photos`` for
    ``photos``) is respelled in place: a case-only rename moves no data.
    """
    holds = rules.holds
    excluded = rules.excluded
    unfit: list[Action] = []
    fitting: dict[str, Meta] = {}
    # Excluded names are no source names here (the walk leaves them out): they
    # neither fail, nor win a name, nor lose one.
    kept_out: dict[str, Meta] = {}
    for name, meta in src.items():
        if excluded is not None and excluded(join(rel, name), meta.kind is Kind.DIR):
            kept_out[name] = meta
            continue
        problem = None if holds.holds_every_name else holds.name_problem(name)
        if problem is None:
            fitting[name] = meta
        else:
            unfit.append(Action(Op.FAIL, rel, name, meta, None, reason=problem))
    if holds.case_sensitive:
        fitting.update(kept_out)
        return fitting, rep, {}, unfit
    key = holds.name_key
    by_key: dict[str, list[str]] = {}
    for name in fitting:
        by_key.setdefault(key(name), []).append(name)
    for names in by_key.values():
        if len(names) < 2:
            continue
        names.sort(key=os.fsencode)
        kept = names[0]
        shown = join(rel, kept) + ("/" if fitting[kept].kind is Kind.DIR else "")
        for name in names[1:]:
            reason = f"the replica's file system does not tell it from {shown}"
            unfit.append(Action(Op.FAIL, rel, name, fitting.pop(name), None, reason=reason))
    respelled: dict[str, str] = {}
    replica = dict(rep)
    for old in rep:
        spellings = by_key.get(key(old))
        if spellings is None:
            continue
        new = spellings[0]  # the name kept (sorted above, or alone)
        if new != old and new not in rep:
            respelled[new] = old
            replica[new] = replica.pop(old)
    fitting.update(kept_out)
    return fitting, replica, respelled, unfit
