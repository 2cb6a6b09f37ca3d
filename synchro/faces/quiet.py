"""The quiet console (``-q``): only the lines that need a person, on standard error.

Cron mails a job's output only when there is some, so a quiet run must
print nothing when all is well and must never hide a problem (rsync,
rclone, restic and borg behave the same way). :class:`AttentionConsole`
sits where the console stream would be and lets through:

- the lines that need a person: ``FAILED``, ``ERROR``, ``REFUSED``,
  ``LOCKED``, ``WARNING``, ``INTERRUPTED`` (and a verification's
  differences: ``MISSING``, ``EXTRA``, ``CONTENT``, ``METADATA``);
- the ``SUMMARY`` of a run whose exit code is not 0;
- before the first of those in a run, the run's ``START`` (or ``VERIFY``)
  line, so that a mail about several pairs says which pair each line is about.

A clean run prints nothing at all; the log file still gets every line.
"""

from __future__ import annotations

import re
from typing import TextIO

ATTENTION = (
    "FAILED ",
    "ERROR ",
    "REFUSED ",
    "LOCKED ",
    "WARNING ",
    "INTERRUPTED ",
    "MISSING ",
    "EXTRA ",
    "CONTENT ",
    "METADATA ",
)
CONTEXT = ("START ", "VERIFY ")
_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
_STAMP_WIDTH = len("YYYY-MM-DD HH:MM:SS ")
_EXIT = re.compile(r" exit=(\d+)")
# The first letters of every message this console looks at: a line whose
# message starts with none of them (ADDED, OVERWRITTEN, DELETED...: nearly
# every line of a run) is passed over without a closer look.
_FIRST = frozenset(word[0] for word in (*ATTENTION, *CONTEXT, "SUMMARY "))


def message_of(line: str) -> str:
    """A console line without its time stamp (verification lines have none)."""
    return line[_STAMP_WIDTH:] if _STAMP.match(line) else line


def needs_a_person(message: str) -> bool:
    """Whether a quiet console shows this log message (without its time stamp)."""
    if message.startswith(ATTENTION):
        return True
    if message.startswith("SUMMARY "):
        found = _EXIT.search(message)
        return found is None or found[1] != "0"
    return False


class AttentionConsole:
    """A console stream that passes on only what :func:`needs_a_person` keeps.

    Only ``write`` and ``flush`` are used by the log (see
    :class:`synchro.log.DailyLog`), so this is all of a stream it needs.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._partial = ""  # a line not finished yet
        self._context: str | None = None  # the START line of the run, until shown

    def write(self, text: str) -> int:
        if (
            not self._partial
            and text[_STAMP_WIDTH : _STAMP_WIDTH + 1] not in _FIRST
            and text[:1] not in _FIRST
            and text.find("\n") == len(text) - 1
        ):
            # One whole line, as the log writes each, whose message (with or
            # without a time stamp) starts with no letter looked for: nothing
            # to show. A run writes thousands of these.
            return len(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        shown = []
        for line in lines:
            if line[_STAMP_WIDTH : _STAMP_WIDTH + 1] not in _FIRST and line[:1] not in _FIRST:
                continue  # the same look, for each line of a batch (the helper's)
            message = message_of(line)
            if message.startswith(CONTEXT):
                self._context = line
                continue
            if not needs_a_person(message):
                continue
            if self._context is not None:
                shown.append(self._context)
                self._context = None
            shown.append(line)
            if message.startswith("SUMMARY "):
                self._context = None
        if shown:
            self.stream.write("\n".join(shown) + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
