"""One mirror cycle: check → lock → plan → guard → apply → summary.

This is the pipeline every face (command, tasks, API) runs. It never
raises for a problem of the pair or of an entry: the outcome, exit code
included, is in the returned :class:`~synchro.pipeline.report.Report`, and every
step is in the log. Only an interruption (Ctrl+C, SIGTERM) propagates,
after the log says so and the lock is released.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from itertools import pairwise
from typing import NamedTuple

from ..endpoints.base import ForkableReplica, ForkableSource, Replica, ReplicaLost, Source, describe
from ..endpoints.capabilities import FULL_POSIX, Capabilities
from ..endpoints.resolve import (
    Opener,
    default_opener,
    open_source,
    replica_at,
    replica_folders,
    source_limits,
)
from ..errors import ConfigError, ExitCode, ReplicaLocked, stop_code, stopped_by
from ..options import MirrorOptions
from .apply import (
    ApplyContext,
    BeforeAction,
    DuringCopy,
    Emit,
    KeepsVersions,
    Progress,
    RunKeeper,
    apply_plan,
    lost_line,
)
from .exclude import Excluder
from .helper import Helper, HelperStopped, MakeContext, PlanPart, may_share
from .log import DailyLog, escape
from .plan import Action, Op, PlanRules, fit_rules
from .report import Report
from .roots import Roots, check_roots
from .walk import Plan, Walk, plain_mkdir, plan_trees, steps_now

GUARD_SHOWN = 10  # how many of the paths a refused run would delete are logged

# Makes a progress display for a run of (entries, bytes) to do; None: no display.
ProgressFactory = Callable[[int, int], Progress]


class Hooks(NamedTuple):
    """Test hooks: change the trees between plan and write, slow a read, or
    change (or fail) a file in the middle of its copy."""

    opener: Opener = default_opener
    before_action: BeforeAction | None = None
    during_copy: DuringCopy | None = None


def run_cycle(
    source: str | os.PathLike[str],
    replica: str | os.PathLike[str],
    options: MirrorOptions,
    log: DailyLog,
    *,
    mode: str = "single",
    verbose: bool = False,
    hooks: Hooks | None = None,
    progress: ProgressFactory | None = None,
    clock: Callable[[], datetime] = datetime.now,  # names the run's version folder
) -> Report:
    started = time.monotonic()
    report = Report(os.fspath(source), os.fspath(replica), dry_run=options.dry_run)
    dry = " dry-run" if options.dry_run else ""
    log.write(
        f"START source={escape(os.fspath(source))} replica={escape(os.fspath(replica))} mode={mode}{dry}"
    )

    def finish(code: ExitCode, message: str = "") -> Report:
        report.exit_code = code
        report.message = message
        report.seconds = time.monotonic() - started
        log.write(report.summary())
        log.flush()
        return report

    try:
        roots = check_roots(
            source, replica, log.folder, create_replica=options.create_replica, versions=options.versions
        )
        # Built here, not after taking the lock: a bad exclude pattern is a
        # refusal (exit 2) before anything, the replica itself, is made.
        rules = _rules(roots, options)
        if not roots.replica_exists and not options.dry_run:
            try:
                # The last folder only (its parent was checked): never the
                # mount point of a drive that is not there.
                os.mkdir(roots.replica)
            except FileExistsError:
                if not os.path.isdir(roots.replica):  # made meanwhile, as something else
                    raise ConfigError(f"replica is not a folder: {escape(roots.replica)}") from None
            except OSError as error:
                raise ConfigError(
                    f"cannot create replica {escape(roots.replica)}: {describe(error)}"
                ) from None
            log.write(f"CREATED replica folder {escape(roots.replica)}")
            roots = roots._replace(replica_exists=True)
        endpoint = replica_at(roots.replica, options, log.write)
    except ConfigError as error:
        log.write(f"ERROR {error}")
        return finish(ExitCode.USAGE, str(error))
    if roots.logs_in_source is not None:
        # Left out of the mirror (it changes during the run): said once per
        # run, so that nobody wonders where the folder went in the replica.
        log.write(
            f"NOTE the log folder {escape(roots.logs_in_source)}/ is inside the source; "
            "it is left out of the mirror"
        )

    try:
        # A dry run into a replica still to be created writes nothing: no lock.
        lock = endpoint.lock() if roots.replica_exists else nullcontext()
        with lock, _collector_paused():
            code, message = _mirror(
                _Cycle(roots, rules, options, log, report, verbose, hooks or Hooks(), progress, clock),
                endpoint,
            )
    except ReplicaLocked as error:
        log.write(f"LOCKED {error}")
        return finish(ExitCode.LOCKED, str(error))
    except ConfigError as error:  # the lock could not be taken at all
        log.write(f"ERROR {error}")
        return finish(ExitCode.USAGE, str(error))
    except KeyboardInterrupt as interruption:
        log.write(
            f"INTERRUPTED the run was stopped by {stopped_by(interruption)}; the replica holds no partial file"
        )
        finish(stop_code(interruption), "interrupted")
        raise
    return finish(code, message)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector during the run, as it was before.

    A run makes tens of thousands of small tuples (listings, plan steps) and
    keeps the plan until the end: the collector would traverse them again and
    again, finding nothing (a run makes no reference cycles that matter), for
    about a tenth of an initial copy of 20,000 small files (measured).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _rules(roots: Roots, options: MirrorOptions) -> PlanRules:
    fixed = [roots.logs_in_source] if roots.logs_in_source else []
    excluder = Excluder(options.exclude, fixed)
    return PlanRules(
        checksum=options.checksum,
        modify_window_ns=options.modify_window_ns,
        delete_excluded=options.delete_excluded,
        keep_owner=_as_root(),
        excluded=excluder if excluder else None,
    )


def _as_root() -> bool:
    # Only root can give an entry another owner: other users keep none
    # (Windows has no owners to give: no geteuid).
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _warn_once(holds: Capabilities, *, as_root: bool, log: DailyLog) -> None:
    """One line per run for what the replica cannot keep; never one per file.

    Owners are named only to root: no other user's run keeps them anywhere.
    """
    lost = [word for word in holds.cannot_keep(source_limits()) if as_root or word != "owners"]
    if lost:
        log.write(f"WARNING the replica's file system ({holds.fs_type}) cannot keep {', '.join(lost)}")


class _Cycle(NamedTuple):
    """What the stages of one cycle share, once the pair is checked."""

    roots: Roots
    rules: PlanRules
    options: MirrorOptions
    log: DailyLog
    report: Report
    verbose: bool
    hooks: Hooks
    progress_factory: ProgressFactory | None
    clock: Callable[[], datetime]


def _mirror(cycle: _Cycle, replica: Replica) -> tuple[ExitCode, str]:
    roots, log, report = cycle.roots, cycle.log, cycle.report
    try:
        src = open_source(roots.source, opener=cycle.hooks.opener)
    except OSError as error:
        return _unreadable(error, roots, report, log)
    try:
        # A dry run into a replica that does not exist yet never opens it.
        rep = None
        if roots.replica_exists:
            replica.open()
            rep = replica
    except OSError as error:
        src.close()
        return _unreadable(error, roots, report, log)
    try:
        holds = replica.measure(as_root=cycle.rules.keep_owner) if rep is not None else FULL_POSIX
    except OSError as error:
        replica.close()
        src.close()
        return _unreadable(error, roots, report, log)
    rules = fit_rules(cycle.rules, holds)
    _warn_once(holds, as_root=cycle.rules.keep_owner, log=log)
    cycle = cycle._replace(rules=rules)
    helper = None
    if (
        rep is not None
        and replica.concurrency.fork_helper
        and isinstance(src, ForkableSource)
        and isinstance(rep, ForkableReplica)
        and roots.versions is None  # one run folder, filled in order
        and cycle.hooks == Hooks()  # test hooks want every action here, in order
        and may_share()
    ):
        helper = Helper(src, rep, rules, _helper_context(cycle), log, report, keep_untouched=cycle.verbose)
    try:
        return _plan_and_apply(cycle, src, rep, replica, helper)
    finally:
        if helper is not None:
            helper.close()
        src.close()
        replica.close()


def _plan_and_apply(
    cycle: _Cycle, src: Source, rep: Replica | None, replica: Replica, helper: Helper | None
) -> tuple[ExitCode, str]:
    roots, rules, options, log, report = cycle.roots, cycle.rules, cycle.options, cycle.log, cycle.report
    verbose, hooks, progress_factory = cycle.verbose, cycle.hooks, cycle.progress_factory
    try:
        plan = plan_trees(src, rep, rules, keep_untouched=verbose, share=helper)
    except ReplicaLost as error:
        return _lost(f"{describe(error)}: nothing was changed; the next run converges", report, log)
    except OSError as error:
        return _unreadable(error, roots, report, log)
    part = None  # the helper's share of the plan, while it holds one
    if helper is not None and plan.given:
        part = _join_plans(plan, helper, Walk(src, rep, rules, plan, verbose), log)
    elif helper is not None and helper.stopped:  # before it was given anything
        log.write(f"WARNING the helper process stopped: {helper.stopped}; the run goes on in this process")

    refusal = _guard(plan, options, log)
    if refusal:
        return ExitCode.GUARD, refusal

    _log_plan(plan, report, log)
    progress = None
    if progress_factory is not None:
        progress = _progress(progress_factory, plan, part)
    started = False
    handed: list[list[Action]] = []
    if helper is not None and part is not None:
        handed = _hand_over(plan, helper)
    # A helper with nothing to do is only told to stop (close()).
    sharing = helper if part is not None and (part.actions or handed) else None
    if sharing is not None:
        started, progress = _start_part(sharing, progress, log)
    keeper: RunKeeper | None = None
    if roots.versions is not None and isinstance(replica, KeepsVersions):
        keeper = replica.version_keeper(roots.versions, options, log.write, clock=cycle.clock)
    elif roots.versions is not None:
        from ..features.versions import make_keeper  # only a pair that keeps versions loads it

        keeper = make_keeper(
            roots.versions,
            options,
            log.write,
            clock=cycle.clock,
            keep_owner=rules.keep_owner,
            replica=replica_folders(rep) if rep is not None else None,
        )
    ctx = ApplyContext(
        src,
        replica,  # not opened in a dry run into a replica yet to be made: never written then
        report,
        log.write,
        dry_run=options.dry_run,
        keep_owner=rules.keep_owner,
        keep_mode=rules.holds.permissions,
        before_action=hooks.before_action,
        during_copy=hooks.during_copy,
        progress=progress,
        keeper=keeper,
        list_untouched=verbose,
        walk=Walk(src, rep, rules, Plan(), verbose),
    )
    now, later = _after_given(plan)
    try:
        apply_plan(now, ctx)
        if sharing is not None:
            _join_part(sharing, started, ctx, Walk(src, rep, rules, Plan()), log)
        apply_plan(later, ctx)
    finally:
        if keeper is not None:
            keeper.close()
        if progress is not None:
            progress.close()
    if ctx.lost is not None:
        _lost(lost_line(ctx), report, log)
    if keeper is not None and not report.failed:
        keeper.prune()  # only after a successful run
    # Changes that may have been made with no line: the log is not the whole
    # record of the run, which is a failure to report (1), not a success.
    return (ExitCode.FAILED if report.failed or report.unlogged else ExitCode.OK), ""


def _progress(factory: ProgressFactory, plan: Plan, part: PlanPart | None) -> Progress | None:
    """The progress display for the plan and the helper's part; None if there is nothing to do.

    A TREE action is not an entry: its actions are added to the totals as
    its folders are planned (Progress.grow).
    """
    entries = sum(action.op is not Op.TREE for action in plan.actions) + (
        part.actions if part is not None else 0
    )
    if not entries:
        return None
    total_bytes = sum(a.src.size for a in plan.actions if a.op is Op.COPY and a.src is not None)
    return factory(entries, total_bytes + (part.copy_bytes if part is not None else 0))


def _lost(message: str, report: Report, log: DailyLog) -> tuple[ExitCode, str]:
    """The replica was lost: one line for the whole run (exit 1)."""
    report.failed.append((".", message))
    log.write(f"FAILED ./: {escape(message)}")
    return ExitCode.FAILED, message


def _unreadable(error: OSError, roots: Roots, report: Report, log: DailyLog) -> tuple[ExitCode, str]:
    message = f"cannot read {escape(error.filename or roots.source)}: {describe(error)}"
    report.failed.append((".", message))
    log.write(f"FAILED ./: {message}")
    return ExitCode.FAILED, message


def _log_plan(plan: Plan, report: Report, log: DailyLog) -> None:
    """Log what the plan found that is not an action: unreadable folders, untouched entries."""
    for word, path, reason in plan.problems:
        if word == "VANISHED":
            report.vanished.append(path)
        else:
            report.failed.append((path, reason))
        log.write(f"{word} {escape(path)}: {escape(reason)}")
    report.untouched_count = plan.untouched
    report.untouched = plan.untouched_paths
    for path in plan.untouched_paths:
        log.write(f"UNTOUCHED {escape(path)}")


def _helper_context(cycle: _Cycle) -> MakeContext:
    """How the helper applies its part: the same options as here."""
    options, rules, verbose = cycle.options, cycle.rules, cycle.verbose

    def make(
        src: Source, rep: Replica, report: Report, emit: Emit, progress: Progress | None
    ) -> ApplyContext:
        return ApplyContext(
            src,
            rep,
            report,
            emit,
            dry_run=options.dry_run,
            keep_owner=rules.keep_owner,
            keep_mode=rules.holds.permissions,
            progress=progress,
            list_untouched=verbose,
            walk=Walk(src, rep, rules, Plan(), verbose),
        )

    return make


def _join_plans(plan: Plan, helper: Helper, walk: Walk, log: DailyLog) -> PlanPart | None:
    """Add the helper's plan to ``plan`` and return it; None if this process
    planned the helper's part itself (it stopped)."""
    # Rather than wait while the helper plans what it holds, plan here what
    # it has not started (a sub-tree taken back stays in plan.given: the
    # times of the folders above it are still set once both parts are done).
    while (steps := helper.take_back()) is not None:
        walk.run(steps)
    try:
        part = helper.planned()
    except HelperStopped as error:
        log.write(f"WARNING the helper process stopped: {error}; its part is planned here")
        assert walk.rep is not None  # a helper is made only with a replica
        for rel in helper.left():
            walk.run(steps_now(walk.src, walk.rep, rel))
        return None
    plan.replica_files += part.replica_files
    plan.deletions.extend(part.deletions)
    plan.untouched += part.untouched
    plan.untouched_paths.extend(part.untouched_paths)
    plan.problems.extend(part.problems)
    return part


