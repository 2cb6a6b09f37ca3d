"""Carry out a plan, one action at a time, collecting per-entry outcomes.

A failure of one entry is logged as ``FAILED path: reason`` and the run goes
on with the rest; an entry that disappears is a ``VANISHED`` warning. With
``dry_run`` every action is logged and counted exactly as it would be
done, and nothing is changed.

An ``Op.TREE`` action (a sub-tree only in the source, see
:mod:`synchro.pipeline.walk`) is planned here, folder by folder, where its
actions would have been in the plan: each folder is listed, planned against
an empty replica folder, and its actions applied before its sub-folders
are, so that what is held is the folders still to do, not the sub-tree.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

from ..endpoints.base import (
    SMALL_COPY,
    CopyJob,
    Kind,
    OnChunk,
    Replica,
    ReplicaLost,
    Source,
    SourceChanged,
    SourceVanished,
    StartsItself,
    describe,
)
from ..options import MirrorOptions
from .log import escape
from .plan import Action, Descend, Op, Side, Step
from .readahead import ReadAhead
from .report import Report
from .walk import GONE, Walk

if TYPE_CHECKING:
    from ..endpoints.local.pool import CopyPool, Job

Emit = Callable[[str], None]


class Progress(Protocol):
    """Told of each entry once it is done and of the bytes of its plan as they are
    written (a large file's chunk by chunk); see :mod:`synchro.pipeline.engine`."""

    def advance(self, entries: int, nbytes: int) -> None: ...

    def grow(self, entries: int, nbytes: int) -> None:
        """More to do than the plan said: a sub-tree planned while applying (Op.TREE)."""
        ...

    def close(self) -> None: ...


class Slicing(Protocol):
    """Told of the actions a sub-tree planned while applying begins, and when
    their outcomes are complete (the helper sends them a slice at a time,
    see :mod:`synchro.pipeline.helper`)."""

    def begin(self, actions: int) -> None: ...

    def settle(self) -> None: ...


# Called with each action just before it is carried out: a hook for tests
# that need to change the trees between the plan and the write.
BeforeAction = Callable[[Action], None]
# Called during a file's copy with the action and the bytes copied so far,
# after each chunk: a hook for tests that change a file while it is read.
DuringCopy = Callable[[Action, int], None]


class Keeper(Protocol):
    """Keeps a replica entry right before it is overwritten or deleted
    (:class:`synchro.features.versions.Keeper`); a deleted one is gone afterwards.
    Told of each entry made where there was none, right after."""

    def keep(self, action: Action) -> None: ...

    def added(self, action: Action) -> None: ...


class RunKeeper(Keeper, Protocol):
    """A :class:`Keeper` for a whole run: closed at its end, and pruned after a successful one."""

    def close(self) -> None: ...

    def prune(self) -> list[str]: ...


@runtime_checkable
class KeepsVersions(Protocol):
    """A replica that keeps the old versions of its entries itself (S3: copies on the server).

    An optional ability, asked with isinstance(): a local replica's versions
    are kept by :mod:`synchro.features.versions` through its descriptors.
    """

    def version_keeper(
        self, versions: str, options: MirrorOptions, emit: Emit, *, clock: Callable[[], datetime]
    ) -> RunKeeper | None: ...


class ApplyContext:
    """What applying a plan needs besides the actions: the trees, the report, the log, the options."""

    __slots__ = (
        "before_action",
        "counted",
        "dry_run",
        "during_copy",
        "emit",
        "keep_mode",
        "keep_owner",
        "keeper",
        "list_untouched",
        "lost",
        "not_done",
        "progress",
        "rep",
        "report",
        "slicing",
        "src",
        "unmade",
        "walk",
    )

    def __init__(
        self,
        src: Source,
        rep: Replica,
        report: Report,
        emit: Emit,
        *,
        dry_run: bool = False,
        keep_owner: bool = False,
        keep_mode: bool = True,
        before_action: BeforeAction | None = None,
        during_copy: DuringCopy | None = None,
        progress: Progress | None = None,
        keeper: Keeper | None = None,
        list_untouched: bool = False,
        walk: Walk | None = None,
    ) -> None:
        self.src = src
        self.rep = rep
        self.report = report
        self.emit = emit
        self.dry_run = dry_run
        # What is compared and said changed (the replica attempts the same):
        # owners when root on a replica that holds them, permission bits
        # where it holds them.
        self.keep_owner = keep_owner
        self.keep_mode = keep_mode
        self.before_action = before_action
        self.during_copy = during_copy
        self.progress = progress
        self.counted = 0  # bytes of the action at hand already told to progress
        self.keeper = keeper  # keeps old versions; None: overwrite and delete outright
        # Verbose: an entry found equal only now (--checksum) is listed as
        # UNTOUCHED too, as the plan lists those it settles itself.
        self.list_untouched = list_untouched
        # Replica folders this run failed to create: what goes inside them fails
        # with that reason instead of a puzzling "No such file or directory".
        self.unmade: set[str] = set()
        # The replica's connection was lost: the actions from then on are not
        # carried out, only counted, and said once (see :func:`lost_line`).
        self.lost: ReplicaLost | None = None
        self.not_done = 0
        # Lists and plans the folders of an Op.TREE (a plan holding one needs it).
        self.walk = walk
        self.slicing: Slicing | None = None


def display(action: Action) -> str:
    """The path as logged: escaped, with ``/`` after a folder."""
    if action.op is Op.COPY:  # most actions: a file, never the root
        return escape(action.path)
    meta = action.src or action.rep
    is_dir = action.op in (Op.MKDIR, Op.RMDIR, Op.DIRMETA) or (meta is not None and meta.kind is Kind.DIR)
    path = action.path or "."
    return escape(path) + ("/" if is_dir else "")


def apply_plan(actions: list[Action], ctx: ApplyContext) -> None:
    background = _Background(ctx) if _background_allowed(ctx) else None
    ahead = None
    if not ctx.dry_run:
        ahead = ReadAhead(ctx.src)
        ahead.add(actions)
    try:
        for action in actions:
            if action.op is Op.TREE:
                _apply_tree(action, ctx, background, ahead)
            else:
                _apply_one(action, ctx, background, ahead)
        if background is not None:
            background.drain()
    finally:
        if background is not None:
            background.close()


def _apply_one(
    action: Action, ctx: ApplyContext, background: _Background | None, ahead: ReadAhead | None
) -> None:
    if ahead is not None and action.op is Op.COPY:
        ahead.copying(action)
    progress = ctx.progress
    if ctx.lost is not None and action.op not in _NO_REPLICA:
        ctx.not_done += 1
        if progress is not None:
            _counted(action, ctx)
        return
    if ctx.before_action is not None:
        ctx.before_action(action)
    if background is not None:
        if action.op is Op.COPY and background.takes(action):
            background.submit(action)  # counted once it is reported
            return
        if background.actions and action.op in IN_FLIGHT:
            background.submit_action(action)  # counted once it is reported
            return
        if action.op is Op.DIRMETA:
            # A folder's times and mode come after every copy into it.
            background.drain()
        elif background.actions:
            background.settle(action.path)
    _carry_out(action, ctx)
    if progress is not None:
        _counted(action, ctx)
        if background is not None:
            background.count_running()


# Actions of an Op.TREE applied between two outcomes sent by the helper
# (helper.SLICE, repeated here: the helper imports this module).
TREE_SLICE = 64


def _apply_tree(
    tree: Action, ctx: ApplyContext, background: _Background | None, ahead: ReadAhead | None
) -> None:
    """Op.TREE: plan and apply a sub-tree only in the source, folder by folder.

    Depth first with a stack, as the walk would have planned it, so its
    actions come in the order the plan would have held them; what the
    stack holds is the folders still to do (depth times width), each folder's
    actions only until they are applied.
    """
    if ctx.before_action is not None:
        ctx.before_action(tree)  # a test's moment between the plan and the listing
    # Listed even once the replica is lost: each of its actions is counted
    # as not done, as they would have been had the plan held them.
    walk, slicing = ctx.walk, ctx.slicing
    assert walk is not None, "a plan with a TREE action is applied with its walk"
    stack: list[Step] = [Descend(tree.path, Side.SOURCE, tree.src, None)]
    begun = 0
    while stack:
        step = stack.pop()
        if isinstance(step, Descend):
            steps = walk.expand(step)
            _tell_problems(walk, ctx)
            if ctx.progress is not None:
                _grow(steps, ctx.progress)
            if ahead is not None:
                ahead.add(steps)
            stack.extend(reversed(steps))
            continue
        if slicing is not None:
            slicing.begin(1)
            begun += 1
        _apply_one(step, ctx, background, ahead)
        if slicing is not None and begun >= TREE_SLICE:
            if background is not None:
                background.drain()  # every outcome begun is in before the slice is sent
            slicing.settle()
            begun = 0


def _grow(steps: list[Step], progress: Progress) -> None:
    """Tell the progress what a folder planned while applying adds to do."""
    entries = nbytes = 0
    for step in steps:
        if isinstance(step, Action):
            entries += 1
            if step.op is Op.COPY and step.src is not None:
                nbytes += step.src.size
    progress.grow(entries, nbytes)


def _tell_problems(walk: Walk, ctx: ApplyContext) -> None:
    """Report what the walk could not read, as the engine reports the plan's problems."""
    problems = walk.plan.problems
    for word, path, reason in problems:
        if word == "VANISHED":
            if ctx.report.vanished[-1:] == [path]:
                continue  # its MKDIR found it gone already: one line is enough
            ctx.report.vanished.append(path)
        else:
            ctx.report.failed.append((path, reason))
        ctx.emit(f"{word} {escape(path)}: {escape(reason)}")
    problems.clear()


# Actions that only report (a source entry that cannot be copied): they do
# not need the replica, and keep their lines after it is lost.
_NO_REPLICA = frozenset({Op.SKIP, Op.FAIL})


def lost_line(ctx: ApplyContext) -> str:
    """The one line for the actions not done since the replica was lost ("" if it was not)."""
    if ctx.lost is None:
        return ""
    reason = ctx.lost.strerror or str(ctx.lost)
    return f"{reason}: {ctx.not_done} actions not done; the next run converges"


def _not_done(ctx: ApplyContext, error: ReplicaLost) -> None:
    """An action that failed because the replica is lost: counted, said once at the end."""
    if ctx.lost is None:
        ctx.lost = error
    ctx.not_done += 1


# While waiting for a background copy, the bar is told the bytes written
# so far at this interval.
PROGRESS_WAIT = 0.1
# Reported jobs are forgotten this many at a time (a bound on what a run keeps).
FORGET_AFTER = 1024


def _counted(action: Action, ctx: ApplyContext) -> None:
    """Tell the progress an entry is done, with the bytes of its plan not told yet."""
    assert ctx.progress is not None
    planned = action.src.size if action.op is Op.COPY and action.src is not None else 0
    ctx.progress.advance(1, max(0, planned - ctx.counted))
    ctx.counted = 0


def _chunks_told(action: Action, ctx: ApplyContext, written: _Written) -> OnChunk:
    """For a large file's copy: note the bytes written so far (in the thread that copies)."""
    hook = ctx.during_copy

    def told(copied: int) -> None:
        if hook is not None:
            hook(action, copied)
        written.bytes = copied

    return told


class _Written:
    """The bytes of a copy written so far (set by the copying thread), and told to progress."""

    __slots__ = ("bytes", "told")

    def __init__(self) -> None:
        self.bytes = 0
        self.told = 0

    def tell(self, progress: Progress, planned: int) -> None:
        now = min(self.bytes, planned)  # a file that grew meanwhile is not counted beyond its plan
        if now > self.told:
            progress.advance(0, now - self.told)
            self.told = now


# What goes in flight besides copies where the replica asks for it
# (Concurrency.actions_in_flight): one replica call each, done again in the
# foreground if it fails, as a copy is.
IN_FLIGHT = frozenset({Op.DELETE, Op.CLEANUP, Op.RMDIR, Op.DIRMETA})


def _background_allowed(ctx: ApplyContext) -> bool:
    # Test hooks and version keeping want each action done in order, in full.
    return (
        not (
            ctx.dry_run
            or ctx.keeper is not None
            or ctx.before_action is not None
            or ctx.during_copy is not None
        )
        and ctx.rep.concurrency.copies_in_flight > 0
    )


class _Background:
    """Copies in flight beside the plan, reported in the main thread, in order.

    How many, and which, the replica says (:class:`~synchro.endpoints.base.Concurrency`):
    a local one, large files only (the kernel copies them without the
    GIL, so two cores copy two files at once); a remote one, many of any
    size (each waits for its round trips). Each copy is a
    :class:`~synchro.endpoints.base.CopyJob` the replica prepares here, so
    the main thread may move on to other folders. Outcomes are logged by
    the main thread when a copy ends; one that fails with an OSError is done
    again in the foreground, where the usual error handling (and the retry
    for read-only folders) applies.
    """

    def __init__(self, ctx: ApplyContext) -> None:
        self.ctx = ctx
        concurrency = ctx.rep.concurrency
        self.threads = concurrency.copies_in_flight
        self.min_size = concurrency.in_flight_min_size
        self.actions = concurrency.actions_in_flight
        # The jobs submitted, in order, since the reported ones were last
        # forgotten (see _forget_reported); those before _next are reported.
        self.jobs: list[Job[_Copy]] = []
        self._next = 0
        self._pool: CopyPool[_Copy] | None = None
        # With actions in flight: the index in jobs of the last job of each path.
        self._last: dict[str, int] = {}
        # Copies that start themselves (no thread here): waited for by close().
        self._starting = concurrency.jobs_start_themselves
        self._started: list[Job[_Copy]] = []

    def takes(self, action: Action) -> bool:
        return (
            action.src is not None
            and action.src.size >= self.min_size
            and not action.check_content
            and not (self.ctx.unmade and action.dir in self.ctx.unmade)
        )

    def submit(self, action: Action) -> None:
        written = _Written()
        # A small file is one quick step, counted when done (as in _on_chunk):
        # followed chunk by chunk, it could not take the compiled copy.
        small = action.src is not None and action.src.size <= SMALL_COPY
        told = None if self.ctx.progress is None or small else _chunks_told(action, self.ctx, written)
        try:
            copy = self.ctx.rep.copy_job(self.ctx.src, action.dir, action.name, told)
        except OSError:
            _carry_out(action, self.ctx)  # reported there
            return
        self._start(action, copy, written)

    def submit_action(self, action: Action) -> None:
        """A removal or a folder's metadata, in flight (see :data:`IN_FLIGHT`)."""
        self._start(action, _Call(action, self.ctx), _Written())

    def _start(self, action: Action, work: CopyJob, written: _Written) -> None:
        # Imported here: only a run with copies in flight needs threads (and
        # a run without them may share its work with a forked helper process).
        from ..endpoints.local.pool import CopyPool, Job

        if self._pool is None:
            self._pool = CopyPool(_Copy.run, self.threads, discard=_Copy.discard)
        after = None
        if self.actions:
            after = self._before(action)
            self._last[action.path] = len(self.jobs)
        job = Job(_Copy(action, work, written, after))
        self.jobs.append(job)
        if self._starting and not after and not isinstance(work, _Call):
            self._started.append(job)
            cast(StartsItself, work).start(partial(_finished, job))
        else:
            self._pool.submit(job)
        if len(self.jobs) - self._next > 2 * self.threads:
            self._finish_next()

    def _before(self, action: Action) -> list[Job[_Copy]]:
        """The jobs in flight that ``action`` must wait for: on its path and, for a
        folder's removal or metadata, anywhere below it."""
        jobs = self.jobs
        if action.op in (Op.RMDIR, Op.DIRMETA):
            prefix = f"{action.path}/" if action.path else ""
            return [
                job
                for job in jobs[self._next :]
                if not job.done.is_set()
                and (job.item.action.path == action.path or job.item.action.path.startswith(prefix))
            ]
        index = self._last.get(action.path)
        if index is None or index < self._next or jobs[index].done.is_set():
            return []
        return [jobs[index]]

    def settle(self, path: str) -> None:
        """Before an action in the foreground: what is in flight on ``path`` is done and reported."""
        index = self._last.get(path)
        while index is not None and self._next <= index:
            self._finish_next()

    def count_running(self) -> None:
        """Tell the progress the bytes written so far by the copies not reported yet."""
        progress = self.ctx.progress
        assert progress is not None
        for job in self.jobs[self._next :]:
            if job.item.action.op is Op.COPY:
                assert job.item.action.src is not None
                job.item.written.tell(progress, job.item.action.src.size)

    def _finish_next(self) -> None:
        job = self.jobs[self._next]
        # An interruption while waiting leaves the job to close().
        if self.ctx.progress is None:
            job.done.wait()
        else:
            while not job.done.wait(PROGRESS_WAIT):
                self.count_running()  # the bar moves while a large file is written
        self._next += 1
        self._report(job, retry=True)
        if self._next >= FORGET_AFTER:
            self._forget_reported()

    def _forget_reported(self) -> None:
        """Drop the reported jobs, so that a first copy of a million files does not
        keep a million jobs (and their events) to the end of the run."""
        done = self._next
        if self._started:
            self._started = [job for job in self._started if not job.reported]
        del self.jobs[:done]
        self._next = 0
        self._last = {path: index - done for path, index in self._last.items() if index >= done}

    def _report(self, job: Job[_Copy], *, retry: bool) -> None:
        action, error = job.item.action, job.error
        # What the bar was told of this copy; a copy done again below goes on from there.
        self.ctx.counted = job.item.written.told
        if error is None and action.op is not Op.COPY:
            _done(action, self.ctx)
        elif error is None:
            self.ctx.report.bytes_copied += job.result
            _changed(self.ctx, action)
        elif isinstance(error, SourceVanished):
            _vanished(self.ctx, action)
        elif isinstance(error, SourceChanged):
            _skipped(self.ctx, action, str(error))
        elif isinstance(error, ReplicaLost):
            _not_done(self.ctx, error)
        elif isinstance(error, OSError) and retry:
            _carry_out(action, self.ctx)
        elif isinstance(error, OSError):
            _failed(self.ctx, action, describe(error))
        else:
            raise error
        if self.ctx.progress is not None:
            _counted(action, self.ctx)
        # Only now: an interruption before this line has close() log it
        # (once more at worst, never not at all).
        job.reported = True

    def drain(self) -> None:
        while self._next < len(self.jobs):
            self._finish_next()

    def close(self) -> None:
        """Stop: copies not started are dropped, running ones end (installed or discarded).

        This waits for the running copies, so that no thread still writes
        after the run has released its lock, then logs the copies that
        completed but were not reported yet (after an interruption).
        """
        if self._pool is None:
            return
        self._pool.close()
        for job in self._started:  # they end on their own: installed, or discarded
            job.done.wait()
        for job in self.jobs:
            if not job.reported and job.done.is_set() and job.error is None:
                self._report(job, retry=False)


def _finished(job: Job[_Copy], result: int, error: BaseException | None) -> None:
    """A copy that started itself is done (told from whatever thread ran it)."""
    job.result, job.error = result, error
    job.done.set()


class _Copy:
    """One action in flight (a copy, and what it has written so far; or, with
    actions in flight, a removal or a folder's metadata)."""

    __slots__ = ("action", "after", "job", "written")

    def __init__(
        self, action: Action, job: CopyJob, written: _Written, after: list[Job[_Copy]] | None = None
    ) -> None:
        self.action = action
        self.job = job
        self.written = written
        self.after = after  # jobs to wait for first: earlier work on the same path or below

    def run(self) -> int:
        for earlier in self.after or ():
            earlier.done.wait()
        return self.job.run()

    def discard(self) -> None:
        self.job.discard()


class _Call:
    """A removal or a folder's metadata as a job (a :class:`CopyJob` of no bytes)."""

    __slots__ = ("action", "ctx")

    def __init__(self, action: Action, ctx: ApplyContext) -> None:
        self.action, self.ctx = action, ctx

    def run(self) -> int:
        action, rep = self.action, self.ctx.rep
        if action.op is Op.DIRMETA:
            assert action.src is not None
            rep.set_folder_meta(action.path, action.src)
        elif action.op is Op.RMDIR:
            rep.remove_folder(action.dir, action.name)
        else:
            rep.remove(action.dir, action.name)
        return 0

    def discard(self) -> None:
        pass


def _carry_out(action: Action, ctx: ApplyContext, *, retry: bool = True) -> None:
    if ctx.unmade and action.dir in ctx.unmade:
        if action.op is Op.MKDIR:
            ctx.unmade.add(action.path)
        if action.op is not Op.DIRMETA:  # the folder's own FAILED line is enough
            _failed(ctx, action, "its folder could not be created")
        return
    try:
        _apply(action, ctx)
    except SourceVanished:
        _vanished(ctx, action)
    except SourceChanged as error:
        _skipped(ctx, action, str(error))
    except ReplicaLost as error:
        _not_done(ctx, error)
    except OSError as error:
        if error.errno in GONE and action.src is not None and _source_gone(ctx, action):
            # A folder that vanished was reported by its MKDIR already.
            if not (action.op is Op.DIRMETA and action.rep is None):
                _vanished(ctx, action)
        elif retry and error.errno == errno.EACCES and _make_writable(ctx, action.dir):
            _carry_out(action, ctx, retry=False)
        else:
            if action.op is Op.MKDIR:
                ctx.unmade.add(action.path)
            _failed(ctx, action, describe(error))


def _source_gone(ctx: ApplyContext, action: Action) -> bool:
    """Whether the source entry the action was planned from is gone (or now of another type)."""
    assert action.src is not None
    if not action.path:
        return False  # the source root, held open for the whole run
    try:
        meta = ctx.src.lookup(action.path)
    except OSError:
        return True
    return meta is None or meta.kind is not action.src.kind


def _make_writable(ctx: ApplyContext, rel: str) -> bool:
    """Let this run write into read-only replica folder ``rel``; False if it cannot.

    The folder's DIRMETA (planned for every folder with a change, see
    :func:`synchro.pipeline.plan.plan_folder`) puts its mode back, and a
    replica-only folder is removed anyway.
    """
    return not ctx.dry_run and ctx.rep.make_writable(rel)


def _failed(ctx: ApplyContext, action: Action, reason: str) -> None:
    path = display(action)
    ctx.report.failed.append((path, reason))
    ctx.emit(f"FAILED {path}: {escape(reason)}")


def _skipped(ctx: ApplyContext, action: Action, reason: str) -> None:
    path = display(action)
    ctx.report.skipped.append((path, reason))
    ctx.emit(f"SKIPPED {path}: {escape(reason)}")


def _vanished(ctx: ApplyContext, action: Action) -> None:
    path = display(action)
    ctx.report.vanished.append(path)
    ctx.emit(f"VANISHED {path}: gone from the source before it was copied")


def _changed(ctx: ApplyContext, action: Action, note: str = "") -> None:
    path = display(action)
    if action.rep is not None or action.replaces:
        ctx.report.note_overwritten(path)
        ctx.emit(f"OVERWRITTEN {path}{note}")
    else:
        if ctx.keeper is not None:
            ctx.keeper.added(action)  # so that a restore as of an earlier run leaves it out
        ctx.report.note_added(path)
        ctx.emit(f"ADDED {path}{note}")


def _untouched(ctx: ApplyContext, action: Action) -> None:
    ctx.report.untouched_count += 1
    if ctx.list_untouched:
        ctx.report.untouched.append(action.path)
        ctx.emit(f"UNTOUCHED {escape(action.path)}")


def _done(action: Action, ctx: ApplyContext) -> None:
    """Report a removal (DELETE, RMDIR, CLEANUP) or a folder's metadata (DIRMETA), carried out."""
    if action.op is Op.DIRMETA:
        assert action.src is not None
        if action.rep is not None and (
            (ctx.keep_mode and action.rep.mode != action.src.mode)
            or (ctx.keep_owner and (action.rep.uid, action.rep.gid) != (action.src.uid, action.src.gid))
        ):
            ctx.report.note_overwritten(display(action))
            ctx.emit(f"OVERWRITTEN {display(action)} (attributes)")
    elif action.op is not Op.CLEANUP and not action.replaces:
        path = display(action)
        ctx.report.note_deleted(path)
        ctx.emit(f"DELETED {path}")


def _apply(action: Action, ctx: ApplyContext) -> None:
    op = action.op
    if op is Op.COPY:  # first: most actions of a run are copies
        _copy_unless_same(action, ctx)
        return
    if op is Op.SKIP:
        _skipped(ctx, action, action.reason)
        return
    if op is Op.FAIL:
        _failed(ctx, action, action.reason)
        return
    if op in (Op.DELETE, Op.RMDIR, Op.CLEANUP):
        if not ctx.dry_run:
            try:
                # Inside the try: a replica folder removed meanwhile by
                # someone else has taken its content with it.
                if ctx.keeper is not None and op is not Op.CLEANUP:
                    ctx.keeper.keep(action)  # moved into the versions: the removal
                elif op is Op.RMDIR:
                    ctx.rep.remove_folder(action.dir, action.name)
                else:
                    ctx.rep.remove(action.dir, action.name)
            except FileNotFoundError:
                pass  # already gone: the goal is reached
        _done(action, ctx)
        return
    if op is Op.MKDIR:
        # Opened first (the copies into it need it anyway): a source folder
        # gone since the scan is VANISHED, not created empty in the replica.
        ctx.src.check_folder(action.path)
        if not ctx.dry_run:
            ctx.rep.make_folder(action.dir, action.name)
        _changed(ctx, action)
        return
    if op is Op.DIRMETA:
        assert action.src is not None
        if not ctx.dry_run:
            ctx.rep.set_folder_meta(action.path, action.src)
        _done(action, ctx)
        return
    assert action.src is not None
    if op is Op.LINK:
        if not ctx.dry_run:
            if ctx.keeper is not None and action.rep is not None:
                ctx.keeper.keep(action)
            ctx.rep.copy_link(action.dir, action.name, action.src)
        _changed(ctx, action)
        return
    if op is Op.RENAME:
        if not ctx.dry_run:
            ctx.rep.rename(action.dir, action.reason, action.name)
        old = escape(action.reason) + ("/" if action.src.kind is Kind.DIR else "")
        _changed(ctx, action, f" (renamed from {old})")
        return
    if op is Op.ATTRS:
        if not ctx.dry_run:
            try:
                ctx.rep.set_file_meta(action.dir, action.name, action.src)
            except PermissionError:
                # An unreadable replica file cannot be opened to chmod it:
                # copy it anew instead, which installs the right bits.
                _copy(action, ctx)
                return
        _changed(ctx, action, " (attributes)")
        return
    raise AssertionError(f"unknown operation {op!r}")


def _copy_unless_same(action: Action, ctx: ApplyContext) -> None:
    """Op.COPY: copy the file, unless --checksum finds the bytes equal."""
    assert action.src is not None
    if action.check_content and ctx.rep.same_content(ctx.src, action.dir, action.name):
        if action.rep is not None and ctx.keep_mode and action.rep.mode != action.src.mode:
            if not ctx.dry_run:
                ctx.rep.set_file_meta(action.dir, action.name, action.src)
            _changed(ctx, action, " (attributes)")
        else:
            _untouched(ctx, action)
        return
    _copy(action, ctx)


def _on_chunk(action: Action, ctx: ApplyContext) -> OnChunk | None:
    """What a copy in this thread tells after each chunk: the test hook, and the
    progress of a large file (a small one is one quick step, counted when done)."""
    hook, progress = ctx.during_copy, ctx.progress
    if progress is None or action.op is not Op.COPY or action.src is None or action.src.size <= SMALL_COPY:
        return None if hook is None else lambda copied: hook(action, copied)
    written, planned = _Written(), action.src.size
    written.told = ctx.counted  # a copy done again after a background one failed
    told = _chunks_told(action, ctx, written)

    def tell(copied: int) -> None:
        told(copied)
        written.tell(progress, planned)
        ctx.counted = written.told

    return tell


def _copy(action: Action, ctx: ApplyContext) -> None:
    assert action.src is not None
    if ctx.dry_run:
        ctx.report.bytes_copied += action.src.size
    else:
        # Not for ATTRS copied anew: the bytes are the same, nothing to keep.
        if ctx.keeper is not None and action.rep is not None and action.op is Op.COPY:
            ctx.keeper.keep(action)
        ctx.report.bytes_copied += ctx.rep.copy_file(ctx.src, action.dir, action.name, _on_chunk(action, ctx))
    _changed(ctx, action)
