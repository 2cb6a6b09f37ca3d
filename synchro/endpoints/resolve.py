"""Which endpoint holds a tree: the one place that names them.

The pipeline asks here for the source and the replica of a pair and works
with what it gets through :mod:`synchro.endpoints.base`. Today both are
local folders; a replica URL (``sftp://``, ``s3://``) will choose its
endpoint here, by its scheme, as fsspec resolves a protocol.
"""

from __future__ import annotations

from .base import Replica, Source
from .local.filecopy import Opener, default_opener
from .local.replica import LocalReplica
from .local.tree import LocalTree

__all__ = ["Opener", "default_opener", "open_source", "replica_at"]


def open_source(path: str, *, opener: Opener = default_opener) -> Source:
    """The source folder at ``path`` (resolved), open: always on this machine. Raises OSError."""
    return LocalTree.open_at(path, opener=opener)


def replica_at(path: str) -> Replica:
    """The replica at ``path`` (a resolved local folder), not opened yet: lock it first."""
    return LocalReplica(path)
