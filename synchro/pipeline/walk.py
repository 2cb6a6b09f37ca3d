"""Walk source and replica together and collect the whole run's plan.

The walk is depth first with an explicit stack (no recursion limit, so
trees hundreds of levels deep work). Each folder is listed on both sides and
handed to the pure :func:`synchro.pipeline.plan.plan_folder`; only the resulting
actions are kept, not the listings, so memory grows with the number of
changes and the widest folder, not with the size of the tree. The plan is
complete before anything is changed, so the deletion guard sees every
deletion of the run.

A sub-tree that exists only in the source (a new folder: for a first copy,
every folder below the top) deletes nothing, so the guard does not need
it planned: the walk leaves it as one ``Op.TREE`` action, where its actions
would have been, and the applier lists and plans it folder by folder (see
:func:`synchro.pipeline.apply.apply_plan`). A first copy's plan is then the
top folder's entries, whatever the size of the tree.
"""

from __future__ import annotations

import errno
from operator import attrgetter
from typing import Protocol

from ..endpoints.base import Kind, Meta, ReplicaLost, Tree, describe
from .plan import Action, Descend, Op, PlanRules, Side, Step, plan_folder

# An entry that is gone, or that has been swapped for a link or a file,
# between the parent's listing and now.
GONE = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP}
_KIND = attrgetter("kind")


class Plan:
    """The run's plan as the walk fills it in."""

    __slots__ = ("actions", "deletions", "given", "problems", "replica_files", "untouched", "untouched_paths")

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.replica_files = 0  # non-folder entries seen in the replica
        self.deletions: list[str] = []  # files the run would delete
        self.untouched = 0
        self.untouched_paths: list[str] = []
        # Folders that could not be read: (word, path, reason) for the log.
        self.problems: list[tuple[str, str, str]] = []
        # Sub-trees handed to a :class:`Share` (their paths): planned and applied
        # by the other process, so their actions are not in ``actions``.
        self.given: list[str] = []


class Share(Protocol):
    """Another process that takes whole sub-trees (see :mod:`synchro.pipeline.helper`)."""

    def wants(self) -> bool:
        """Whether it would take a sub-tree now (it is idle, or nearly)."""
        ...

    def give(self, steps: list[Step]) -> bool:
        """Hand over one sub-tree's steps; False if it cannot take any more."""
        ...


def build_plan(
    source: str,
    replica: str,
    rules: PlanRules,
    *,
    replica_exists: bool = True,
    keep_untouched: bool = False,
    share: Share | None = None,
) -> Plan:
    """Plan the mirror of local folder ``source`` into local folder ``replica`` (both resolved).

    With ``share``, some sub-trees may be handed to it instead of planned
    here; their paths are in :attr:`Plan.given`.
    """
    from ..endpoints.local.tree import LocalTree  # the pipeline itself names no endpoint

    src = LocalTree.open_at(source)
    try:
        rep = LocalTree.open_at(replica) if replica_exists else None
        try:
            return plan_trees(src, rep, rules, keep_untouched=keep_untouched, share=share)
        finally:
            if rep is not None:
                rep.close()
    finally:
        src.close()


def plan_trees(
    src: Tree,
    rep: Tree | None,
    rules: PlanRules,
    *,
    keep_untouched: bool = False,
    share: Share | None = None,
) -> Plan:
    """Plan the mirror of tree ``src`` into tree ``rep`` (None: not there yet, a dry run)."""
    plan = Plan()
    src_root = src.lookup("")
    rep_root = rep.lookup("") if rep is not None else None
    if src_root is None:
        raise FileNotFoundError(errno.ENOENT, "the source folder is gone")
    root = Descend("", Side.BOTH if rep is not None else Side.SOURCE, src_root, rep_root)
    Walk(src, rep, rules, plan, keep_untouched, share).run([root])
    return plan


