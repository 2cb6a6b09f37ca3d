"""Check a source/replica pair before anything is touched.

Every refusal here is a :class:`~synchro.errors.ConfigError` (exit code 2)
with a one-line message. Paths are resolved once (symlinks followed, ``..``
removed) and the resolved paths are used for the whole run, so a root that
is a symlink means "the folder it points to at the start of the run".

Whether one folder is, or lies under, another is decided by identity
(``st_dev``, ``st_ino``), not by comparing path strings: a bind mount (or
any other second path to one folder) shows the same folder under another
name, and a mirror from ``/data/docs`` into ``/alias``, an alias of
``/data``, would otherwise delete the originals it reads.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..errors import ConfigError
from .log import escape

FolderId = tuple[int, int]  # (st_dev, st_ino)


class Roots(NamedTuple):
    source: str
    replica: str
    replica_exists: bool
    # The log folder's path relative to the source when the log lives inside
    # the source: it is left out of the mirror (it changes during the run).
    logs_in_source: str | None = None
    # The resolved versions folder, when old versions are kept.
    versions: str | None = None


class Place(NamedTuple):
    """A resolved path, and the identities of the folders on its way up to ``/``.

    ``chain`` starts at the folder itself when it exists (``exists``), else
    at its nearest existing parent, and goes up one parent at a time, deepest
    first: ``(path, identity)``. The parents of a resolved path are the
    prefixes of its text (no symlink is left in it), and each is looked up
    by ``stat``: the walk only goes up, never into a folder.
    """

    path: str
    exists: bool
    chain: tuple[tuple[str, FolderId], ...]


def place(path: str) -> Place:
    """The :class:`Place` of the resolved ``path``."""
    if is_remote(path):
        return Place(_remote_name(path), False, ())  # on another machine: known by its URL only
    chain: list[tuple[str, FolderId]] = []
    current = path
    while True:
        try:
            found = os.stat(current)
        except OSError:
            # Missing (or not reachable): only the folder itself or parents
            # that do not exist yet; a parent that cannot be looked up at all
            # is skipped, its own parents still count.
            pass
        else:
            chain.append((current, (found.st_dev, found.st_ino)))
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    exists = bool(chain) and chain[0][0] == path
    return Place(path, exists, tuple(chain))


def _remote_name(url: str) -> str:
    """The URL of a replica on another machine, spelled as the connection reaches it.

    An ``sftp://`` URL gets what ``~/.ssh/config`` makes of its host (the
    ``HostName``, ``Port`` and ``User`` of a ``Host`` alias, the default
    user and port), read without connecting: an alias and the URL it stands
    for are one replica. A malformed URL stays as it is (its run says why).
    """
    if not url.lower().startswith("sftp://"):
        return url
    from ..endpoints.sftp.connect import parse_sftp_url, resolve_location  # only a remote pair loads asyncssh

    try:
        return str(resolve_location(parse_sftp_url(url)))
    except ConfigError:
        return url


def where_in(inner: Place, outer: Place) -> str | None:
    """Where ``inner`` lies in ``outer``: its path relative to ``outer`` (``""``
    when both are one folder), or None when it is not there.

    A folder that does not exist yet lies where its nearest existing parent
    does (a missing replica under the source would be created there). Two
    missing folders are compared by their paths only.
    """
    if inner.path == outer.path:
        return ""
    if is_remote(inner.path) or is_remote(outer.path):
        # A replica on another machine is compared by its URL: under another
        # URL of the same server, or nowhere on this machine.
        prefix = outer.path.rstrip("/") + "/"
        return inner.path[len(prefix) :] if inner.path.startswith(prefix) else None
    if os.path.commonpath([inner.path, outer.path]) == outer.path:
        return os.path.relpath(inner.path, outer.path)
    if not outer.exists:
        return None
    target = outer.chain[0][1]
    for prefix, identity in inner.chain:
        if identity == target:
            # The first match going up: the walk never passes a folder that
            # is the other one.
            rel = os.path.relpath(inner.path, prefix)
            return "" if rel == "." else rel
    return None


def is_within(inner: Place, outer: Place) -> bool:
    """Whether ``inner`` lies strictly under ``outer``."""
    return bool(where_in(inner, outer))


def overlap(first: Place, second: Place) -> bool:
    """Whether the two are one folder, or one lies under the other."""
    return where_in(first, second) is not None or where_in(second, first) is not None


def _show(path: str | os.PathLike[str]) -> str:
    return escape(os.fspath(path))


# A replica given as a URL of these schemes is not on this machine's file
# system: it is never resolved as a local path (nor created as a local
# folder named after the URL); its endpoint checks it when the run starts.
REMOTE_SCHEMES = ("sftp://", "s3://")


def is_remote(path: str | os.PathLike[str]) -> bool:
    text = os.fspath(path)
    return isinstance(text, str) and text.lower().startswith(REMOTE_SCHEMES)


def resolve(path: str | os.PathLike[str]) -> str:
    if is_remote(path):
        return os.fspath(path)
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
    src_path = resolve(source)
    rep_path = resolve(replica)
    if not os.path.exists(src_path):
        raise ConfigError(f"source folder does not exist: {_show(source)}")
    if not os.path.isdir(src_path):
        raise ConfigError(f"source is not a folder: {_show(source)}")
    if is_remote(rep_path):
        return _check_remote(src_path, rep_path, logs, versions)
    replica_exists = os.path.lexists(rep_path)
    if replica_exists and not os.path.isdir(rep_path):
        raise ConfigError(f"replica is not a folder: {_show(replica)}")
    src, rep = place(src_path), place(rep_path)
    rep_in_src = where_in(rep, src)
    if rep_in_src == "":
        raise ConfigError(f"source and replica are the same folder: {_show(src_path)}")
    if rep_in_src is not None:
        raise ConfigError(f"replica {_show(replica)} is inside the source {_show(source)}")
    if is_within(src, rep):
        raise ConfigError(f"source {_show(source)} is inside the replica {_show(replica)}")
    logs_in_source = None
    if logs is not None:
        log_folder = place(resolve(logs))
        shown = _show(log_folder.path)
        if where_in(rep, log_folder) is not None:
            raise ConfigError(f"replica {_show(replica)} is inside the log folder {shown}")
        if is_within(log_folder, rep):
            raise ConfigError(
                f"the log folder {shown} is inside the replica {_show(replica)}: the mirror would delete it"
            )
        logs_in_source = where_in(log_folder, src)
        if logs_in_source == "":
            raise ConfigError(f"the log folder is the source folder: {_show(src_path)}")
        # A relative path below the source as the walk sees it ('/'-separated:
        # POSIX only), also when the log folder is named through another path.
    kept = check_versions(versions, src, rep) if versions is not None else None
    if not replica_exists:
        hint = "is the backup drive mounted?"
        if not create_replica:
            raise ConfigError(
                f"replica folder does not exist: {_show(replica)} "
                f"({hint} create_replica / --create-replica creates it)"
            )
        if not os.path.isdir(os.path.dirname(rep_path)):
            # Only the last folder is created, as rsync does without
            # --mkpath: the mount point of an unplugged drive, removed by
            # the system, must not be made again and filled on the root disk.
            raise ConfigError(
                f"replica folder does not exist, nor its parent folder: {_show(replica)} "
                f"({hint} create_replica / --create-replica creates only the last folder)"
            )
    return Roots(src_path, rep_path, replica_exists, logs_in_source, kept)


def check_versions(versions: str | os.PathLike[str], source: Place, replica: Place) -> str:
    """Resolve the versions folder of a pair (the :class:`Place` of its ``source``
    and ``replica``); refuse overlaps.

    Inside the replica, the mirror would delete the kept versions (or copy
    them into themselves); inside the source, they would be backed up as
    data; a versions folder holding either would see its pruning delete them.
    """
    if not os.fspath(versions):
        raise ConfigError("versions: the folder path is empty")
    kept = place(resolve(versions))
    shown = _show(versions)
    for role, root in (("replica", replica), ("source", source)):
        inside = where_in(kept, root)
        if inside == "":
            raise ConfigError(f"versions folder {shown} is the {role} folder; give a folder outside both")
        if inside is not None:
            raise ConfigError(
                f"versions folder {shown} is inside the {role} {_show(root.path)}; give a folder outside both"
            )
        if is_within(root, kept):
            raise ConfigError(
                f"versions folder {shown} contains the {role} {_show(root.path)}; give a folder outside both"
            )
    if os.path.lexists(kept.path) and not os.path.isdir(kept.path):
        raise ConfigError(f"versions folder {shown} is not a folder")
    if not os.path.lexists(kept.path) and not os.path.isdir(os.path.dirname(kept.path)):
        # The first run creates the versions folder, but not its parents:
        # a drive that is not mounted must not be filled on the root disk.
        raise ConfigError(
            f"versions folder {shown} does not exist, nor its parent folder (is the drive mounted?)"
        )
    return kept.path


def _check_remote(
    src_path: str, url: str, logs: str | os.PathLike[str] | None, versions: str | os.PathLike[str] | None
) -> Roots:
    """The checks of a pair whose replica is a URL: by its scheme."""
    if url.startswith("s3://"):
        return _check_s3(src_path, url, logs, versions)
    return _check_sftp(src_path, url, logs, versions)


def _check_s3(
    src_path: str, url: str, logs: str | os.PathLike[str] | None, versions: str | os.PathLike[str] | None
) -> Roots:
    """The checks of a pair whose replica is a URL; the server is asked when the run starts.

    An s3:// prefix always exists (a new one is empty): nothing is created.
    """
    from ..endpoints.s3.connect import parse_s3_url  # only an s3:// pair needs it

    location = parse_s3_url(url)  # ConfigError: malformed
    kept = _s3_versions(url, versions) if versions is not None else None
    logs_in_source = None
    if logs is not None:
        logs_in_source = where_in(place(resolve(logs)), place(src_path))
        if logs_in_source == "":
            raise ConfigError(f"the log folder is the source folder: {_show(src_path)}")
    return Roots(src_path, str(location), True, logs_in_source, kept)


def _s3_versions(url: str, versions: str | os.PathLike[str]) -> str:
    """The versions prefix of an s3:// replica: an s3:// URL beside the replica's prefix."""
    from ..endpoints.s3.connect import parse_s3_url

    location = parse_s3_url(url)
    if not os.fspath(versions).startswith("s3://"):
        raise ConfigError(
            f"versions: the old versions of an s3:// replica are kept in the store: "
            f"give an s3:// URL (such as s3://{location.bucket}/{location.prefix}-versions)"
        )
    kept_at = parse_s3_url(os.fspath(versions))
    inside = (kept_at.prefix + "/").startswith(location.prefix + "/") or (location.prefix + "/").startswith(
        kept_at.prefix + "/"
    )
    if kept_at.bucket == location.bucket and inside:
        raise ConfigError(
            f"versions {_show(versions)} overlaps the replica {_show(url)}; give a prefix beside it "
            f"(such as s3://{location.bucket}/{location.prefix}-versions)"
        )
    return str(kept_at)


