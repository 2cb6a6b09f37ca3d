"""One file's bytes into one object: a single PUT, or a multipart upload in concurrent parts.

Either replaces the object atomically: a PUT cut off, or a multipart upload
never completed, leaves the old object (or none) under the key, never a
partial one; so no temporary name is needed. A multipart upload that fails
is aborted here; one left by a run that died is aborted by the next run
(:meth:`~synchro.endpoints.s3.replica.S3Replica.open`).

The object's MD5 is its ETag for a single PUT (sent as ``Content-MD5``,
so the server checks the bytes it got); a multipart ETag is not, so the
MD5 goes into the metadata as ``md5chksum``, the key rclone uses for the
same purpose, and ``--checksum`` compares with it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import TYPE_CHECKING, NamedTuple

from ..base import Kind, Meta, SourceChanged
from .layout import content_type

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover - types only

    from .direct import DirectPut

# Files up to this size go in one PUT (read whole into memory); larger ones
# in parts of PART_SIZE, PARTS_IN_FLIGHT at a time per file.
SINGLE_PUT_MAX = 16 << 20
PART_SIZE = 16 << 20
PARTS_IN_FLIGHT = 8
CHUNK = 1 << 20  # reads of a single PUT, between two calls of the test hook

OnBytes = Callable[[int], None]


class Uploaded(NamedTuple):
    meta: Meta  # the file as it was read
    etag: str  # without quotes
    md5: str  # hex


def file_meta(st: os.stat_result) -> Meta:
    return Meta(Kind.FILE, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns, a.st_ino) == (
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
        b.st_ino,
    )


def _read(fd: int, offset: int, size: int) -> bytes:
    parts = []
    while size > 0:
        data = os.pread(fd, size, offset)
        if not data:
            break  # shorter than it was: the fstat after the read says it changed
        parts.append(data)
        offset += len(data)
        size -= len(data)
    return b"".join(parts)


def upload(
    put: DirectPut,
    key: str,
    fd: int,
    metadata: Callable[[Meta], dict[str, str]],
    parts: ThreadPoolExecutor,
    on_bytes: OnBytes | None = None,
) -> Uploaded:
    """Upload the regular file open on ``fd`` to ``key``; SourceChanged if it changes meanwhile.

    ``metadata`` makes the object's user metadata from the file's Meta as
    read. A single PUT goes through ``put``, a multipart upload through its
    client. The caller converts botocore's errors.
    """
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        raise SourceChanged("is no longer a regular file")
    meta = file_meta(before)
    if before.st_size <= SINGLE_PUT_MAX:
        chunks = []
        offset = 0
        while offset < before.st_size:
            chunk = _read(fd, offset, min(CHUNK, before.st_size - offset))
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            if on_bytes is not None:
                on_bytes(offset)
        data = b"".join(chunks)
        if not _same(before, os.fstat(fd)) or len(data) != before.st_size:
            raise SourceChanged("changed while copying")
        # The one MD5 of the bytes: sent as Content-MD5 (botocore computes no other checksum).
        digest = hashlib.md5(data)
        etag = put.put(
            key,
            data,
            md5=base64.b64encode(digest.digest()).decode(),
            metadata=metadata(meta),
            content_type=content_type(key),
        )
        return Uploaded(meta, etag, digest.hexdigest())
    return _multipart(put.s3, put.bucket, key, fd, before, meta, metadata, parts, on_bytes)


def _multipart(
    s3: S3Client,
    bucket: str,
    key: str,
    fd: int,
    before: os.stat_result,
    meta: Meta,
    metadata: Callable[[Meta], dict[str, str]],
    pool: ThreadPoolExecutor,
    on_bytes: OnBytes | None,
) -> Uploaded:
    # The MD5 goes into the metadata, which is given when the upload is
    # created: the file is read once for it first (the page cache serves the
    # second read of the parts), as rclone does.
    digest = hashlib.md5()
    offset = 0
    while offset < before.st_size:
        chunk = _read(fd, offset, min(PART_SIZE, before.st_size - offset))
        if not chunk:
            break
        digest.update(chunk)
        offset += len(chunk)
    fields = metadata(meta)
    fields["md5chksum"] = base64.b64encode(digest.digest()).decode()
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=key, Metadata=fields, ContentType=content_type(key)
    )["UploadId"]
    futures: dict[int, Future[str]] = {}
    try:
        count = -(-before.st_size // PART_SIZE)

        def send(number: int) -> str:
            start = (number - 1) * PART_SIZE
            data = _read(fd, start, min(PART_SIZE, before.st_size - start))
            part_md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
            answer = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, ContentMD5=part_md5
            )
            return answer["ETag"]

        etags: dict[int, str] = {}
        sent = 0
        next_part = 1
        # At most PARTS_IN_FLIGHT parts of this file are read and in flight at
        # once (memory: PARTS_IN_FLIGHT times PART_SIZE), in order.
        while next_part <= count or futures:
            while next_part <= count and len(futures) < PARTS_IN_FLIGHT:
                futures[next_part] = pool.submit(send, next_part)
                next_part += 1
            first = min(futures)
            etags[first] = futures.pop(first).result()
            sent += min(PART_SIZE, before.st_size - (first - 1) * PART_SIZE)
            if on_bytes is not None:
                on_bytes(sent)
        if not _same(before, os.fstat(fd)):
            raise SourceChanged("changed while copying")
        answer = s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"ETag": etags[n], "PartNumber": n} for n in sorted(etags)]},
        )
    except BaseException:
        for future in futures.values():
            future.cancel()
        for future in futures.values():
            with suppress(BaseException):
                future.result()
        with suppress(Exception):  # unreachable: the next run aborts it
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    return Uploaded(meta, answer["ETag"].strip('"'), digest.hexdigest())
