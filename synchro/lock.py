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
import tempfile
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import ReplicaLocked

LOCK_FOLDER = "synchro-locks"


def lock_path(replica: str) -> Path:
    digest = hashlib.sha256(os.fsencode(replica)).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / LOCK_FOLDER / f"{digest}.lock"


class ReplicaLock:
    """Context manager: raises :class:`ReplicaLocked` if another run holds it."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        path = lock_path(replica)
        if not path.parent.is_dir():
            path.parent.mkdir(exist_ok=True)
            # Shared by every user's runs, like /tmp itself.
            os.chmod(path.parent, 0o1777)
        self._lock = FileLock(path, mode=0o666, timeout=0)

    def __enter__(self) -> ReplicaLock:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise ReplicaLocked(self.replica) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