def check_remote_versions(url: str, versions: str | os.PathLike[str]) -> str:
    """The versions folder of a replica on another machine, checked as a run checks it
    (ConfigError): an s3:// URL beside an s3:// replica, a path on an sftp:// replica's server."""
    if url.startswith("s3://"):
        return _s3_versions(url, versions)
    from ..endpoints.sftp.connect import parse_sftp_url

    return _remote_versions(parse_sftp_url(url).path, url, os.fspath(versions))


def _check_sftp(
    src: str, url: str, logs: str | os.PathLike[str] | None, versions: str | os.PathLike[str] | None
) -> Roots:
    """The checks of a pair whose replica is on another machine; the server is asked later.

    Whether the replica folder exists is known once the server is reached
    (:meth:`~synchro.endpoints.sftp.replica.SftpReplica.reach`): it is taken
    to exist here, so that nothing is created on this machine.
    """
    from ..endpoints.sftp.connect import parse_sftp_url  # only a remote pair loads asyncssh

    location = parse_sftp_url(url)  # ConfigError: malformed
    kept = None
    if versions is not None:
        kept = _remote_versions(location.path, url, os.fspath(versions))
    logs_in_source = None
    if logs is not None:
        logs_in_source = where_in(place(resolve(logs)), place(src))
        if logs_in_source == "":
            raise ConfigError(f"the log folder is the source folder: {_show(src)}")
    return Roots(src, url, True, logs_in_source, kept)


