"""A replica in an S3 bucket: ``s3://bucket/prefix``, laid out as rclone lays it out.

What lives where (:mod:`synchro.endpoints.s3.layout`): one object per file
under ``prefix/``, holding its bytes, with rclone's ``mtime`` and ``mode``
metadata; links as ``.rclonelink`` objects; empty folders as ``dir/``
markers. What synchro keeps for itself lives beside the prefix, never in
it: ``prefix.synchro/lock`` (:mod:`~synchro.endpoints.s3.lock`) and
``prefix.synchro/index`` (:mod:`~synchro.endpoints.s3.index`).

A run: the lock is taken (none in a dry run: nothing in the bucket
changes), the prefix is listed once, flat (:mod:`~synchro.endpoints.s3.snapshot`),
multipart uploads a dead run left are aborted, the walk is served from
memory, uploads run many at a time (:attr:`S3Replica.concurrency`: the
pipeline keeps 32 copies in flight, on one thread-safe boto3 client), and
the index is written at the end.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import botocore.exceptions

from ..base import Concurrency, Kind, Listing, Meta, OnChunk, Source
from ..capabilities import Capabilities
from . import index as index_file
from .connect import S3Location, check_bucket, client, parse_s3_url, session
from .direct import DirectPut
from .failures import UNREACHABLE, as_os_error
from .index import Entry, Folder
from .layout import LINK_SUFFIX, content_type, encode_name, file_metadata, object_name
from .lock import S3Lock
from .snapshot import Snapshot, list_prefix, read_snapshot, strip_etag
from .upload import PARTS_IN_FLIGHT, upload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover - types only

    from ...options import MirrorOptions
    from .versions import S3Keeper

# Each request waits for a round trip: a run is bound by waiting, so many
# copies are in flight, of any size, and no second process is forked.
REMOTE = Concurrency(fork_helper=False, copies_in_flight=32, in_flight_min_size=0)
# The longest key S3 accepts, in bytes of UTF-8.
MAX_KEY_BYTES = 1024

T = TypeVar("T")


def index_key(location: S3Location) -> str:
    return f"{location.prefix}.synchro/index"


class S3Replica:
    """The replica ``s3://bucket/prefix`` for one run (see the module's docstring)."""

    concurrency = REMOTE

    def __init__(
        self,
        url: str,
        *,
        profile: str | None = None,
        dry_run: bool = False,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.location = parse_s3_url(url)
        self.profile = profile
        self.dry_run = dry_run
        self.say = say
        self._s3: S3Client | None = None
        self._put: DirectPut | None = None
        self.snap = Snapshot(os.getuid(), os.getgid())
        self._opened = False
        self._parts: ThreadPoolExecutor | None = None
        # Set once the endpoint could not be reached: every later request
        # fails at once with this reason instead of waiting out its retries.
        self.gone: str | None = None
        self.kept_owner = False

    # --- reaching the bucket

    @property
    def s3(self) -> S3Client:
        return self._connect()[0]

    @property
    def put(self) -> DirectPut:
        """Whole objects of a single PUT go through it (see :mod:`~synchro.endpoints.s3.direct`)."""
        return self._connect()[1]

    def _connect(self) -> tuple[S3Client, DirectPut]:
        if self._s3 is None or self._put is None:
            aws = session(self.profile)
            check_bucket(self.location, using=aws)  # ConfigError: one line, exit 2
            # The copies in flight and the parts of large files share it.
            self._s3 = client(using=aws, connections=REMOTE.copies_in_flight + 2 * PARTS_IN_FLIGHT)
            self._put = DirectPut(
                self._s3, aws.get_credentials(), self.location.bucket, connections=REMOTE.copies_in_flight
            )
        return self._s3, self._put

    def key(self, path: str) -> str:
        return self.location.key(path)

    def _call(self, what: str, request: Callable[[], T]) -> T:
        """Run one request; its failure as an OSError naming ``what``."""
        if self.gone is not None:
            raise OSError(errno.EHOSTUNREACH, self.gone)
        try:
            return request()
        except UNREACHABLE as error:
            failure = as_os_error(error, what)
            self.gone = failure.strerror
            raise failure from None
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            raise as_os_error(error, what) from None

    def lock(self) -> AbstractContextManager[object]:
        s3 = self.s3
        if self.dry_run:
            return nullcontext()  # a dry run changes nothing in the bucket, its lock neither
        return S3Lock(s3, self.location, self.say)

    def open(self) -> None:
        s3 = self.s3
        where = str(self.location)
        # The index and the unfinished uploads are a request each, and the
        # index's decoding: done while the listing's pages come.
        with ThreadPoolExecutor(2, thread_name_prefix="synchro-s3-open") as pool:
            index = pool.submit(self._read_index)
            leftovers = None if self.dry_run else pool.submit(self._leftovers)
            listed = self._call(f"cannot list {where}", lambda: list_prefix(s3, self.location))
            known = index.result()
            unfinished = [] if leftovers is None else leftovers.result()
        self.snap = self._call(
            f"cannot read the metadata of {where}", lambda: read_snapshot(s3, self.location, known, listed)
        )
        self._abort(unfinished)
        self._opened = True

    def _read_index(self) -> index_file.Index:
        def fetch() -> bytes:
            try:
                return self.s3.get_object(Bucket=self.location.bucket, Key=index_key(self.location))[
                    "Body"
                ].read()
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return b""
                raise

        data = self._call("cannot read the index", fetch)
        return index_file.loads(data) if data else index_file.empty()

    def _leftovers(self) -> list[tuple[str, str]]:
        """The multipart uploads under the prefix (key, upload id): a dead run's, since this run holds the lock."""
        s3, bucket = self.s3, self.location.bucket

        def leftovers() -> list[tuple[str, str]]:
            pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=self.key(""))
            return [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", ())]

        return self._call("cannot list unfinished uploads", leftovers)

    def _abort(self, unfinished: list[tuple[str, str]]) -> None:
        s3, bucket = self.s3, self.location.bucket
        for key, upload_id in unfinished:
            self._call(
                f"cannot abort the unfinished upload of {key}",
                lambda key=key, upload_id=upload_id: s3.abort_multipart_upload(  # type: ignore[misc]
                    Bucket=bucket, Key=key, UploadId=upload_id
                ),
            )
            if self.say is not None:
                shown = key[len(self.key("")) :]
                self.say(f"CLEANED the unfinished upload of {shown}, left by an earlier run, was aborted")

    def measure(self, *, as_root: bool) -> Capabilities:
        self.kept_owner = False
        return Capabilities(
            "s3",
            owners=False,
            permissions=True,  # the mode metadata (files), the index (folders)
            symlinks=True,  # as .rclonelink objects
            link_times=True,
            special_files=False,
            time_precision_ns=1,  # the mtime metadata, to the nanosecond
            case_sensitive=True,
            max_name_bytes=MAX_KEY_BYTES - len(encode_name(self.key(""))) - len(LINK_SUFFIX),
            utf8_only=True,  # a key is UTF-8
        )

    def close(self) -> None:
        try:
            if self._opened and not self.dry_run and self.gone is None and self.snap.dirty:
                self._write_index()
        finally:
            self._opened = False
            if self._parts is not None:
                self._parts.shutdown(wait=True, cancel_futures=True)
                self._parts = None

    def _write_index(self) -> None:
        snap = self.snap
        data = index_file.dumps(index_file.Index(snap.objects, snap.folder_meta))
        try:
            self._call(
                "cannot write the index",
                lambda: self.s3.put_object(
                    Bucket=self.location.bucket, Key=index_key(self.location), Body=data
                ),
            )
        except OSError as error:
            # What was uploaded is in place; the next run asks the server
            # (one HEAD per object the index does not confirm).
            if self.say is not None:
                self.say(f"WARNING {error.strerror}; the next run reads the objects' metadata anew")

    # --- reading

    def list(self, folder: str) -> Listing:
        entries = self.snap.folders.get(folder)
        if entries is None:
            raise FileNotFoundError(errno.ENOENT, "no such folder in the replica", folder)
        return Listing(entries, {})

    def lookup(self, path: str) -> Meta | None:
        if not path:
            return self.snap.folder_entry("")
        parent, _, name = path.rpartition("/")
        entries = self.snap.folders.get(parent)
        return None if entries is None else entries.get(name)

    def identity(self, folder: str) -> object | None:
        return None  # a bucket: no folder of this machine is one of its folders

    # --- the actions

    def _object(self, folder: str, name: str, kind: Kind) -> str:
        """The object's path relative to the prefix."""
        return f"{folder}/{object_name(name, kind)}" if folder else object_name(name, kind)

    def _parts_pool(self) -> ThreadPoolExecutor:
        if self._parts is None:
            self._parts = ThreadPoolExecutor(2 * PARTS_IN_FLIGHT, thread_name_prefix="synchro-s3-part")
        return self._parts

    def _upload(self, fd: int, folder: str, name: str, on_chunk: OnChunk | None) -> int:
        rel = self._object(folder, name, Kind.FILE)
        key = self.key(rel)
        done = self._call(
            f"cannot upload to {key}",
            lambda: upload(self.put, key, fd, file_metadata, self._parts_pool(), on_chunk),
        )
        meta = done.meta
        self.snap.put(
            rel,
            Entry(
                meta.size, done.etag, meta.mtime_ns, 0o100000 | meta.mode, meta.uid, meta.gid, done.md5, None
            ),
        )
        return meta.size

    def copy_file(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None) -> int:
        fd = source.open_file(folder, name)
        try:
            return self._upload(fd, folder, name, on_chunk)
        finally:
            os.close(fd)

    def copy_job(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None) -> S3CopyJob:
        # Opened here, in the main thread: the source's folder descriptors are not shared with threads.
        return S3CopyJob(self, source.open_file(folder, name), folder, name, on_chunk)

    def copy_link(self, folder: str, name: str, meta: Meta) -> None:
        assert meta.target is not None
        rel = self._object(folder, name, Kind.LINK)
        body = encode_name(meta.target)
        digest = hashlib.md5(body)
        key = self.key(rel)
        etag = self._call(
            f"cannot upload to {key}",
            lambda: self.put.put(
                key,
                body,
                md5=base64.b64encode(digest.digest()).decode(),
                metadata=file_metadata(meta),
                content_type=content_type(key),
            ),
        )
        md5 = digest.hexdigest()
        self.snap.put(
            rel,
            Entry(
                len(body),
                etag,
                meta.mtime_ns,
                0o120000 | meta.mode,
                meta.uid,
                meta.gid,
                md5,
                meta.target,
            ),
        )

    def make_folder(self, folder: str, name: str) -> None:
        # No request: a folder is a prefix. An empty one gets its marker
        # with its metadata (set_folder_meta), once its content is known.
        if self.gone is not None:
            raise OSError(errno.EHOSTUNREACH, self.gone)
        path = f"{folder}/{name}" if folder else name
        self.snap.add_folder(path)

    def set_file_meta(self, folder: str, name: str, meta: Meta) -> None:
        """New metadata on an object whose bytes are equal: a server-side copy onto itself."""
        rel = self._object(folder, name, meta.kind)
        key = self.key(rel)
        known = self.snap.objects.get(rel)
        fields = file_metadata(meta)
        if known is not None and known.md5 and "-" in known.etag:
            fields["md5chksum"] = _hex_to_b64(known.md5)
        answer = self._call(
            f"cannot set the metadata of {key}",
            lambda: self.s3.copy_object(
                Bucket=self.location.bucket,
                Key=key,
                CopySource={"Bucket": self.location.bucket, "Key": key},
                Metadata=fields,
                MetadataDirective="REPLACE",
                # Replaced with the metadata: the type the upload gave it.
                ContentType=content_type(key),
            ),
        )
        etag = strip_etag(answer.get("CopyObjectResult", {}).get("ETag", known.etag if known else ""))
        kind_bits = 0o120000 if meta.kind is Kind.LINK else 0o100000
        self.snap.put(
            rel,
            Entry(
                meta.size,
                etag,
                meta.mtime_ns,
                kind_bits | meta.mode,
                meta.uid,
                meta.gid,
                known.md5 if known else "",
                meta.target,
            ),
        )

    def set_folder_meta(self, path: str, meta: Meta) -> None:
        snap = self.snap
        snap.folder_meta[path] = Folder(meta.mtime_ns, meta.mode, meta.uid, meta.gid)
        snap.dirty = True
        if path:
            parent, _, name = path.rpartition("/")
            snap.folders.setdefault(parent, {})[name] = snap.folder_entry(path)
            if not snap.folders.get(path) and path not in snap.markers:
                # An empty folder: a zero-byte marker, so that it is there for rclone and a restore.
                key = self.key(path) + "/"
                self._call(
                    f"cannot create the folder marker {key}",
                    lambda: self.s3.put_object(Bucket=self.location.bucket, Key=key, Body=b""),
                )
                snap.markers.add(path)

    def remove(self, folder: str, name: str) -> None:
        entries = self.snap.folders.get(folder, {})
        known = entries.get(name)
        rel = self._object(folder, name, known.kind if known is not None else Kind.FILE)
        key = self.key(rel)
        # S3 says nothing of a key that was not there: absent is fine.
        self._call(
            f"cannot delete {key}", lambda: self.s3.delete_object(Bucket=self.location.bucket, Key=key)
        )
        entries.pop(name, None)
        self.snap.objects.pop(rel, None)
        self.snap.dirty = True

    def remove_folder(self, folder: str, name: str) -> None:
        path = f"{folder}/{name}" if folder else name
        snap = self.snap
        if path in snap.markers:
            key = self.key(path) + "/"
            self._call(
                f"cannot delete {key}", lambda: self.s3.delete_object(Bucket=self.location.bucket, Key=key)
            )
            snap.markers.discard(path)
        snap.folders.pop(path, None)
        snap.folders.get(folder, {}).pop(name, None)
        snap.folder_meta.pop(path, None)
        snap.dirty = True

    def rename(self, folder: str, old: str, new: str) -> None:
        # Keys are case-sensitive: the planner never asks for a case-only rename here.
        raise OSError(errno.ENOTSUP, "an object store does not rename", f"{folder}/{old}")

    def same_content(self, source: Source, folder: str, name: str) -> bool:
        rel = self._object(folder, name, Kind.FILE)
        known = self.snap.objects.get(rel)
        stored = known.md5 if known is not None else ""
        if not stored:
            return False  # no hash to compare with: copied anew, which is never wrong
        fd = source.open_file(folder, name)
        try:
            digest = hashlib.md5()
            while chunk := os.read(fd, 1 << 20):
                digest.update(chunk)
        finally:
            os.close(fd)
        return digest.hexdigest() == stored

    def make_writable(self, folder: str) -> bool:
        return False  # an object store has no read-only folders

    def version_keeper(
        self,
        versions: str,
        options: MirrorOptions,
        emit: Callable[[str], None],
        *,
        clock: Callable[[], datetime],
    ) -> S3Keeper | None:
        """The keeper of this run's old versions (server-side copies into ``versions``); none in a dry run."""
        from .versions import S3Keeper

        if options.dry_run:
            return None
        return S3Keeper(self, parse_s3_url(versions), options.keep_versions, emit, clock=clock)

    @contextmanager
    def held(self) -> Iterator[S3Replica]:
        """Locked and open, for the features that read a replica outside a run (restore, verify)."""
        with self.lock():
            self.open()
            try:
                yield self
            finally:
                self.close()


def _hex_to_b64(text: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(text)).decode()


class S3CopyJob:
    """One upload prepared in the main thread (the source file open) and run on another one."""

    def __init__(self, replica: S3Replica, fd: int, folder: str, name: str, on_chunk: OnChunk | None) -> None:
        self._replica, self._fd = replica, fd
        self._folder, self._name = folder, name
        self._on_chunk = on_chunk  # told the bytes sent so far (the progress bar), in the job's thread

    def run(self) -> int:
        try:
            return self._replica._upload(self._fd, self._folder, self._name, self._on_chunk)
        finally:
            self.discard()

    def discard(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