class Walk:
    """The depth-first walk over both trees, adding to one :class:`Plan`.

    ``run`` takes the steps of a whole sub-tree (the root, or a sub-tree
    given by another process) and expands every :class:`Descend` of them.
    """

    def __init__(
        self,
        src: Tree,
        rep: Tree | None,
        rules: PlanRules,
        plan: Plan,
        keep_untouched: bool = False,
        share: Share | None = None,
    ) -> None:
        self.src, self.rep, self.rules, self.plan = src, rep, rules, plan
        self.keep_untouched = keep_untouched
        self.share = share
        # The roots' identities: a folder of either tree that is one of them
        # (a bind mount of the replica inside the source, of the source
        # inside the replica) is never entered, neither copied into itself
        # nor emptied, which would delete the source through the replica.
        self._roots: dict[object, str] = {}
        for tree, role in ((src, "source"), (rep, "replica")):
            identity = tree.identity("") if tree is not None else None
            if identity is not None:
                self._roots.setdefault(identity, role)

    def run(self, steps: list[Step]) -> None:
        plan, share = self.plan, self.share
        # None marks a step given to ``share``: what is left of it is not ours.
        stack: list[Step | None] = list(reversed(steps))
        giving = _Giving() if share is not None else None
        while stack:
            step = stack.pop()
            if giving is not None and giving.low > len(stack):
                giving.low = len(stack)
            if step is None:
                continue
            if isinstance(step, Action):
                _add(plan, step)
                continue
            # About to walk a folder: a moment to hand the other process a
            # sub-tree, while this one still has ``step`` (and more) to walk.
            if (
                giving is not None
                and share is not None
                and giving.descends > 1
                and share.wants()
                and not giving.give(stack, share, plan)
            ):
                giving = None  # the other process is gone: plan the rest here
            if step.side is Side.SOURCE and step.rel:
                # Nothing to delete below it: applied folder by folder instead.
                parent, _, name = step.rel.rpartition("/")
                _add(plan, Action(Op.TREE, parent, name, step.src, None))
                if giving is not None:
                    giving.pushed(step, [])
                continue
            steps = self.expand(step)
            if giving is not None:
                giving.pushed(step, steps)
            # The actions before the first sub-folder would be popped next:
            # they go to the plan at once (a new folder's MKDIR stays with
            # its Descend, which may be given away with it).
            first = 0
            while first < len(steps):
                head = steps[first]
                if not isinstance(head, Action) or (
                    head.op is Op.MKDIR and first + 1 < len(steps) and isinstance(steps[first + 1], Descend)
                ):
                    break
                _add(plan, head)
                first += 1
            stack.extend(reversed(steps[first:]) if first else reversed(steps))

    def expand(self, step: Descend) -> list[Step]:
        """List the folder of ``step`` on its sides and plan it; what could not
        be read goes to the plan's problems (and the steps are [])."""
        plan, src, rep = self.plan, self.src, self.rep
        src_listing = rep_listing = None
        path = f"{step.rel}/" if step.rel else "./"
        if step.rel and self._is_a_root(step, path):
            return []
        if step.side is not Side.REPLICA:
            try:
                src_listing = src.list(step.rel)
            except OSError as error:
                # Not seen is not empty: the replica's copy is left alone.
                word = "VANISHED" if error.errno in GONE else "FAILED"
                plan.problems.append((word, path, f"cannot read source folder: {describe(error)}"))
                return []
        if step.side is not Side.SOURCE:
            assert rep is not None
            try:
                rep_listing = rep.list(step.rel)
            except ReplicaLost:
                raise  # the run stops: every later listing would fail alike
            except OSError as error:
                if error.errno not in GONE:
                    plan.problems.append(("FAILED", path, f"cannot read replica folder: {describe(error)}"))
                return []
            entries = rep_listing.entries
            # The kinds counted in C (map, list.count): this runs for every replica entry.
            plan.replica_files += len(entries) - list(map(_KIND, entries.values())).count(Kind.DIR)
        steps, untouched = plan_folder(step, src_listing, rep_listing, self.rules)
        plan.untouched += len(untouched)
        if self.keep_untouched:
            prefix = f"{step.rel}/" if step.rel else ""
            plan.untouched_paths.extend(prefix + name if name else path for name in untouched)
        return steps

    def _is_a_root(self, step: Descend, path: str) -> bool:
        """Whether the folder of ``step`` is the source or the replica itself
        (seen there through a mount); if so, say so in the plan's problems.

        Locally one ``fstat`` of a descriptor the listing opens anyway; a
        tree that no other can show (a remote one) has no identities.
        """
        if not self._roots:
            return False
        for tree, skip in ((self.src, Side.REPLICA), (self.rep, Side.SOURCE)):
            if tree is None or step.side is skip:
                continue
            try:
                role = self._roots.get(tree.identity(step.rel))
            except OSError:
                continue  # the listing says why
            if role is not None:
                self.plan.problems.append(
                    ("FAILED", path, f"is the {role} folder itself (mounted here too): left alone")
                )
                return True
        return False


