"""One run at a time per replica.

The lock is an ``flock`` held by :mod:`filelock` on a file named after the
replica's resolved path in a shared folder of the system's temporary
directory: nothing is created inside the replica (which must stay an exact
mirror) nor beside it (its parent may be a read-only mount point), and the
kernel releases the lock if the process dies, even by ``kill -9``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import ConfigError, ReplicaLocked
from .log import escape
from .scan import describe

LOCK_FOLDER = "synchro-locks"


def lock_path(replica: str) -> Path:
    digest = hashlib.sha256(os.fsencode(replica)).hexdigest()[:32]
    return temp_root() / LOCK_FOLDER / f"{digest}.lock"


def temp_root() -> Path:
    """$TMPDIR when it is a folder, else /tmp: what every run on the machine agrees on.

    (``tempfile.gettempdir`` would do, but it costs a noticeable share of a
    small run's start-up.)
    """
    candidate = os.environ.get("TMPDIR")
    if candidate and os.path.isdir(candidate):
        return Path(candidate)
    return Path("/tmp")


class ReplicaLock:
    """Context manager: raises :class:`ReplicaLocked` if another run holds it,
    :class:`ConfigError` if the lock cannot be taken at all."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.path = lock_path(replica)
        self._lock = FileLock(self.path, mode=0o666, timeout=0)

    def __enter__(self) -> ReplicaLock:
        try:
            try:
                self.path.parent.mkdir()
            except FileExistsError:
                pass
            else:
                # Shared by every user's runs, like /tmp itself (chmod only
                # what this run made: another user's folder is not ours).
                os.chmod(self.path.parent, 0o1777)
            self._lock.acquire(timeout=0)
        except Timeout:  # before OSError: filelock's Timeout is a TimeoutError
            raise ReplicaLocked(self.replica) from None
        except OSError as error:
            # Typically a lock file made by another user's run: filelock does
            # not trust a file in the sticky folder that its owner could swap
            # during the hold. A clear refusal, not a traceback.
            raise ConfigError(
                f"cannot lock replica {escape(self.replica)}: {describe(error)} ({escape(str(self.path))})"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
