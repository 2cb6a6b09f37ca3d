"""A second process that plans and applies whole sub-trees of a run.

Python runs one thread of bytecode at a time, and a mirror run is mostly
short system calls wrapped in bytecode (an ``lstat`` per entry, a dozen
calls per copied file), so threads do not help it. On a machine with two
cores or more, a run is therefore shared with one forked process:

1. While this process walks the trees, it gives sub-trees to the helper
   (:class:`synchro.pipeline.walk.Share`); the helper plans them and keeps their
   actions. Only sub-trees that can be applied apart from the rest are
   given (see :class:`synchro.pipeline.walk._Giving`). At the end of its walk,
   this process takes back the sub-trees the helper has not started, and
   plans them itself instead of waiting for them.
2. The helper sends what the deletion guard and the log need (its
   deletions, counts, problems); nothing is changed until the guard has
   passed for the whole run.
3. Both apply their own part at once, and this process, once done with
   its own, takes back the sub-trees the helper has not started (work
   stealing: the two finish together). The helper sends the outcome of
   each slice of its actions (its log lines, time-stamped when they
   happened, and its report) as soon as the slice is done; this process
   logs them among its own, so the log and the console hold one run's
   lines in time order. The helper also reports its progress for the
   bar; this process sets the times of the folders above the given
   sub-trees last. New folders (a first copy's, listed only as they are
   applied) are handed over once the guard has passed, and each process
   takes them from its own end of the list (:meth:`Helper.hand_over`).

Safety: the helper is forked after the replica lock is taken and shares
that lock's descriptor; it stops with this process (``PR_SET_PDEATHSIG``
and SIGTERM handled as an interruption, so temporaries are removed), and
this process waits for it before it lets the lock go. If the helper stops
unexpectedly, this process plans and applies its sub-trees itself.

A helper killed outright (``kill -9``, the kernel's out-of-memory killer)
may have made changes whose outcome it had not sent yet: at most the slice
it was applying. Before each slice it notes in memory shared with this
process how many actions it has begun, and where; this process compares
that with the outcomes it received and says in a ``WARNING`` how many
changes may have no line, and the run exits 1
(:attr:`~synchro.pipeline.report.Report.unlogged`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from ..endpoints.base import ForkableReplica, ForkableSource, Replica, Source
from ..endpoints.local.compiled import load
from ..errors import Terminated
from .apply import ApplyContext, Emit, Progress, apply_plan
from .plan import Action, Descend, Op, PlanRules, Step
from .report import Report
from .walk import Plan, Walk

if TYPE_CHECKING:
    import mmap

    from .log import DailyLog

# Sub-trees the helper may hold at once: one being planned and one waiting,
# so that it never idles while this process decides what to give next.
AHEAD = 2
# "1": never share a run; "2": share it even on one core (for comparisons,
# troubleshooting and tests). Unset: share it on two cores or more.
ENV = "SYNCHRO_PROCESSES"

# How the helper applies its actions: (source, replica, report, emit,
# progress) -> the context for apply_plan. Made by the engine, which knows
# the options.
MakeContext = Callable[[Source, Replica, Report, Emit, "Progress | None"], ApplyContext]

_UNIT, _PLANNED, _APPLY, _STEAL, _STOP = "unit", "planned", "apply", "steal", "stop"
# The helper's answers; "outcome" comes unasked, after each slice it applied.
_OUTCOME, _RESULT, _ERROR = "outcome", "result", "error"
# Messages are pickles after their length, read whole from raw pipes (so
# that select() sees exactly what has not been read).
_LENGTH = struct.Struct("<Q")
# Shared with the helper: the actions it has begun to apply, and the index
# of the sub-tree it is in (see the module's last paragraph).
_LEDGER = struct.Struct("<qq")
# The helper's answers pipe is made this large (Linux's default limit for a
# user), so that the outcomes of its slices wait there while this process
# is busy with its own part, rather than hold the helper up.
_PIPE_SIZE = 1 << 20
# While applying, the helper's progress so far: (entries, bytes), and what
# its TREE actions added to do (entries, bytes), at most every
# PROGRESS_EVERY seconds, on the pipe that carried "planned" bytes.
_PROGRESS = struct.Struct("<qqqq")
PROGRESS_EVERY = 0.1
# Actions the helper applies between two looks for a steal request (a few ms).
SLICE = 64


def may_share() -> bool:
    """Whether this process may fork a helper now: two cores, no other thread."""
    wanted = os.environ.get(ENV, "")
    if not hasattr(os, "fork") or wanted == "1":
        return False
    threading = sys.modules.get("threading")
    # Forking while another thread holds a lock (of logging, of a stream)
    # could leave the helper stuck on it: an application's threads rule it out.
    if threading is not None and threading.active_count() > 1:
        return False
    if wanted == "2":
        return True
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return cores >= 2


class PlanPart(NamedTuple):
    """What the helper's plan tells the guard and the log."""

    replica_files: int
    deletions: list[str]
    untouched: int
    untouched_paths: list[str]
    problems: list[tuple[str, str, str]]
    actions: int
    copy_bytes: int  # bytes its copies will move (for the progress bar)