def _hand_over(plan: Plan, helper: Helper) -> list[list[Action]]:
    """Offer the helper this process's new folders (each MKDIR and TREE),
    now that the guard has passed; those it was offered leave ``plan``.

    A first copy's walk ends before the helper has been given much (nothing
    inside a new folder is listed), so without this its folders would all
    be copied here. A TREE's folder is new and its parent is on both sides
    (the walk never enters a new folder), and nothing else in the plan is
    inside it: like a sub-tree given during the walk, it can be applied
    apart from the rest. A MKDIR that replaces a file stays here, with the
    file's removal. The folders above get their times last (plan.given).
    """
    actions = plan.actions
    units = [
        [mkdir, tree]
        for mkdir, tree in pairwise(actions)
        if tree.op is Op.TREE and plain_mkdir(mkdir, tree.path)
    ]
    if not units:
        return []
    handed = helper.hand_over(units)
    if handed:
        moved = {id(action) for unit in handed for action in unit}
        plan.actions = [action for action in actions if id(action) not in moved]
        plan.given.extend(unit[1].path for unit in handed)
    return handed


def _start_part(helper: Helper, bar: Progress | None, log: DailyLog) -> tuple[bool, Progress | None]:
    """Let the helper apply its part: whether it started, and the progress to advance here."""
    try:
        relay = helper.apply(bar)
    except HelperStopped as error:
        log.write(f"WARNING the helper process stopped: {error}; its part is done here")
        return False, bar
    return True, relay


