"""The replica's tree read from one flat, paginated listing of the prefix.

An object store has no folders to list one by one: a listing with a
delimiter pages through the keys anyway, and SeaweedFS keeps emptied
prefixes in such listings. So the whole prefix is listed once, flat, when
the run opens the replica (1,000 keys per request: 20 requests for 20,000
files), and the walk is served folder by folder from memory.

Each object's metadata (the file's modification time and mode) comes from
the index of the last run when the listing confirms it (same size and
ETag), or else from a HEAD request, many in flight at once (a bucket
written by rclone, or changed behind synchro's back, costs what rclone pays
on every run, once). A link's text is in the index, or read with a GET.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote_plus
from xml.etree import ElementTree

from ..base import Kind, Meta
from .connect import CONNECT_SECONDS, READ_SECONDS, S3Location
from .index import Entry, Folder, Index
from .layout import LINK_SUFFIX, meta_from_metadata, parse_mode

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover - types only

# Requests in flight while metadata is asked for object by object.
HEADS_IN_FLIGHT = 32
# Listings of sub-folders in flight (each pages through its keys in turn).
LISTINGS_IN_FLIGHT = 8


class Listed(NamedTuple):
    """One object as a listing gives it."""

    rel: str  # key relative to the prefix ("a/b.txt", "a/l.rclonelink", "a/d/")
    size: int
    etag: str  # without quotes
    stored: str  # when it was uploaded, as listed (ISO 8601): read only for an object the index does not know

    @property
    def stored_ns(self) -> int:
        """The time of upload in whole seconds, as nanoseconds (0 if the server gave none that parses)."""
        try:
            return int(datetime.fromisoformat(self.stored.replace("Z", "+00:00")).timestamp()) * 10**9
        except ValueError:
            return 0


def strip_etag(etag: str) -> str:
    return etag.strip('"')


def list_prefix(s3: S3Client, location: S3Location, *, in_flight: int = LISTINGS_IN_FLIGHT) -> list[Listed]:
    """Every object under ``prefix/``, flat.

    A listing pages through 1,000 keys per request, each page waiting for
    the one before. So the top level is listed first with a delimiter (its
    files, and its sub-folders as common prefixes), then each top-level
    sub-folder flat, several at once. An emptied prefix that a server still
    shows among the common prefixes (SeaweedFS does) lists as empty.
    """
    base = location.key("")
    reader = PageReader(s3, location.bucket, len(base), connections=in_flight)
    found: list[Listed] = []
    folders: list[str] = []
    for listed, common in reader.pages(base, "/"):
        found.extend(listed)
        folders.extend(common)

    def flat(prefix: str) -> list[Listed]:
        return [item for listed, _ in reader.pages(prefix) for item in listed]

    if len(folders) == 1:
        found.extend(flat(folders[0]))
    elif folders:
        with ThreadPoolExecutor(in_flight, thread_name_prefix="synchro-s3-list") as pool:
            for listed in pool.map(flat, folders):
                found.extend(listed)
    return found


_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_CONTENTS, _KEY, _SIZE, _ETAG, _LAST_MODIFIED = (
    f"{_NS}{tag}" for tag in ("Contents", "Key", "Size", "ETag", "LastModified")
)


class PageReader:
    """The pages of a listing, read as XML by the standard library.

    botocore turns each listed object into a dictionary through its
    generic, pure-Python parser: for 20,000 objects that took most of a
    daily run's time. The request is the client's own, signed by it (a
    presigned URL: the same credentials, endpoint and region), sent
    through urllib3 with the client's certificate settings and timeouts;
    the answer is read by ElementTree, in C. Errors become botocore's, so
    that the replica reports them as it reports any other.
    """

    ATTEMPTS = 3

    def __init__(
        self, s3: S3Client, bucket: str, cut: int, *, connections: int, page_size: int = 1000
    ) -> None:
        import urllib3

        from .direct import http_pool

        self.s3, self.bucket, self.cut, self.page_size = s3, bucket, cut, page_size
        self.timeout = urllib3.Timeout(connect=CONNECT_SECONDS, read=READ_SECONDS)
        self.http = http_pool(connections)

    def pages(self, prefix: str, delimiter: str = "") -> Iterator[tuple[list[Listed], list[str]]]:
        token = ""
        while True:
            params: dict[str, object] = {"Bucket": self.bucket, "Prefix": prefix, "EncodingType": "url"}
            if self.page_size != 1000:
                params["MaxKeys"] = self.page_size
            if delimiter:
                params["Delimiter"] = delimiter
            if token:
                params["ContinuationToken"] = token
            root = self._get(params)
            listed = self._items(root)
            common = [
                unquote_plus(node.findtext(f"{_NS}Prefix", "")) for node in root.iter(f"{_NS}CommonPrefixes")
            ]
            yield listed, common
            token = root.findtext(f"{_NS}NextContinuationToken", "")
            if root.findtext(f"{_NS}IsTruncated", "false") != "true" or not token:
                return

    def _items(self, root: ElementTree.Element) -> list[Listed]:
        # 20,000 objects on a daily run: one pass, no more calls per object than needed.
        cut, found = self.cut, []
        for node in root.iter(_CONTENTS):
            key = node.findtext(_KEY, "")
            if "%" in key or "+" in key:  # EncodingType=url: quoted, spaces as "+"
                key = unquote_plus(key)
            size = node.findtext(_SIZE, "0")
            etag = node.findtext(_ETAG, "").strip('"')
            found.append(Listed(key[cut:], int(size), etag, node.findtext(_LAST_MODIFIED, "")))
        return found

    def _get(self, params: dict[str, object]) -> ElementTree.Element:
        import botocore.exceptions
        import urllib3

        url = self.s3.generate_presigned_url("list_objects_v2", Params=params, ExpiresIn=900)
        failure: Exception = RuntimeError("no attempt")
        for attempt in range(self.ATTEMPTS):
            try:
                answer = self.http.request("GET", url, timeout=self.timeout, preload_content=True)
            except urllib3.exceptions.TimeoutError as error:
                failure = botocore.exceptions.ReadTimeoutError(endpoint_url=url.split("?")[0], error=error)
            except urllib3.exceptions.HTTPError as error:
                failure = botocore.exceptions.EndpointConnectionError(
                    endpoint_url=url.split("?")[0], error=error
                )
            else:
                if answer.status == 200:
                    return ElementTree.fromstring(answer.data)
                failure = _client_error(answer.status, answer.data)
                if answer.status < 500:
                    raise failure
            if attempt + 1 < self.ATTEMPTS:
                time.sleep(0.5 * 2**attempt)  # backoff, as botocore's standard retries
        raise failure


def _client_error(status: int, body: bytes) -> Exception:
    import botocore.exceptions

    code, message = str(status), ""
    try:
        root = ElementTree.fromstring(body)
        code = root.findtext("Code") or code
        message = root.findtext("Message") or ""
    except ElementTree.ParseError:
        pass
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}}, "ListObjectsV2")


class Snapshot:
    """The replica's folders as the walk reads them, and what is known of each object."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid, self.gid = uid, gid
        # folder path -> {name: Meta}: the entries as the walk lists them.
        self.folders: dict[str, dict[str, Meta]] = {"": {}}
        # What the index will say of each object at the end of the run, by key relative to the prefix.
        self.objects: dict[str, Entry] = {}
        # Folder times and modes (no marker holds them).
        self.folder_meta: dict[str, Folder] = {}
        # Folders that have a "dir/" marker object.
        self.markers: set[str] = set()
        # Whether the index must be written again: something changed, or was read with a HEAD.
        self.dirty = False

    def folder_entry(self, path: str) -> Meta:
        known = self.folder_meta.get(path)
        if known is None:
            # A folder synchro never described (made by rclone, or by hand).
            return Meta(Kind.DIR, 0, 0, 0o755, self.uid, self.gid)
        return Meta(Kind.DIR, 0, known.mtime_ns, known.mode, known.uid, known.gid)

    def add_folder(self, path: str) -> None:
        """Make folder ``path`` and its parents known (as folders in their parents)."""
        while path and path not in self.folders:
            self.folders[path] = {}
            parent, _, name = path.rpartition("/")
            self.folders.setdefault(parent, {})
            self.folders[parent][name] = self.folder_entry(path)
            path = parent

    def put(self, rel: str, entry: Entry) -> Meta:
        """Record object ``rel`` (a file, or a link's ``.rclonelink``) and return its entry's Meta."""
        self.objects[rel] = entry
        self.dirty = True
        folder, _, name = rel.rpartition("/")
        kind = Kind.FILE
        if entry.target is not None:
            kind, name = Kind.LINK, name[: -len(LINK_SUFFIX)]
        meta = Meta(kind, entry.size, entry.mtime_ns, entry.mode & 0o7777, entry.uid, entry.gid, entry.target)
        self.add_folder(folder)
        self.folders[folder][name] = meta
        return meta