class HelperStopped(Exception):
    """The helper process ended before it finished its part."""


class Helper:
    """This process's side of the helper: a :class:`~synchro.pipeline.walk.Share` for the walk.

    The helper's outcomes go to ``log`` and ``report`` as they arrive.
    """

    def __init__(
        self,
        src: ForkableSource,
        rep: ForkableReplica,
        rules: PlanRules,
        make_context: MakeContext,
        log: DailyLog,
        report: Report,
        *,
        keep_untouched: bool,
    ) -> None:
        self._trees = (src, rep)
        self._rules = rules
        self._make_context = make_context
        self._log = log
        self._report = report
        self._keep_untouched = keep_untouched
        self.pid = 0
        self._units: list[tuple[str, list[Step]]] = []  # every sub-tree given, in order: (path, steps)
        self.stolen: set[int] = set()  # indexes into ``given`` taken back to be done here
        self._finished = False  # its result came: every outcome of its part is in
        self.stopped = ""  # why the helper stopped early, once it has
        self._ahead = 0  # sub-trees given and not yet planned
        self._commands = -1
        self._answers: _Inbox | None = None
        self._done = -1  # one byte per planned sub-tree arrives here, then progress
        # One byte per sub-tree given; whoever reads it plans that sub-tree
        # (see take_back). Both processes read this end; this one writes the other.
        self._tokens = self._tokens_w = -1
        self._progress = b""  # part of a progress record read so far
        self._relay: _Relay | None = None
        self._ledger: mmap.mmap | None = None
        self._settled = 0  # actions of the helper whose outcome this process has
        # New folders handed over once the guard has passed (see hand_over):
        # the index in ``_units`` of the first, and each one's MKDIR and TREE.
        self._first_handed = 0
        self._handed: list[list[Action]] = []
        self._kept_back = 0  # of those, taken here from the end (see claim)
        self._log_due = False  # the log's pending lines wait for the helper to have work

    # --- the walk's side (synchro.pipeline.walk.Share)

    def wants(self) -> bool:
        if self.stopped:
            return False
        if self._ahead >= AHEAD and self._done >= 0:
            try:
                self._ahead -= len(os.read(self._done, 64))
            except BlockingIOError:
                pass
            except OSError as error:
                self._stop(f"cannot read from it: {error.strerror or error}")
        return self._ahead < AHEAD and not self.stopped

    def give(self, steps: list[Step]) -> bool:
        if not self.pid and not self._start():
            return False
        try:
            # The token before the sub-tree: when the helper reads the
            # sub-tree, its token is there unless this process took it back.
            os.write(self._tokens_w, b".")
            self._send((_UNIT, steps))
        except OSError as error:
            self._stop(f"cannot write to it: {error.strerror or error}")
            return False
        descend = steps[-1]
        assert isinstance(descend, Descend)
        self._units.append((descend.rel, steps))
        self._ahead += 1
        if self._log_due and self._ahead >= AHEAD:
            # The helper holds all it may: it works while this process writes
            # what the log was waiting for (START...) and imports filelock.
            self._log_due = False
            self._log.flush()
        return True

    @property
    def given(self) -> list[str]:
        """The path of every sub-tree given, in order."""
        return [rel for rel, _ in self._units]

    def take_back(self) -> list[Step] | None:
        """The steps of the newest sub-tree given that the helper has not
        started, now this process's to plan; None if there is none.

        For the end of this process's walk: the helper may still hold a
        sub-tree it has not started, and rather than wait for it, this
        process plans it. Each sub-tree has one token in a pipe both
        processes read; reading a byte from a pipe is atomic, so exactly one
        of them gets it. The helper takes its tokens in the order the
        sub-trees were given, this process takes the newest: as long as a
        token is left, the newest sub-tree not taken back is not started.
        Nothing may be given after this.
        """
        if self.stopped or self._tokens < 0:
            return None
        try:
            if not os.read(self._tokens, 1):
                return None
        except BlockingIOError:
            return None  # the helper has started every sub-tree it holds
        except OSError as error:
            self._stop(f"cannot read from it: {error.strerror or error}")
            return None
        index = len(self._units) - len(self.stolen) - 1  # those taken back are the newest
        self.stolen.add(index)
        self._ahead -= 1
        return self._units[index][1]

    # --- the engine's side

    def planned(self) -> PlanPart:
        """Wait for the helper's plan of every sub-tree given. Raises HelperStopped."""
        self._send_or_stop((_PLANNED, None))
        answer = self._receive()
        assert isinstance(answer, PlanPart)
        # Every "planned" byte was written before the answer: the pipe is
        # clear for progress records.
        with contextlib.suppress(BlockingIOError):
            while os.read(self._done, 4096):
                pass
        return answer

    def hand_over(self, units: list[list[Action]]) -> list[list[Action]]:
        """Offer the helper new folders of this process's plan (each a MKDIR
        and its TREE), to be sent with :meth:`apply`; returns those offered.

        For a first copy: its walk lists nothing inside a new folder, so it
        ends before the helper has been given much, and the folders are
        planned while applied. Once the guard has passed, they are shared
        as the sub-trees of the walk were: each has a token in the pipe of
        :meth:`take_back`; the helper takes them from the first on, this
        process from the last on (:meth:`claim`), and exactly one of them
        gets each. Only what the token pipe holds is offered (a write that
        would block is cut short): the rest stays in this process's plan.
        """
        if self.stopped or not units or self._tokens_w < 0:
            return []
        os.set_blocking(self._tokens_w, False)  # cut short, never waiting for the helper
        try:
            offered = os.write(self._tokens_w, b"." * len(units))
        except BlockingIOError:
            return []
        except OSError as error:
            self._stop(f"cannot write to it: {error.strerror or error}")
            return []
        self._first_handed = len(self._units)
        self._handed = units[:offered]
        for unit in self._handed:
            steps: list[Step] = [*unit]
            self._units.append((unit[0].path, steps))
        return self._handed

    def claim(self) -> list[Action] | None:
        """The last folder handed over that the helper has not taken, now
        this process's to apply; None once each is taken (see hand_over).

        Never waits for the helper, and works as well once it has died:
        what it had not taken is taken here.
        """
        if self._kept_back >= len(self._handed):
            return None
        try:
            if not os.read(self._tokens, 1):
                return None
        except BlockingIOError:
            return None  # the helper has taken the rest
        except OSError as error:
            self._stop(f"cannot read from it: {error.strerror or error}")
            return None
        self._kept_back += 1
        index = len(self._handed) - self._kept_back
        self.stolen.add(self._first_handed + index)
        return self._handed[index]

    def apply(self, bar: Progress | None) -> Progress:
        """Let the helper apply its part (the guard has passed), and the
        folders handed over. Raises HelperStopped.

        Returns the progress this process must advance as it applies its
        own part: it shows the helper's progress on ``bar`` too, and logs
        the helper's outcomes as they come.
        """
        if self._log_due:
            # Fewer than two sub-trees were given: the lines pending since the
            # fork (the run's START among them) are written now, before the
            # helper changes anything, so that the log never holds a line of
            # the helper's without the run's start, even if this process dies.
            self._log_due = False
            self._log.flush()
        self._send_or_stop((_APPLY, (bar is not None, self._first_handed, self._handed)))
        self._relay = _Relay(bar, self)
        return self._relay

    def steal(self) -> list[Action] | None:
        """Take back a sub-tree the helper has not started (this process has
        run out of work): the actions the helper planned for it; None once it
        has none left. Raises HelperStopped.

        The actions are applied here as planned: they are still right, as
        nothing done since the plan touches a given sub-tree (see
        :class:`synchro.pipeline.walk._Giving`), and planning the sub-tree again would
        list both of its sides again.
        """
        if self._finished:
            return None
        if self.stopped:
            raise HelperStopped(self.stopped)
        with contextlib.suppress(OSError):  # it may have finished and ended: its result is waiting
            self._send((_STEAL, None))
        kind, payload = self._receive_kind()
        if kind == _RESULT:
            self._finished = True
            return None
        if payload is None:
            return None
        assert isinstance(payload, tuple)
        index, actions = payload
        assert isinstance(index, int) and isinstance(actions, list)
        self.stolen.add(index)
        return actions

    def result(self) -> None:
        """Wait for the helper to finish its part (its outcomes are in the
        report and the log by then). Raises HelperStopped."""
        if not self._finished:
            kind, _ = self._receive_kind()
            assert kind == _RESULT, kind
            self._finished = True
        if self._relay is not None:
            self._relay.catch_up()  # its last progress came before its result
        self._reap()

    def left(self) -> list[str]:
        """The sub-trees given and not taken back (what this process must redo if the helper stops)."""
        return [rel for index, rel in enumerate(self.given) if index not in self.stolen]

    def unsettled(self) -> tuple[int, str]:
        """After the helper stopped while applying: how many of the actions it
        began have no outcome here (each may have been carried out, with no
        line), and the path of the sub-tree it was in."""
        if self._ledger is None:
            return 0, ""
        begun, index = _LEDGER.unpack_from(self._ledger)
        rel = self._units[index][0] if 0 <= index < len(self._units) else ""
        return max(begun - self._settled, 0), rel

    def close(self) -> None:
        """Make sure the helper is gone: told to stop, or terminated, and waited for.

        Waiting matters: this process holds the replica lock, and no helper
        may still write once it is released. The outcomes it sends as it
        stops (an interruption in the middle of a slice) are logged.
        """
        if self.pid and self._commands >= 0:
            with contextlib.suppress(OSError):
                self._send((_STOP, None))
        for fd in (self._commands, self._done, self._tokens, self._tokens_w):
            if fd >= 0:
                os.close(fd)
        self._commands = self._done = self._tokens = self._tokens_w = -1
        if self.pid:
            # A helper that is applying does not read its commands: a SIGTERM
            # stops it the clean way (its temporary removed, its lines sent).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
        if self._answers is not None:
            self._answers.drain()  # until it ends: it may wait for room to send its last outcome
            self._answers.close()
            self._answers = None
        self._reap()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # --- plumbing

    def _start(self) -> bool:
        import fcntl  # POSIX only, as fork is: not imported where the helper cannot run (Windows)
        import mmap  # only a run that forks a helper needs it

        commands_r, commands_w = os.pipe()
        answers_r, answers_w = os.pipe()
        done_r, done_w = os.pipe()
        tokens_r, tokens_w = os.pipe()
        os.set_blocking(tokens_r, False)  # for both processes: one open file
        if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux
            with contextlib.suppress(OSError):  # a lower limit: the default size works, only slower
                fcntl.fcntl(answers_w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        ledger = mmap.mmap(-1, _LEDGER.size)  # anonymous and shared: the helper writes, this process reads
        _LEDGER.pack_into(ledger, 0, 0, -1)
        # What a stream has buffered would otherwise be written twice. The
        # lines pending for the file stay this process's (the helper never
        # writes them): they are written once the helper has work (see give),
        # since the first batch imports filelock, a few tens of ms that
        # the helper would otherwise spend waiting to be born.
        self._log.flush_streams()
        self._log_due = True
        # Both processes need pickle at once: imported before the fork, the
        # helper does not spend its first milliseconds importing it again.
        _pickle()

        parent = os.getpid()
        # Ctrl+C and SIGTERM wait until both processes are set up: one that
        # lands inside fork() (its at-fork handlers run Python code) would
        # otherwise stop the helper halfway into being, with a traceback.
        stops = {signal.SIGINT, signal.SIGTERM}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            pid = os.fork()
        except OSError as error:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            for fd in (commands_r, commands_w, answers_r, answers_w, done_r, done_w, tokens_r, tokens_w):
                os.close(fd)
            ledger.close()
            self._stop(f"cannot start it: {error.strerror or error}")
            return False
        if pid == 0:  # the helper: never returns
            os.close(commands_w)
            os.close(answers_r)
            os.close(done_r)
            os.close(tokens_w)
            self._serve(parent, previous, _Ends(commands_r, answers_w, done_w, tokens_r, ledger))
        self.pid = pid
        os.close(commands_r)
        os.close(answers_w)
        os.close(done_w)
        os.set_blocking(done_r, False)
        self._commands, self._done = commands_w, done_r
        self._answers = _Inbox(answers_r, self._absorb)
        self._tokens, self._tokens_w = tokens_r, tokens_w
        self._ledger = ledger
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        return True

    def _absorb(self, payload: object) -> None:
        """One slice's outcome: its lines into the log, its report into the run's."""
        assert isinstance(payload, tuple)
        lines, part, settled = payload
        assert isinstance(lines, list) and isinstance(part, Report) and isinstance(settled, int)
        self._report.absorb(part)
        self._log.relay(lines)
        self._settled += settled

    def poll(self) -> None:
        """Take in what the helper has sent so far (its outcomes are logged at once)."""
        if self._answers is not None:
            self._answers.poll()

    def _send(self, message: tuple[str, object]) -> None:
        _put(self._commands, message)

    def _send_or_stop(self, message: tuple[str, object]) -> None:
        if self.stopped:
            raise HelperStopped(self.stopped)
        try:
            self._send(message)
        except OSError as error:
            self._stop(f"cannot write to it: {error.strerror or error}")
            raise HelperStopped(self.stopped) from None

    def _receive(self) -> object:
        return self._receive_kind()[1]

    def _receive_kind(self) -> tuple[str, object]:
        if self.stopped:
            raise HelperStopped(self.stopped)
        assert self._answers is not None
        # Keep the bar moving with the helper's progress while waiting.
        tick = self._relay.catch_up if self._relay is not None else None
        try:
            kind, payload = self._answers.next(tick)
        except (EOFError, OSError) as error:
            self._stop(f"it ended early ({self._reap() or error})")
            raise HelperStopped(self.stopped) from None
        if kind == _ERROR:
            self._stop(f"it failed: {payload}")
            raise HelperStopped(self.stopped)
        return kind, payload

    def reported(self) -> tuple[int, int, int, int] | None:
        """The helper's latest progress report (entries, bytes done; entries, bytes
        added to do), if a new one came."""
        data = self._progress
        while True:  # to the latest: the newest record holds the totals
            try:
                chunk = os.read(self._done, 64 * _PROGRESS.size)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            data += chunk
        whole = len(data) - len(data) % _PROGRESS.size
        self._progress = data[whole:]
        if not whole:
            return None
        entries, nbytes, more_entries, more_bytes = _PROGRESS.unpack_from(data, whole - _PROGRESS.size)
        return entries, nbytes, more_entries, more_bytes

    def _stop(self, why: str) -> None:
        self.stopped = self.stopped or why

    def _reap(self) -> str:
        """Wait for the helper to end; how it ended, or "" once reaped."""
        if not self.pid:
            return ""
        pid, self.pid = self.pid, 0
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return ""
        if os.WIFSIGNALED(status):
            return f"killed by signal {os.WTERMSIG(status)}"
        return f"exit status {os.waitstatus_to_exitcode(status)}"

    def _serve(self, parent: int, mask: set[int | signal.Signals], ends: _Ends) -> NoReturn:
        """The helper's whole life: plan the sub-trees given, then apply them."""
        code = 0

        def answer(kind: str, payload: object) -> None:
            _put(ends.answers, (kind, payload))

        try:
            _die_with_parent(parent)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            # Fresh descriptors below the roots: the parent's are shared with it
            # (the same open files), and two processes listing one folder
            # through a shared descriptor would move each other's position.
            src, rep = self._trees[0].forked(), self._trees[1].forked()
            plan = Plan()
            walk = Walk(src, rep, self._rules, plan, self._keep_untouched)
            bounds: list[tuple[int, int]] = []  # each sub-tree's slice of plan.actions
            while True:
                kind, payload = _get(ends.commands)
                if kind == _UNIT:
                    assert isinstance(payload, list)
                    if not _claimed(ends.tokens):
                        continue  # taken back: the parent plans it (see Helper.take_back)
                    start = len(plan.actions)
                    walk.run(payload)
                    bounds.append((start, len(plan.actions)))
                    os.write(ends.done, b".")
                elif kind == _PLANNED:
                    answer(
                        "planned",
                        PlanPart(
                            plan.replica_files,
                            plan.deletions,
                            plan.untouched,
                            plan.untouched_paths,
                            plan.problems,
                            # A TREE's actions are told as they are planned (Progress.grow).
                            sum(a.op is not Op.TREE for a in plan.actions),
                            sum(a.src.size for a in plan.actions if a.op is Op.COPY and a.src is not None),
                        ),
                    )
                    break
                else:
                    os._exit(0)
            kind, payload = _get(ends.commands)
            if kind == _APPLY:
                assert isinstance(payload, tuple)
                with_bar, first_handed, handed = payload
                slices = _handing_out(plan.actions, bounds, ends.commands, answer)
                slices = _then_handed(slices, first_handed, handed, ends.tokens)
                self._apply_part(slices, src, rep, _Reporter(ends.done) if with_bar else None, ends)
                answer(_RESULT, None)
        except KeyboardInterrupt:
            code = 130
        except EOFError:
            code = 0  # the parent stopped talking: it is gone, or gave up
        except BaseException as error:  # a bug: reported to the parent, which does the part itself
            code = 1
            with contextlib.suppress(BaseException):
                answer(_ERROR, f"{type(error).__name__}: {error}")
        finally:
            # Never back into the parent's frames (their finally blocks would
            # release its lock and write its log), and no exit handlers.
            os._exit(code)

    def _apply_part(
        self,
        slices: Iterator[tuple[int, list[Action]]],
        src: Source,
        rep: Replica,
        progress: _Reporter | None,
        ends: _Ends,
    ) -> None:
        """In the helper: apply its part a slice at a time, sending each slice's outcome when it is done."""
        out = _Outcomes(ends.answers, self._log, self._report)
        ctx = self._make_context(src, rep, out.report, out.write, progress)
        slicing = _Slicing(out, ctx, ends.ledger)
        ctx.slicing = slicing
        try:
            for index, actions in slices:
                # Noted before the slice begins: if this process is killed
                # before it sends the outcome, the parent knows what may be missing.
                slicing.index = index
                slicing.begin(len(actions))
                apply_plan(actions, ctx)
                slicing.settle()
        finally:
            if progress is not None:
                progress.close()
            # Stopped in the middle of a slice (an interruption, an error):
            # each change made has its line by now, the rest was not begun.
            out.send(last=True)


def _claimed(tokens: int) -> bool:
    """Whether the helper got the token of the sub-tree it has just read (see Helper.take_back)."""
    try:
        return os.read(tokens, 1) == b"."
    except BlockingIOError:
        return False


def _stop_once(signum: int, frame: FrameType | None) -> None:
    """Stop on the first Ctrl+C or SIGTERM, and ignore the ones that follow.

    A Ctrl+C reaches both processes, and the parent, stopping, then sends
    SIGTERM: a second interruption landing in the middle of the first one's
    clean-up would leave the temporary it was removing.
    """
    # A Python handler that does nothing, not SIG_IGN: one already pending
    # would then be reported as "ignored due to race condition" on stderr.
    signal.signal(signal.SIGINT, _stopping)
    signal.signal(signal.SIGTERM, _stopping)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _stopping(signum: int, frame: FrameType | None) -> None:
    """Already stopping: a further Ctrl+C or SIGTERM changes nothing."""


def _die_with_parent(parent: int) -> None:
    """Stop cleanly on a signal, and ask Linux for a SIGTERM when the parent
    dies (its lock goes with it)."""
    signal.signal(signal.SIGINT, _stop_once)
    signal.signal(signal.SIGTERM, _stop_once)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(ImportError, OSError, AttributeError):
            _parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(0)


def _parent_death_signal(signum: int) -> None:
    """Ask Linux for ``signum`` when the parent dies (``prctl(PR_SET_PDEATHSIG)``)."""
    # Compiled with the copy (synchro/endpoints/local/_copy.c): ctypes would take the
    # helper 3-4 ms to import before it could plan its first sub-tree.
    compiled = load("_copy")[0]
    if compiled is None:
        import ctypes  # only here: the main process never needs it

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signum, 0, 0, 0)
        return
    compiled.parent_death_signal(signum)


