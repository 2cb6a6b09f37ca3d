from __future__ import annotations
import asyncio, subprocess
from pathlib import Path
import pytest
from servers import sshd, s3_server, SshServer, S3Server  # noqa

def test_sshd(sshd: SshServer, tmp_path: Path) -> None:
    import asyncssh
    (tmp_path / "x").write_text("hi")
    async def go() -> list[str]:
        async with asyncssh.connect("127.0.0.1", port=sshd.port, username="root",
                client_keys=[str(sshd.home / ".ssh/id_ed25519")],
                known_hosts=str(sshd.home / ".ssh/known_hosts"), config=[str(sshd.home/".ssh/config")]) as conn:
            async with conn.start_sftp_client() as sftp:
                print(sftp.supports_remote_copy if hasattr(sftp,'supports_remote_copy') else '')
                return sorted(await sftp.listdir(str(tmp_path)))
    assert "x" in asyncio.run(go())
    r = subprocess.run(["ssh", "-F", str(sshd.home/".ssh/config"), "-o", f"UserKnownHostsFile={sshd.home/'.ssh/known_hosts'}", "-o", "BatchMode=yes", sshd.alias, "echo", "ok"], capture_output=True, text=True, env=sshd.env())
    assert r.stdout.strip() == "ok", r.stderr

def test_s3(s3_server: S3Server) -> None:
    import boto3
    c = boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id=s3_server.key_id, aws_secret_access_key=s3_server.secret, region_name="us-east-1")
    c.create_bucket(Bucket="bucket-one")
    c.put_object(Bucket="bucket-one", Key="a/b.txt", Body=b"hello", Metadata={"mtime": "1.5"})
    h = c.head_object(Bucket="bucket-one", Key="a/b.txt")
    assert h["Metadata"]["mtime"] == "1.5"
    assert [o["Key"] for o in c.list_objects_v2(Bucket="bucket-one")["Contents"]] == ["a/b.txt"]