def usable(rel: str) -> bool:
    """Whether a key is a path synchro can mirror (no empty, ``.`` or ``..`` part)."""
    body = rel[:-1] if rel.endswith("/") else rel
    return bool(body) and all(part not in ("", ".", "..") for part in body.split("/"))


def read_snapshot(
    s3: S3Client,
    location: S3Location,
    index: Index,
    listed: Iterable[Listed],
    *,
    heads: int = HEADS_IN_FLIGHT,
) -> Snapshot:
    """The replica's tree from a flat listing, the last run's index, and HEADs where they disagree."""
    snap = Snapshot(os.getuid(), os.getgid())
    snap.folder_meta = dict(index.folders)
    unknown: list[Listed] = []
    for item in listed:
        rel = item.rel
        if not usable(rel):
            continue  # not a path of a tree ("a//b"): never touched
        if rel.endswith("/"):
            snap.markers.add(rel[:-1])
            snap.add_folder(rel[:-1])
            continue
        known = index.objects.get(rel)
        if (
            known is not None
            and (known.size, known.etag) == (item.size, item.etag)
            and (known.target is not None) == rel.endswith(LINK_SUFFIX)
        ):
            snap.put(rel, known)
            continue
        if rel.endswith(LINK_SUFFIX) and rel.rpartition("/")[2] == LINK_SUFFIX:
            continue  # ".rclonelink" alone names no link
        unknown.append(item)
    if unknown:
        with ThreadPoolExecutor(heads, thread_name_prefix="synchro-s3-head") as pool:
            for item, entry in zip(unknown, pool.map(_describer(s3, location, snap), unknown), strict=True):
                if entry is not None:
                    snap.put(item.rel, entry)
    # Folder entries in their parents were made before every folder's time was read.
    for path in snap.folders:
        if path:
            parent, _, name = path.rpartition("/")
            snap.folders[parent][name] = snap.folder_entry(path)
    # The index is written again only if it no longer says what the bucket holds.
    snap.dirty = bool(unknown) or snap.objects.keys() != index.objects.keys()
    return snap