def _join_part(helper: Helper, started: bool, ctx: ApplyContext, walk: Walk, log: DailyLog) -> None:
    """Help the helper finish (its outcomes are logged and counted as they
    come), or do its part here if it stopped.

    A sub-tree left half done by a helper that stopped is planned anew (the
    helper's plan of it stays there): what its listing finds unreadable was
    reported from the helper's plan already, so only the actions count.
    """
    if started:
        # The folders handed over first: taking one never waits for the helper.
        while (unit := helper.claim()) is not None:
            apply_plan(unit, ctx)
        try:
            while (actions := helper.steal()) is not None:
                apply_plan(actions, ctx)
            helper.result()
        except HelperStopped as error:
            _stopped_while_applying(helper, str(error), ctx.report, log)
        else:
            return
    # What it did before it stopped is in place by now, and the guard has
    # passed for the whole run already.
    _apply_anew(walk, helper.left(), ctx)


def _stopped_while_applying(helper: Helper, why: str, report: Report, log: DailyLog) -> None:
    """Say that the helper stopped while applying, and what the log may lack.

    Its outcomes come a slice of actions at a time: if it was killed in the
    middle of one, the changes of that slice it made have no line. They
    cannot be named (the slice was planned in the helper), only counted;
    the run then exits 1: its log is not the whole record of what it did.
    """
    unsettled, where = helper.unsettled()
    if not unsettled:
        log.write(f"WARNING the helper process stopped: {why}; its part is done here")
        return
    report.unlogged += unsettled
    log.write(
        f"WARNING the helper process stopped: {why}; it was applying {escape(where)}/, "
        f"and up to {unsettled} changes it made there have no line in this log; "
        "what its part still needs is done here"
    )