def _under(child: str, parent: str) -> bool:
    """Whether server path ``child`` lies strictly under ``parent`` (both absolute, normalized)."""
    return child != parent and child.startswith(parent.rstrip("/") + "/")


def _remote_versions(replica: str, url: str, versions: str) -> str:
    """The versions folder of a replica on a server: a path on the same server.

    Given as an absolute path (taken on the server) or as an ``sftp://`` URL
    of the same server; old versions are moved there, never across machines.
    """
    from ..endpoints.sftp.connect import parse_sftp_url, resolve_location

    if os.fspath(versions).startswith("sftp://"):
        theirs, ours = parse_sftp_url(versions), parse_sftp_url(url)
        there, here = resolve_location(theirs), resolve_location(ours)  # a Host alias or its URL: one server
        if (there.host, there.user, there.port) != (here.host, here.user, here.port):
            raise ConfigError(
                f"versions {_show(versions)} is not on the replica's server ({_show(url)}); "
                "old versions are kept on the same server"
            )
        kept = theirs.path
    elif os.path.isabs(versions):
        kept = os.path.normpath(versions)
    else:
        raise ConfigError(
            f"versions {_show(versions)}: for a replica on a server, give an absolute path on that server"
        )
    if kept == replica or _under(kept, replica) or _under(replica, kept):
        relation = "is" if kept == replica else ("is inside" if _under(kept, replica) else "contains")
        raise ConfigError(
            f"versions folder {_show(kept)} {relation} the replica {_show(url)}; give a folder outside it"
        )
    return kept
