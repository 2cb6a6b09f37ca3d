"""The S3 server fixture is a real object store that keeps what it is given (user metadata included)."""

from __future__ import annotations

import boto3
from servers import S3Server


def test_the_s3_server_keeps_objects_and_their_metadata(s3_server: S3Server) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.key_id,
        aws_secret_access_key=s3_server.secret,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="smoke")
    client.put_object(Bucket="smoke", Key="a/b.txt", Body=b"hello", Metadata={"mtime": "1.5"})
    assert client.head_object(Bucket="smoke", Key="a/b.txt")["Metadata"]["mtime"] == "1.5"
    assert [o["Key"] for o in client.list_objects_v2(Bucket="smoke")["Contents"]] == ["a/b.txt"]