def _handing_out(
    actions: list[Action],
    bounds: list[tuple[int, int]],
    commands: int,
    answer: Callable[[str, object], None],
) -> Iterator[tuple[int, list[Action]]]:
    """The helper's sub-trees to apply, in the order given, a slice at a
    time: (the sub-tree's index, the slice).

    Between slices, a request to steal (see :meth:`Helper.steal`) is
    answered with the last sub-tree not started (its index and actions),
    which the helper then skips; once none is left, with None. Slices keep the answer quick: the
    parent waits for it with nothing else to do. A sub-tree with nothing
    to do is never handed back (the parent would only plan it again).
    """
    waiting = [index for index, (start, end) in enumerate(bounds) if end > start]

    def answer_requests() -> None:
        while select.select([commands], [], [], 0)[0]:
            kind, _ = _get(commands)
            if kind != _STEAL:
                raise KeyboardInterrupt  # told to stop
            if not waiting:
                answer("stolen", None)
                continue
            index = waiting.pop()
            start, end = bounds[index]
            answer("stolen", (index, actions[start:end]))

    while True:
        answer_requests()
        if not waiting:
            return
        index = waiting.pop(0)
        start, end = bounds[index]
        for first in range(start, end, SLICE):
            if first > start:
                answer_requests()
            yield index, actions[first : min(first + SLICE, end)]