def _apply_anew(walk: Walk, rels: list[str], ctx: ApplyContext) -> None:
    """Plan the sub-trees ``rels`` from what is there now, and apply them here."""
    walk.plan.actions.clear()
    for rel in rels:
        walk.run(steps_now(ctx.src, ctx.rep, rel))
    apply_plan(walk.plan.actions, ctx)


def _after_given(plan: Plan) -> tuple[list[Action], list[Action]]:
    """The actions to do now, and those to do once the helper's part is done.

    The folders above a given sub-tree get their times and permissions last:
    the helper may still be creating or removing entries below them.
    """
    if not plan.given:
        return plan.actions, []
    above: set[str] = set()
    for rel in plan.given:
        while rel:
            rel = rel.rpartition("/")[0]
            above.add(rel)
    now: list[Action] = []
    later: list[Action] = []
    for action in plan.actions:
        (later if action.op is Op.DIRMETA and action.dir in above else now).append(action)
    return now, later


def _guard(plan: Plan, options: MirrorOptions, log: DailyLog) -> str:
    """Refuse the whole run if it deletes too much; return the reason or ""."""
    deleted, total = len(plan.deletions), plan.replica_files
    limit = options.max_delete
    if limit.allows(deleted, total):
        return ""
    message = (
        f"deletion guard: this run would delete {deleted} of the replica's {total} files "
        f"(limit {limit}); nothing was changed. Is the source mounted? "
        "If the deletions are intended, rerun with a higher --max-delete (100% lifts the limit)"
    )
    log.write(f"REFUSED {message}")
    for path in plan.deletions[:GUARD_SHOWN]:
        log.write(f"REFUSED would delete {escape(path)}")
    if deleted > GUARD_SHOWN:
        log.write(f"REFUSED ... and {deleted - GUARD_SHOWN} more")
    return message
