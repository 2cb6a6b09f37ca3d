"""Helpers for the s3:// replica tests: buckets on the test server, what a bucket holds, the command."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import boto3
from servers import S3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_names = itertools.count()


def s3_client(server: S3Server) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.key_id,
        aws_secret_access_key=server.secret,
        region_name="us-east-1",
    )


def new_bucket(server: S3Server, stem: str = "t") -> str:
    """A fresh bucket (names are unique within the test session)."""
    name = f"{stem}-{os.getpid()}-{next(_names)}"
    s3 = s3_client(server)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=name)
    return name


class Obj(NamedTuple):
    data: bytes
    metadata: dict[str, str]
    etag: str


def objects(server: S3Server, bucket: str, prefix: str = "", *, metadata: bool = True) -> dict[str, Obj]:
    """Every object of ``bucket`` under ``prefix`` (keys as they are), with bytes and user metadata."""
    s3 = s3_client(server)
    found: dict[str, Obj] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            key = item["Key"]
            got = s3.get_object(Bucket=bucket, Key=key)
            found[key] = Obj(
                got["Body"].read(), got.get("Metadata", {}) if metadata else {}, got["ETag"].strip('"')
            )
    return found


def keys(server: S3Server, bucket: str, prefix: str = "") -> list[str]:
    s3 = s3_client(server)
    return sorted(
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", ())
    )


def mirror_of(server: S3Server, bucket: str, prefix: str) -> dict[str, bytes]:
    """The mirrored tree as {relative key: bytes} (folder markers end with '/')."""
    base = prefix.rstrip("/") + "/"
    return {key[len(base) :]: obj.data for key, obj in objects(server, bucket, base, metadata=False).items()}


def files_of(root: Path) -> dict[str, bytes]:
    """A local tree as the bucket should hold it: files, links as .rclonelink, empty folders as markers."""
    found: dict[str, bytes] = {}
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel + "/"
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                found[prefix + name + ".rclonelink"] = os.fsencode(os.readlink(path))
            else:
                found[prefix + name] = Path(path).read_bytes()
        if not files and not dirs and prefix:
            found[prefix] = b""
    return found


def run_command(
    server: S3Server, *args: object, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m synchro ARGS`` with the server's AWS settings (and no others)."""
    from conftest import child_env

    return subprocess.run(
        [sys.executable, "-m", "synchro", *map(str, args)],
        capture_output=True,
        text=True,
        env=server.env(child_env()) | (env or {}),
        timeout=120,
        check=False,
    )


def wait_writable(server: S3Server, bucket: str, *, seconds: float = 60.0) -> None:
    """Return once ``bucket`` takes a write and gives back what it held: just after a
    restart, SeaweedFS answers InternalError ("volume not found") until its volume
    server has registered each volume, for writes and for reads of what was there.

    The probe has bytes (an empty object lives in the filer alone, without a
    volume), and every object already in the bucket is read once (a test's
    bucket holds a few).
    """
    import botocore.exceptions

    s3 = s3_client(server)
    deadline = time.monotonic() + seconds
    while True:
        try:
            s3.put_object(Bucket=bucket, Key="ready-probe", Body=b"ready")
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        except botocore.exceptions.ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # polling a condition, with a deadline
        else:
            s3.delete_object(Bucket=bucket, Key="ready-probe")
            return


def head(server: S3Server, bucket: str, key: str) -> dict[str, Any]:
    return dict(s3_client(server).head_object(Bucket=bucket, Key=key))