def _then_handed(
    slices: Iterator[tuple[int, list[Action]]], first: int, handed: list[list[Action]], tokens: int
) -> Iterator[tuple[int, list[Action]]]:
    """The helper's own part, then the folders handed over as it takes them
    (see Helper.hand_over): the first still there, each as one slice.

    Taken from the first on, while the parent takes from the last on: as
    long as a token is left, the first not taken here is not taken there.
    """
    yield from slices
    for taken, unit in enumerate(handed):
        if not _claimed(tokens):
            return
        yield first + taken, unit


def _pickle() -> ModuleType:
    """pickle's C module, imported once a run starts a helper (not at every start of the command).

    ``pickle.dumps`` and ``loads`` are that module's functions; the pure
    Python module around them costs 2-3 ms more to import, and the helper
    waits for that import before it gets its first sub-tree.
    """
    try:
        import _pickle
    except ImportError:  # an interpreter without it
        import pickle

        return pickle
    return _pickle


def _put(fd: int, message: tuple[str, object]) -> None:
    data = _pickle().dumps(message, -1)  # -1: the highest protocol
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _get(fd: int) -> tuple[str, object]:
    pickle = _pickle()
    (size,) = _LENGTH.unpack(_exactly(fd, _LENGTH.size))
    try:
        kind, payload = pickle.loads(_exactly(fd, size))
    except pickle.UnpicklingError as error:
        raise EOFError(f"a message could not be read: {error}") from None
    return kind, payload


