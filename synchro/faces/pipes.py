"""A reader that stops reading (``synchro ... | head``) ends the output, quietly.

Python ignores SIGPIPE, so a write into a pipe whose reader has gone raises
:class:`BrokenPipeError`, and if nothing catches it, Python reports it again
when it flushes the streams at exit ("Exception ignored ... BrokenPipeError").
The faces (the command, the tasks) treat a closed pipe as a normal end of
the output:

- the run itself goes on and ends as usual: its console stops
  (:class:`synchro.pipeline.log.DailyLog` drops it without a word), the log
  file still gets every line;
- at the end the face flushes the standard streams and points one whose
  reader has gone at ``/dev/null``, so that the exit is silent;
- the exit code is the run's own: a backup that completed is not a failure
  because the reader of its output went away (no 141 as from ``SIGPIPE``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO


def silence(stream: TextIO | None) -> None:
    """Point ``stream``'s descriptor at ``/dev/null``: what it still buffers goes nowhere."""
    if stream is None:
        return
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):  # not a file (a test's StringIO), or closed
        return
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def settle() -> None:
    """Flush standard output and error; silence the one whose reader has gone."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except BrokenPipeError:
            silence(stream)
            with contextlib.suppress(OSError, ValueError):
                stream.flush()  # the buffered rest, into /dev/null
        except (OSError, ValueError):
            pass  # another failure (a full disk, a closed stream): nothing more to do at exit


@contextlib.contextmanager
def closed_pipe_ends_output() -> Iterator[None]:
    """Around what prints on standard output: a closed pipe stops the printing, not the program."""
    try:
        yield
    except BrokenPipeError:
        silence(sys.stdout)
