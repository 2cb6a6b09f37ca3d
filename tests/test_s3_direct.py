"""Small PUTs signed by botocore and sent by urllib3, against a real SeaweedFS.

The direct path must store exactly what the boto3 client would (bytes,
ETag, metadata, type) under every awkward key, and hand any request it
cannot complete to the client: a refusal turns it off for the rest of the
run, a connection that fails only for that request.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator

import botocore.exceptions
import pytest
import urllib3
from s3util import new_bucket, s3_client
from servers import S3Server, free_port

from synchro.endpoints.s3.connect import client, session
from synchro.endpoints.s3.direct import DirectPut

KEYS = ["p/a b.txt", "p/ünï cödé", "p/%+?#&;'\".txt", "p/-leading", "p/~tilde/x=y,z", "p/sp ace/in folder"]
META = {"mtime": "1577934245.123456789", "mode": "100644", "uid": "0", "gid": "0"}


@pytest.fixture
def aws(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in s3_server.env({}).items():
        monkeypatch.setenv(name, value)
    yield s3_server


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def direct(bucket: str) -> DirectPut:
    made = session()
    return DirectPut(client(using=made), made.get_credentials(), bucket, connections=2)


def test_direct_puts_store_what_the_client_would_under_awkward_keys(aws: S3Server) -> None:
    bucket = new_bucket(aws)
    put = direct(bucket)
    assert put.usable
    for index, key in enumerate(KEYS):
        body = f"body {index} of {key}".encode()
        etag = put.put(key, body, md5=md5_b64(body), metadata=META, content_type="text/plain; charset=utf-8")
        assert etag == hashlib.md5(body).hexdigest()
    assert put.fallbacks == 0  # every one went the direct way
    s3 = s3_client(aws)
    for index, key in enumerate(KEYS):
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == f"body {index} of {key}".encode()
        assert got["Metadata"] == META
        assert got["ContentType"] == "text/plain; charset=utf-8"


def test_a_body_that_does_not_match_its_md5_is_refused_by_the_server(aws: S3Server) -> None:
    bucket = new_bucket(aws)
    put = direct(bucket)
    with pytest.raises(botocore.exceptions.ClientError, match=r"BadDigest|InvalidDigest"):
        put.put("p/x", b"what was read", md5=md5_b64(b"something else"), metadata={}, content_type="a/b")
    # Refused by the server: not stored, and from now on the client does the PUTs.
    assert not put.usable and put.fallbacks == 1
    assert s3_client(aws).list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_refused_direct_put_goes_through_the_client_and_turns_the_direct_way_off(aws: S3Server) -> None:
    from botocore.credentials import Credentials

    bucket = new_bucket(aws)
    made = session()
    # Signed with a wrong secret: the server refuses the direct request; the client's own is right.
    put = DirectPut(client(using=made), Credentials(aws.key_id, "not the secret"), bucket, connections=2)
    body = b"through the client"
    assert put.put("p/one", body, md5=md5_b64(body), metadata=META, content_type="a/b") == (
        hashlib.md5(body).hexdigest()
    )
    assert not put.usable and put.fallbacks == 1
    put.put("p/two", body, md5=md5_b64(body), metadata=META, content_type="a/b")
    assert put.fallbacks == 2
    got = s3_client(aws).get_object(Bucket=bucket, Key="p/one")
    assert got["Body"].read() == body and got["Metadata"] == META


def test_a_direct_put_that_cannot_connect_is_sent_again_by_the_client(aws: S3Server) -> None:
    bucket = new_bucket(aws)
    put = direct(bucket)
    # Nothing listens there: the direct request fails to connect, the client's reaches the server.
    put.http = urllib3.connection_from_url(f"http://127.0.0.1:{free_port()}", retries=False)
    body = b"sent again"
    assert put.put("p/x", body, md5=md5_b64(body), metadata={}, content_type="a/b") == (
        hashlib.md5(body).hexdigest()
    )
    # Only this request: a connection that failed says nothing of the next one.
    assert put.usable and put.fallbacks == 1
    assert s3_client(aws).get_object(Bucket=bucket, Key="p/x")["Body"].read() == body


def test_the_client_waits_for_100_continue_only_before_large_bodies(aws: S3Server) -> None:
    bucket = new_bucket(aws)
    s3 = client()
    expects: list[object] = []
    s3.meta.events.register(
        "before-send.s3", lambda request, **_: expects.append(request.headers.get("Expect"))
    )
    s3.put_object(Bucket=bucket, Key="small", Body=b"x" * 4000)
    s3.put_object(Bucket=bucket, Key="large", Body=b"x" * (3 << 20))
    assert expects == [None, b"100-continue"]


def test_a_proxy_in_the_environment_leaves_the_puts_to_the_client(
    aws: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = new_bucket(aws)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    # botocore would go through the proxy; the direct way would not: it stays off.
    assert not direct(bucket).usable