def _exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("the other process closed the pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _Inbox:
    """This process's end of the helper's answers, read without blocking.

    The helper's outcomes are handed to ``on_outcome`` as soon as they are
    read, whoever reads them; the other answers wait, in order, for
    :meth:`next`. One pipe keeps them in the order the helper sent them: by
    the time its result (or its error) is read, every outcome sent before
    it has been handled.
    """

    def __init__(self, fd: int, on_outcome: Callable[[object], None]) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._on_outcome = on_outcome
        self._data = bytearray()
        self._waiting: deque[tuple[str, object]] = deque()
        self.ended = False  # the helper's end is closed: nothing more will come
        self._broken = ""  # a message could not be read

    def poll(self) -> None:
        """Read what has come, and handle the outcomes among it."""
        while not self.ended:
            try:
                chunk = os.read(self._fd, _PIPE_SIZE)
            except BlockingIOError:
                break
            if not chunk:
                self.ended = True
                break
            self._data += chunk
        self._parse()

    def _parse(self) -> None:
        data, start = self._data, 0
        pickle = _pickle()
        while not self._broken and len(data) - start >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(data, start)
            end = start + _LENGTH.size + size
            if len(data) < end:
                break  # the rest of it has not come yet (or never will: the helper was killed)
            try:
                kind, payload = pickle.loads(bytes(data[start + _LENGTH.size : end]))
            except pickle.UnpicklingError as error:
                self._broken = f"a message could not be read: {error}"
                break
            start = end
            if kind == _OUTCOME:
                self._on_outcome(payload)
            else:
                self._waiting.append((kind, payload))
        del data[:start]

    def next(self, tick: Callable[[], None] | None) -> tuple[str, object]:
        """The next answer that is not an outcome; waits for it, calling
        ``tick`` every PROGRESS_EVERY seconds. Raises EOFError if none will come."""
        while not self._waiting:
            if self._broken:
                raise EOFError(self._broken)
            if self.ended:
                raise EOFError("the other process closed the pipe")
            if tick is None:
                select.select([self._fd], [], [])
            else:
                while not select.select([self._fd], [], [], PROGRESS_EVERY)[0]:
                    tick()
            self.poll()
        return self._waiting.popleft()

    def drain(self) -> None:
        """Handle every outcome until the helper's end is closed (it has ended)."""
        while not self.ended and not self._broken:
            select.select([self._fd], [], [])
            self.poll()

    def close(self) -> None:
        os.close(self._fd)


class _Reporter:
    """The helper's progress, told to the parent at most every PROGRESS_EVERY seconds.

    Reports carry totals, so one dropped (the pipe full while the parent is
    busy) costs nothing but a moment's accuracy.
    """

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._entries = self._bytes = 0
        self._more_entries = self._more_bytes = 0
        self._last = 0.0

    def advance(self, entries: int, nbytes: int) -> None:
        self._entries += entries
        self._bytes += nbytes
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY:
            self._last = now
            self._send()

    def grow(self, entries: int, nbytes: int) -> None:
        self._more_entries += entries
        self._more_bytes += nbytes

    def close(self) -> None:
        self._send()

    def _send(self) -> None:
        record = _PROGRESS.pack(self._entries, self._bytes, self._more_entries, self._more_bytes)
        with contextlib.suppress(BlockingIOError):
            os.write(self._fd, record)


class _Relay:
    """The run's progress in this process: its own, and the helper's as
    reported (on the bar, if there is one); it also takes in the helper's
    outcomes as they come, so that its lines are logged in time."""

    def __init__(self, bar: Progress | None, helper: Helper) -> None:
        self._bar = bar
        self._helper = helper
        self._seen = (0, 0, 0, 0)
        self._next = 0.0  # when to look for the helper's progress and outcomes again

    def grow(self, entries: int, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.grow(entries, nbytes)

    def advance(self, entries: int, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.advance(entries, nbytes)
        # By time, not by count: this process may be advancing a large
        # file's chunks or thousands of small files meanwhile.
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PROGRESS_EVERY
            self.catch_up()

    def catch_up(self) -> None:
        self._helper.poll()
        if self._bar is None:
            return
        latest = self._helper.reported()
        if latest is not None and latest != self._seen:
            seen = self._seen
            self._bar.grow(latest[2] - seen[2], latest[3] - seen[3])
            self._bar.advance(latest[0] - seen[0], latest[1] - seen[1])
            self._seen = latest

    def close(self) -> None:
        self.catch_up()
        if self._bar is not None:
            self._bar.close()


class _Slicing:
    """In the helper: the actions begun noted in the ledger, and each slice's
    outcome sent when it is done; a TREE's actions, planned while applying,
    go a slice at a time too (see :func:`synchro.pipeline.apply.apply_plan`)."""

    __slots__ = ("ctx", "index", "ledger", "out")

    def __init__(self, out: _Outcomes, ctx: ApplyContext, ledger: mmap.mmap) -> None:
        self.out, self.ctx, self.ledger = out, ctx, ledger
        self.index = -1  # the sub-tree being applied

    def begin(self, actions: int) -> None:
        self.out.begun += actions
        _LEDGER.pack_into(self.ledger, 0, self.out.begun, self.index)

    def settle(self) -> None:
        self.ctx.report = self.out.send()


class _Ends(NamedTuple):
    """The helper's ends of what it shares with this process."""

    commands: int  # read: units, "planned", "apply", steal requests
    answers: int  # written: the plan's summary, stolen sub-trees, outcomes, the result
    done: int  # written: a byte per planned sub-tree, then progress records
    tokens: int  # read: the tokens of the sub-trees (see Helper.take_back)
    ledger: mmap.mmap  # written: the actions begun, and where (see Helper.unsettled)


class _Outcomes:
    """In the helper: the lines and report of the slice being applied, sent
    to the parent when the slice is done.

    The lines are stamped here, when they happen. If the parent is gone (it
    was killed), the helper writes them to the log itself as it stops.
    """

    def __init__(self, fd: int, log: DailyLog, report: Report) -> None:
        self._fd = fd
        self._log = log
        self._stamp = log.stamp
        self._like = report
        self.lines: list[tuple[str, str]] = []
        self.report = self._fresh()
        self.begun = 0  # actions begun so far (see Helper.unsettled)
        self.settled = 0  # actions begun whose outcome was sent
        self._orphan: DailyLog | None = None
        self._torn = False

    def _fresh(self) -> Report:
        return Report(self._like.source, self._like.replica, dry_run=self._like.dry_run)

    def write(self, text: str) -> None:
        self.lines.append(self._stamp(text))

    def send(self, *, last: bool = False) -> Report:
        """Send what was done since the last sending, the actions begun since
        then now settled; returns the report for what comes next."""
        lines, part, settled = self.lines, self.report, self.begun - self.settled
        if self._torn or (last and not lines and not part.untouched_count and not settled):
            return part  # nothing to tell, or no way left to tell it
        self.lines, self.report, self.settled = [], self._fresh(), self.begun
        if self._orphan is None:
            try:
                _put(self._fd, (_OUTCOME, (lines, part, settled)))
            except BrokenPipeError:
                self._orphan = self._log.sibling()
            except BaseException:
                # Stopped halfway through the message (a signal): anything
                # sent after it would be read as its missing end.
                self._torn = True
                raise
            else:
                return self.report
        # The parent is gone (killed): the lines go to the log from here.
        self._orphan.relay(lines)
        self._orphan.flush()
        return self.report
