"""How a tree is laid out in a bucket: rclone's layout, readable without synchro.

- A file is one object at ``prefix/relative/path`` holding exactly its bytes.
- Its modification time is the user metadata ``mtime``: seconds since the
  epoch as a decimal string to the nanosecond, as rclone writes it
  (``1577934245.123456789``; trailing zeros dropped, ``1577934245.1``,
  and whole seconds without a fraction). It is made
  from the integer nanoseconds, never through a float: rclone compares
  times to the nanosecond, and a float keeps about a tenth of a microsecond.
- Its mode is the user metadata ``mode``: the whole ``st_mode`` in octal,
  without a leading zero (``100644``), as ``rclone --metadata`` writes it;
  ``uid`` and ``gid`` likewise, in decimal.
- A symbolic link is an object named after it with the suffix
  ``.rclonelink``, holding the link's text: what ``rclone --links`` (``-l``)
  writes and reads, so a restore by synchro or by rclone brings it back as a
  link. It is never followed.
- An empty folder is a zero-byte marker object ``prefix/folder/``; a folder
  with content needs none (an object store has no folders, only prefixes).

>>> format_mtime(1577934245_123456789)
'1577934245.123456789'
>>> parse_mtime("1577934245.1")
1577934245100000000
>>> format_mtime(1577934245_100000000), format_mtime(1577934245_000000000)
('1577934245.1', '1577934245')
"""

from __future__ import annotations

import mimetypes
import stat

from ..base import Kind, Meta

LINK_SUFFIX = ".rclonelink"
NS = 10**9
DEFAULT_TYPE = "application/octet-stream"
# The type of a compressed file by its last extension, as rclone names it
# (the standard library gives the type of what is inside, and the encoding).
_COMPRESSED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}


def format_mtime(ns: int) -> str:
    """rclone's ``mtime`` metadata for a time in integer nanoseconds (its trailing zeros dropped, as rclone's)."""
    if ns < 0:
        # Before 1970: the sign belongs to the whole number (-0.5 s is "-0.5").
        return "-" + format_mtime(-ns)
    seconds, fraction = divmod(ns, NS)
    decimals = f"{fraction:09d}".rstrip("0")
    return f"{seconds}.{decimals}" if decimals else str(seconds)


def parse_mtime(text: str) -> int | None:
    """The integer nanoseconds of an ``mtime`` value; None if it is not one."""
    text = text.strip()
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("+-").partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        return None
    ns = int(whole) * NS + int(fraction[:9].ljust(9, "0") or 0)
    return -ns if negative else ns


def format_mode(st_mode: int) -> str:
    return f"{st_mode:o}"


def parse_mode(text: str | None, default: int) -> int:
    """The whole ``st_mode`` of a ``mode`` value (octal); ``default`` if absent or malformed."""
    if not text:
        return default
    try:
        return int(text, 8)
    except ValueError:
        return default


def parse_id(text: str | None, default: int) -> int:
    if text is None or not text.isdigit():
        return default
    return int(text)


def file_metadata(meta: Meta) -> dict[str, str]:
    """The user metadata of an object holding a file or a link described by ``meta``."""
    kind = stat.S_IFLNK if meta.kind is Kind.LINK else stat.S_IFREG
    return {
        "mtime": format_mtime(meta.mtime_ns),
        "mode": format_mode(kind | meta.mode),
        "uid": str(meta.uid),
        "gid": str(meta.gid),
    }


def meta_from_metadata(
    metadata: dict[str, str], *, size: int, fallback_ns: int, uid: int, gid: int, target: str | None = None
) -> Meta:
    """The :class:`Meta` of an object from its user metadata (rclone's keys).

    An object without ``mtime`` (uploaded by something else) gets the time
    it was stored; without ``mode``, the bits of a new file (0644), or a
    link's 0777.
    """
    mtime = parse_mtime(metadata.get("mtime", ""))
    default_mode = (stat.S_IFLNK | 0o777) if target is not None else (stat.S_IFREG | 0o644)
    mode = parse_mode(metadata.get("mode"), default_mode)
    return Meta(
        Kind.LINK if target is not None else Kind.FILE,
        size,
        fallback_ns if mtime is None else mtime,
        stat.S_IMODE(mode),
        parse_id(metadata.get("uid"), uid),
        parse_id(metadata.get("gid"), gid),
        target,
    )


def content_type(key: str) -> str:
    """The Content-Type rclone sends for an object of this name: by its extension, text as UTF-8.

    >>> content_type("notes/a.txt"), content_type("b.tar.gz"), content_type("c.rclonelink")
    ('text/plain; charset=utf-8', 'application/gzip', 'application/octet-stream')
    """
    kind, encoding = mimetypes.guess_type(key.rpartition("/")[2], strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, DEFAULT_TYPE)
    if kind is None:
        return DEFAULT_TYPE
    # Go's mime package (rclone's) adds the charset to every text type.
    return f"{kind}; charset=utf-8" if kind.startswith("text/") and "charset" not in kind else kind


def object_name(name: str, kind: Kind) -> str:
    """The last part of the key of entry ``name`` of this kind."""
    return name + LINK_SUFFIX if kind is Kind.LINK else name


def encode_name(text: str) -> bytes:
    """A path or link text as bytes: a name that was not UTF-8 on disk comes back as it was."""
    return text.encode("utf-8", "surrogateescape")