def _describer(s3: S3Client, location: S3Location, snap: Snapshot) -> Callable[[Listed], Entry | None]:
    def describe(item: Listed) -> Entry | None:
        import botocore.exceptions

        key = location.key(item.rel)
        try:
            if item.rel.endswith(LINK_SUFFIX):
                got = s3.get_object(Bucket=location.bucket, Key=key)
                body = got["Body"].read()
                metadata, etag = got.get("Metadata", {}), strip_etag(got["ETag"])
                target: str | None = body.decode("utf-8", "surrogateescape")
            else:
                head = s3.head_object(Bucket=location.bucket, Key=key)
                metadata, etag, target = head.get("Metadata", {}), strip_etag(head["ETag"]), None
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None  # deleted since it was listed
            raise
        meta = meta_from_metadata(
            metadata, size=item.size, fallback_ns=item.stored_ns, uid=snap.uid, gid=snap.gid, target=target
        )
        kind_bits = parse_mode(metadata.get("mode"), 0) & ~0o7777
        md5 = "" if "-" in etag else etag
        if not md5 and metadata.get("md5chksum"):
            md5 = _b64_to_hex(metadata["md5chksum"])
        return Entry(item.size, etag, meta.mtime_ns, kind_bits | meta.mode, meta.uid, meta.gid, md5, target)

    return describe


def _b64_to_hex(text: str) -> str:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""
