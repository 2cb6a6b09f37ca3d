"""Reaching the object store of an s3:// replica: URLs, standard AWS settings, one-line refusals."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

import boto3
import pytest
from servers import S3Server, free_port

from synchro.endpoints.s3.connect import S3Location, check_bucket, parse_s3_url
from synchro.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://photos/backup", S3Location("photos", "backup")),
        ("s3://photos/a/b/", S3Location("photos", "a/b")),
    ],
    ids=["prefix", "nested-trailing-slash"],
)
def test_urls_are_read(url: str, expected: S3Location) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://photos", "name a prefix in the bucket"),
        ("s3://key:secret@photos/b", "credentials never go in the URL"),
        ("s3://photos/a//b", "empty, '.' or '..'"),
        ("s3://photos/a/../b", "empty, '.' or '..'"),
    ],
    ids=["no-prefix", "credentials", "empty-part", "dotdot"],
)
def test_bad_urls_are_one_line_refusals(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        parse_s3_url(url)
    assert "\n" not in str(caught.value)


@pytest.fixture
def aws_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The server's endpoint and keys as this process's standard AWS settings, nothing else."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in s3_server.env({}).items():
        monkeypatch.setenv(name, value)
    return s3_server


def _bucket(server: S3Server, name: str) -> str:
    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.key_id,
        aws_secret_access_key=server.secret,
        region_name="us-east-1",
    )
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=name)
    return name


def test_an_existing_bucket_and_a_new_prefix_are_accepted(aws_env: S3Server) -> None:
    bucket = _bucket(aws_env, "connect-ok")
    check_bucket(S3Location(bucket, "never/written/before"))


def test_a_missing_bucket_is_refused_and_never_created(aws_env: S3Server) -> None:
    with pytest.raises(ConfigError, match=r"bucket 'no-such-bucket' does not exist .*never creates buckets"):
        check_bucket(S3Location("no-such-bucket", "backup"))
    s3 = boto3.client("s3")
    assert "no-such-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_wrong_credentials_are_one_line(aws_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = _bucket(aws_env, "connect-creds")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ConfigError, match=r"refused these credentials") as caught:
        check_bucket(S3Location(bucket, "backup"))
    assert "not-the-secret" not in str(caught.value)


def test_no_credentials_at_all_is_one_line(
    aws_env: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=r"no AWS credentials"):
        check_bucket(S3Location("connect-ok", "backup"))


def test_a_profile_is_read_from_the_aws_files(
    aws_env: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = _bucket(aws_env, "connect-profile")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[nas]\naws_access_key_id = {aws_env.key_id}\naws_secret_access_key = {aws_env.secret}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    check_bucket(S3Location(bucket, "backup"), profile="nas")
    with pytest.raises(ConfigError, match=r"AWS profile 'other' is not in"):
        check_bucket(S3Location(bucket, "backup"), profile="other")


def test_an_endpoint_that_is_not_there_is_refused_quickly(
    aws_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=rf"cannot reach http://127.0.0.1:{port}"):
        check_bucket(S3Location("connect-ok", "backup"))
    assert time.monotonic() - started < 60  # a hang guard: a refused connection is answered at once
