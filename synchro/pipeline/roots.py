"""Check a source/replica pair before anything is touched.

Every refusal here is a :class:`~synchro.errors.ConfigError` (exit code 2)
with a one-line message. Paths are resolved once (symlinks followed, ``..``
removed) and the resolved paths are used for the whole run, so a root that
is a symlink means "the folder it points to at the start of the run".
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..errors import ConfigError
from .log import escape


class Roots(NamedTuple):
    source: str
    replica: str
    replica_exists: bool
    # The log folder's path relative to the source when the log lives inside
    # the source: it is left out of the mirror (it changes during the run).
    logs_in_source: str | None = None
    # The resolved versions folder, when old versions are kept.
    versions: str | None = None


def _show(path: str | os.PathLike[str]) -> str:
    return escape(os.fspath(path))


def _inside(child: str, parent: str) -> bool:
    return child != parent and os.path.commonpath([child, parent]) == parent


def resolve(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def check_roots(
    source: str | os.PathLike[str],
    replica: str | os.PathLike[str],
    logs: str | os.PathLike[str] | None,
    *,
    create_replica: bool = False,
    versions: str | os.PathLike[str] | None = None,
) -> Roots:
    """Resolve and check a pair; raise ConfigError on anything unsafe."""
    if not os.fspath(source) or not os.fspath(replica):
        raise ConfigError("source and replica must both be given")
    src = resolve(source)
    rep = resolve(replica)
    if not os.path.exists(src):
        raise ConfigError(f"source folder does not exist: {_show(source)}")
    if not os.path.isdir(src):
        raise ConfigError(f"source is not a folder: {_show(source)}")
    replica_exists = os.path.lexists(rep)
    if replica_exists and not os.path.isdir(rep):
        raise ConfigError(f"replica is not a folder: {_show(replica)}")
    if src == rep or (replica_exists and os.path.samefile(src, rep)):
        raise ConfigError(f"source and replica are the same folder: {_show(src)}")
    if _inside(rep, src):
        raise ConfigError(f"replica {_show(replica)} is inside the source {_show(source)}")
    if _inside(src, rep):
        raise ConfigError(f"source {_show(source)} is inside the replica {_show(replica)}")
    logs_in_source = None
    if logs is not None:
        log_folder = resolve(logs)
        if rep == log_folder or _inside(rep, log_folder):
            raise ConfigError(f"replica {_show(replica)} is inside the log folder {_show(log_folder)}")
        if _inside(log_folder, rep):
            raise ConfigError(
                f"the log folder {_show(log_folder)} is inside the replica {_show(replica)}: "
                "the mirror would delete it"
            )
        if log_folder == src:
            raise ConfigError(f"the log folder is the source folder: {_show(src)}")
        if _inside(log_folder, src):
            logs_in_source = os.path.relpath(log_folder, src)  # '/'-separated: POSIX only
    kept = check_versions(versions, src, rep) if versions is not None else None
    if not replica_exists and not create_replica:
        raise ConfigError(
            f"replica folder does not exist: {_show(replica)} "
            "(is the backup drive mounted? create_replica / --create-replica creates it)"
        )
    return Roots(src, rep, replica_exists, logs_in_source, kept)


def check_versions(versions: str | os.PathLike[str], source: str, replica: str) -> str:
    """Resolve the versions folder of a pair (resolved ``source`` and ``replica``); refuse overlaps.

    Inside the replica, the mirror would delete the kept versions (or copy
    them into themselves); inside the source, they would be backed up as
    data; a versions folder holding either would see its pruning delete them.
    """
    if not os.fspath(versions):
        raise ConfigError("versions: the folder path is empty")
    kept = resolve(versions)
    shown = _show(versions)
    for role, root in (("replica", replica), ("source", source)):
        if kept == root:
            raise ConfigError(f"versions folder {shown} is the {role} folder; give a folder outside both")
        if _inside(kept, root):
            raise ConfigError(
                f"versions folder {shown} is inside the {role} {_show(root)}; give a folder outside both"
            )
        if _inside(root, kept):
            raise ConfigError(
                f"versions folder {shown} contains the {role} {_show(root)}; give a folder outside both"
            )
    if os.path.lexists(kept) and not os.path.isdir(kept):
        raise ConfigError(f"versions folder {shown} is not a folder")
    if not os.path.lexists(kept) and not os.path.isdir(os.path.dirname(kept)):
        # The first run creates the versions folder, but not its parents:
        # a drive that is not mounted must not be filled on the root disk.
        raise ConfigError(
            f"versions folder {shown} does not exist, nor its parent folder (is the drive mounted?)"
        )
    return kept
