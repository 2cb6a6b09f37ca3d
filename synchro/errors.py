"""Exceptions and the exit codes they map to.

Every error that can reach a user carries its context (which path, which
key) so that the command line can print it as one line with no traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``synchro`` command and the Invoke tasks (see README)."""

    OK = 0  # success, warnings included
    FAILED = 1  # some entries failed; the rest of the run went on
    USAGE = 2  # usage or configuration error; nothing was touched
    GUARD = 3  # refused by the mass-deletion guard; nothing was touched
    LOCKED = 4  # the replica is being written by another run
    INTERRUPTED = 130  # Ctrl+C (SIGINT)
    TERMINATED = 143  # SIGTERM


class SynchroError(Exception):
    """Base of every error raised on purpose by synchro."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(SynchroError, ValueError):
    """A pair or an option is invalid: a one-line message for the user."""

    exit_code = ExitCode.USAGE


class ReplicaLocked(SynchroError):
    """Another run holds the lock of this replica."""

    exit_code = ExitCode.LOCKED

    def __init__(self, replica: str) -> None:
        super().__init__(f"replica {replica} is locked by another synchro run; try again later")
        self.replica = replica


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interruption, so cleanup runs as for Ctrl+C."""


class CtrlBreak(KeyboardInterrupt):
    """Ctrl+Break on Windows (SIGBREAK): stops a run as Ctrl+C does, exit 130."""


def stop_code(stop: KeyboardInterrupt) -> ExitCode:
    """The exit code of a run stopped by ``stop``: 143 for SIGTERM, 130 for Ctrl+C."""
    return ExitCode.TERMINATED if isinstance(stop, Terminated) else ExitCode.INTERRUPTED


def stopped_by(stop: KeyboardInterrupt) -> str:
    """What stopped a run, as the log says it: ``SIGTERM``, ``Ctrl+C`` or ``Ctrl+Break``."""
    if isinstance(stop, Terminated):
        return "SIGTERM"
    return "Ctrl+Break" if isinstance(stop, CtrlBreak) else "Ctrl+C"
