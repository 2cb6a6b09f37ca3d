"""Which endpoint holds a tree: the one place that names them.

The pipeline asks here for the source and the replica of a pair and works
with what it gets through :mod:`synchro.endpoints.base`. Local folders
are reached through folder descriptors where the system has them (Linux,
macOS: :mod:`synchro.endpoints.local`), through paths elsewhere (Windows:
:mod:`synchro.endpoints.portable`); ``SYNCHRO_ENDPOINT=portable`` (or
``local``) chooses one on any system. A replica URL chooses its endpoint
here, by its scheme, as fsspec resolves a protocol (``sftp://``:
:mod:`synchro.endpoints.sftp`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from ..errors import ConfigError
from ..options import MirrorOptions
from .base import Folders, Replica, Source
from .capabilities import WINDOWS_NATIVE, Capabilities
from .local.filecopy import Opener, default_opener

__all__ = [
    "ENDPOINT_VARIABLE",
    "Opener",
    "default_opener",
    "local_endpoint",
    "open_folders",
    "open_source",
    "remote_replica_at",
    "replica_at",
    "replica_folders",
    "source_limits",
]

ENDPOINT_VARIABLE = "SYNCHRO_ENDPOINT"
_CHOICES = ("local", "portable")


def local_endpoint() -> str:
    """``local`` (folder descriptors) or ``portable`` (paths): the variable's choice, else what the system allows.

    Raises ConfigError for another value, or ``local`` where folder
    descriptors are missing.
    """
    chosen = os.environ.get(ENDPOINT_VARIABLE, "")
    has_descriptors = hasattr(os, "O_DIRECTORY") and os.open in os.supports_dir_fd
    if not chosen:
        return "local" if has_descriptors else "portable"
    if chosen not in _CHOICES:
        raise ConfigError(f"{ENDPOINT_VARIABLE}={chosen!r}: expected one of {', '.join(_CHOICES)}")
    if chosen == "local" and not has_descriptors:
        raise ConfigError(f"{ENDPOINT_VARIABLE}=local: this system has no folder descriptors")
    return chosen


def open_folders(path: str) -> Folders:
    """The local folder at ``path`` (resolved) as the features read and write it
    (versions, restore, verify): through descriptors or paths, as the mirror. Raises OSError."""
    if local_endpoint() == "portable":
        from .portable.folders import PathFolders

        if not stat.S_ISDIR(os.stat(path).st_mode):  # FileNotFoundError if absent, as open() says
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", path)
        return PathFolders(path)
    from .local.folders import DescriptorFolders

    return DescriptorFolders.open(path)


def replica_folders(replica: Replica) -> Folders | None:
    """The open local ``replica``'s folders, as its run holds them (not to be closed); None
    for a replica elsewhere."""
    from .local.replica import LocalReplica
    from .portable.replica import PortableReplica

    if isinstance(replica, LocalReplica):
        from .local.folders import DescriptorFolders

        return DescriptorFolders(replica.stack, owned=False)
    if isinstance(replica, PortableReplica):
        from .portable.folders import PathFolders

        return PathFolders(replica.folder)
    return None


def source_limits() -> Capabilities | None:
    """What no source on this system can have either (Windows: case-only names,
    ``CON``...), so that the run's WARNING names only real losses; None: nothing."""
    return WINDOWS_NATIVE if os.name == "nt" else None


def open_source(path: str, *, opener: Opener = default_opener) -> Source:
    """The source folder at ``path`` (resolved), open: always on this machine. Raises OSError.

    ``opener`` (a test hook) is the descriptor-based endpoint's.
    """
    if local_endpoint() == "portable":
        from .portable.tree import PortableTree

        return PortableTree(path)
    from .local.tree import LocalTree

    return LocalTree.open_at(path, opener=opener)


def replica_at(
    path: str, options: MirrorOptions | None = None, say: Callable[[str], None] | None = None
) -> Replica:
    """The replica at ``path`` (a resolved local folder, or a URL), not opened yet: lock it first.

    ``say`` writes a line to the run's log (what a remote endpoint does on
    its own: a dead run's lock taken over, its unfinished uploads aborted).
    """
    if path.startswith("sftp://"):
        return remote_replica_at(path, options or MirrorOptions(), say or (lambda line: None))
    if path.lower().startswith("s3://"):
        from .s3.replica import S3Replica  # only an s3:// pair loads boto3

        options = options or MirrorOptions()
        return S3Replica(path, profile=options.s3_profile, dry_run=options.dry_run, say=say)
    if local_endpoint() == "portable":
        from .portable.replica import PortableReplica

        return PortableReplica(path)
    from .local.replica import LocalReplica

    return LocalReplica(path)


def remote_replica_at(url: str, options: MirrorOptions, say: Callable[[str], None]) -> Replica:
    """The replica at ``url`` (``sftp://``), not reached yet: locking it connects.

    ``say`` writes a line to the run's log (what a remote endpoint does on
    its own: a replica folder created, a dead run's lock taken over).
    """
    from .sftp.replica import SftpReplica  # only a remote pair loads asyncssh

    return SftpReplica(
        url, timeout=options.timeout, create=options.create_replica, dry_run=options.dry_run, say=say
    )