class _Giving:
    """Which sub-trees on the walk's stack may be given away, and the giving.

    A sub-tree can go to another process only if it can be planned *and
    applied* there without waiting for this one: its parent folder exists
    on both sides (so it is neither created nor removed here), and its own
    name is not changing type (whose removal and creation happen here). A
    new folder goes with its MKDIR. The bottom-most such sub-tree is given
    (the one this process would reach last, usually the largest), and only
    while this process keeps another folder to walk, so neither waits idle.
    """

    def __init__(self) -> None:
        self.movable: set[int] = set()  # id() of Descend steps on the stack that may go
        self.descends = 1  # Descend steps on the stack (the root's counted by run's caller)
        self.low = 0  # stack entries below this index are not movable

    def pushed(self, folder: Descend, steps: list[Step]) -> None:
        """``folder`` was taken off the stack, and its ``steps`` go on it."""
        self.descends -= 1
        self.movable.discard(id(folder))  # its id may be reused by a later step
        for index, step in enumerate(steps):
            if not isinstance(step, Descend):
                continue
            self.descends += 1
            if folder.side is not Side.BOTH or step.replaces:
                continue
            if step.side is Side.SOURCE and not plain_mkdir(steps[index - 1] if index else None, step.rel):
                continue
            self.movable.add(id(step))

    def give(self, stack: list[Step | None], share: Share, plan: Plan) -> bool:
        index = self.low
        while index < len(stack):
            step = stack[index]
            if isinstance(step, Descend) and id(step) in self.movable:
                unit: list[Step] = [step]
                if step.side is Side.SOURCE:
                    # Its MKDIR sits just above it (it runs just before it).
                    mkdir = stack[index + 1] if index + 1 < len(stack) else None
                    if not plain_mkdir(mkdir, step.rel):
                        self.movable.discard(id(step))
                        index += 1
                        continue
                    assert mkdir is not None
                    unit = [mkdir, step]
                if not share.give(unit):
                    return False
                self.movable.discard(id(step))
                stack[index] = None
                if len(unit) == 2:
                    stack[index + 1] = None
                self.descends -= 1
                plan.given.append(step.rel)
                self.low = index + 1
                return True
            index += 1
        self.low = index
        return True


def steps_now(src: Tree, rep: Tree, rel: str) -> list[Step]:
    """The steps that plan sub-tree ``rel`` from what is there now.

    For a sub-tree given to another process and taken back, or left
    half done when that process stopped: the steps it was given may be
    stale (its folder made since, say). A name that changed type meanwhile
    is left to the next run.
    """
    parent, _, name = rel.rpartition("/")

    def look(tree: Tree) -> Meta | None:
        try:
            return tree.lookup(rel)
        except OSError:
            return None

    src_meta, rep_meta = look(src), look(rep)
    src_dir = src_meta is not None and src_meta.kind is Kind.DIR
    rep_dir = rep_meta is not None and rep_meta.kind is Kind.DIR
    if src_dir and rep_dir:
        return [Descend(rel, Side.BOTH, src_meta, rep_meta)]
    if src_dir and rep_meta is None:
        return [Action(Op.MKDIR, parent, name, src_meta, None), Descend(rel, Side.SOURCE, src_meta, None)]
    if rep_dir and src_meta is None:
        return [Descend(rel, Side.REPLICA, None, rep_meta)]
    return []


def plain_mkdir(step: Step | None, rel: str) -> bool:
    """Whether ``step`` makes folder ``rel`` and replaces nothing."""
    return isinstance(step, Action) and step.op is Op.MKDIR and not step.replaces and step.path == rel


def _add(plan: Plan, action: Action) -> None:
    plan.actions.append(action)
    if action.op is Op.DELETE and not action.replaces:
        plan.deletions.append(action.path)
