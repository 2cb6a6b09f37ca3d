"""A few worker threads for large-file copies, safe to stop at any moment.

``concurrent.futures`` would do the work, but it registers a thread only
after starting it: a Ctrl+C or SIGTERM that lands in between leaves a thread
that ``shutdown(wait=True)`` does not wait for, which may then install a
file after the run has logged its end and released its lock. Here every
thread is recorded before it starts, and :meth:`CopyPool.close` waits for
each one that did start.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Job(Generic[T]):
    """One unit of work and its outcome (``result`` or ``error``) once ``done`` is set."""

    item: T
    done: threading.Event = field(default_factory=threading.Event)
    result: int = 0
    error: BaseException | None = None
    reported: bool = False  # the caller logged its outcome


class CopyPool(Generic[T]):
    def __init__(self, work: Callable[[T], int], threads: int, *, discard: Callable[[T], None]) -> None:
        self._work = work
        self._discard = discard  # for jobs never run: release what they hold
        self._size = threads
        self._queue: queue.SimpleQueue[Job[T] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def submit(self, job: Job[T]) -> None:
        self._queue.put(job)
        if len(self._threads) < self._size:
            thread = threading.Thread(target=self._run, name="synchro-copy", daemon=True)
            self._threads.append(thread)  # before start(): see the module's docstring
            thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._stopping:
                self._discard(job.item)
                job.error = InterruptedError("not started: the run was stopped")
            else:
                try:
                    job.result = self._work(job.item)
                except BaseException as error:  # handed to the main thread, which reports it
                    job.error = error
            job.done.set()

    def close(self) -> None:
        """Drop the jobs not started, wait for the running ones to end."""
        self._stopping = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            if thread.ident is not None:  # started (an interrupted start() may not have)
                thread.join()
        # Jobs no thread will take any more still hold descriptors.
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._discard(job.item)
                job.error = InterruptedError("not started: the run was stopped")
                job.done.set()
