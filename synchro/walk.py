"""Walk source and replica together and collect the whole run's plan.

The walk is depth first with an explicit stack (no recursion limit, so
trees hundreds of levels deep work). Each folder is listed on both sides and
handed to the pure :func:`synchro.plan.plan_folder`; only the resulting
actions are kept, not the listings, so memory grows with the number of
changes and the widest folder, not with the size of the tree. The plan is
complete before anything is changed, so the deletion guard sees every
deletion of the run.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from .fds import DirStack, open_root
from .plan import Action, Descend, Op, PlanRules, Side, Step, plan_folder
from .scan import Kind, Listing, describe, list_folder, meta_of

# An entry that is gone, or that has been swapped for a link or a file,
# between the parent's listing and now.
GONE = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP}


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    replica_files: int = 0  # non-folder entries seen in the replica
    deletions: list[str] = field(default_factory=list)  # files the run would delete
    untouched: int = 0
    untouched_paths: list[str] = field(default_factory=list)
    # Folders that could not be read: (word, path, reason) for the log.
    problems: list[tuple[str, str, str]] = field(default_factory=list)


def _list(stack: DirStack, rel: str) -> Listing:
    return list_folder(stack.fd(rel))


def build_plan(
    source: str,
    replica: str,
    rules: PlanRules,
    *,
    replica_exists: bool = True,
    keep_untouched: bool = False,
) -> Plan:
    """Plan the mirror of ``source`` into ``replica`` (both resolved paths)."""
    plan = Plan()
    src_fd = open_root(source)
    rep_fd = open_root(replica) if replica_exists else None
    src = DirStack(src_fd)
    rep = DirStack(rep_fd) if rep_fd is not None else None
    try:
        root = Descend(
            "",
            Side.BOTH if rep_fd is not None else Side.SOURCE,
            meta_of(os.fstat(src_fd)),
            meta_of(os.fstat(rep_fd)) if rep_fd is not None else None,
        )
        stack: list[Step] = [root]
        while stack:
            step = stack.pop()
            if isinstance(step, Action):
                _add(plan, step)
                continue
            src_listing = rep_listing = None
            path = f"{step.rel}/" if step.rel else "./"
            if step.side is not Side.REPLICA:
                try:
                    src_listing = _list(src, step.rel)
                except OSError as error:
                    # Not seen is not empty: the replica's copy is left alone.
                    word = "VANISHED" if error.errno in GONE else "FAILED"
                    plan.problems.append((word, path, f"cannot read source folder: {describe(error)}"))
                    continue
            if step.side is not Side.SOURCE:
                assert rep is not None
                try:
                    rep_listing = _list(rep, step.rel)
                except OSError as error:
                    if error.errno in GONE:
                        continue
                    plan.problems.append(("FAILED", path, f"cannot read replica folder: {describe(error)}"))
                    continue
                plan.replica_files += sum(
                    1 for meta in rep_listing.entries.values() if meta.kind is not Kind.DIR
                )
            steps, untouched = plan_folder(step, src_listing, rep_listing, rules)
            plan.untouched += len(untouched)
            if keep_untouched:
                prefix = f"{step.rel}/" if step.rel else ""
                plan.untouched_paths.extend(prefix + name if name else path for name in untouched)
            stack.extend(reversed(steps))
    finally:
        src.close()
        os.close(src_fd)
        if rep is not None and rep_fd is not None:
            rep.close()
            os.close(rep_fd)
    return plan


def _add(plan: Plan, action: Action) -> None:
    plan.actions.append(action)
    if action.op is Op.DELETE and not action.replaces:
        plan.deletions.append(action.path)
