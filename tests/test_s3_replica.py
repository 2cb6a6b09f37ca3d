"""A replica in an S3 bucket (``s3://bucket/prefix``), against a real SeaweedFS.

Through the command (``python -m synchro`` with the server's AWS settings),
the Invoke tasks over an INI, and the API (the AWS_* variables of this
process): the layout rclone reads, the no-op second run, names, prefixes,
dry runs, the guard, excludes, --checksum, a bucket changed behind
synchro's back, the lock, unfinished uploads, a server stopped
mid-upload, and rclone reading what synchro wrote (and the other way).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from s3util import (
    files_of,
    head,
    keys,
    mirror_of,
    new_bucket,
    objects,
    run_command,
    s3_client,
    wait_writable,
)
from servers import S3Server, Weed
from treeutil import log_messages

import synchro
from synchro import Hooks, Synchro
from synchro.endpoints.s3.connect import S3Location, client
from synchro.endpoints.s3.index import loads
from synchro.endpoints.s3.layout import format_mtime, parse_mtime
from synchro.endpoints.s3.lock import S3Lock
from synchro.errors import ExitCode, ReplicaLocked
from synchro.pipeline.plan import Action

NAMES = ["a b.txt", "ünï cödé.txt", "%+?#&;'\".txt", "-leading", "sp ace/in folder.txt"]
T0 = 1_577_934_245_123_456_789


def make_tree(root: Path) -> Path:
    """A tree with awkward names, a nested empty folder, a link, and exact times."""
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    for index, name in enumerate(NAMES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content {index} of {name}")
        os.utime(path, ns=(T0 + index, T0 + index))
    (root / "sub" / "x.bin").write_bytes(bytes(range(256)) * 10)
    os.chmod(root / "sub" / "x.bin", 0o600)
    os.symlink("../a b.txt", root / "sub" / "link")
    return root


def url(bucket: str, prefix: str = "backup") -> str:
    return f"s3://{bucket}/{prefix}"


def run(
    server: S3Server, src: Path, replica: str, logs: Path, *args: object
) -> subprocess.CompletedProcess[str]:
    return run_command(server, src, replica, "24", logs, "--once", *args)


def summary_of(result: subprocess.CompletedProcess[str]) -> str:
    return next(line for line in result.stdout.splitlines() if " SUMMARY " in line)


def snapshot(server: S3Server, bucket: str) -> dict[str, tuple[str, bytes]]:
    """Every object of the bucket, its ETag and bytes."""
    return {key: (obj.etag, obj.data) for key, obj in objects(server, bucket, metadata=False).items()}


@pytest.fixture
def aws_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The server's endpoint and keys as this process's standard AWS settings (the API's view)."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in s3_server.env({}).items():
        monkeypatch.setenv(name, value)
    return s3_server


# --- the command: layout, metadata, no-op, names, prefixes ---------------------------------


def test_the_command_mirrors_into_rclones_layout_and_a_second_run_uploads_nothing(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src")
    bucket = new_bucket(s3_server)
    first = run(s3_server, src, url(bucket), tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert mirror_of(s3_server, bucket, "backup") == files_of(src)

    held = objects(s3_server, bucket, "backup/")
    assert held["backup/a b.txt"].metadata["mtime"] == "1577934245.123456789"
    assert held["backup/a b.txt"].metadata["mode"] == "100644"
    assert held["backup/sub/x.bin"].metadata["mode"] == "100600"
    assert held["backup/sub/link.rclonelink"].data == b"../a b.txt"
    assert held["backup/sub/link.rclonelink"].metadata["mode"] == "120777"
    # What synchro keeps for itself is beside the prefix, never in it.
    assert keys(s3_server, bucket, "backup.synchro/") == ["backup.synchro/index"]

    second = run(s3_server, src, url(bucket), tmp_path)
    assert second.returncode == 0
    assert "added=0 overwritten=0 deleted=0" in summary_of(second)
    assert " bytes=0 " in summary_of(second)

    # A change, an addition and a deletion: exactly those.
    (src / "a b.txt").write_text("changed")
    (src / "new.txt").write_text("new")
    (src / "-leading").unlink()
    third = run(s3_server, src, url(bucket), tmp_path)
    assert third.returncode == 0
    assert [line.split(" ", 2)[2] for line in third.stdout.splitlines()[2:-1]] == [
        "DELETED -leading",
        "OVERWRITTEN a b.txt",
        "ADDED new.txt",
    ]
    assert mirror_of(s3_server, bucket, "backup") == files_of(src)


def test_a_prefix_never_touches_its_neighbours(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket(s3_server)
    s3 = s3_client(s3_server)
    for key in ("backup2/keep.txt", "backup.txt", "backupx", "other/backup/x"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"not ours")
    s3.put_object(Bucket=bucket, Key="backup/stale.txt", Body=b"deleted by the mirror")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    result = run(s3_server, src, url(bucket), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DELETED stale.txt" in result.stdout
    assert keys(s3_server, bucket) == [
        "backup.synchro/index",
        "backup.txt",
        "backup/f",
        "backup2/keep.txt",
        "backupx",
        "other/backup/x",
    ]


def test_mtime_is_formatted_from_integer_nanoseconds() -> None:
    assert format_mtime(1577934245_123456789) == "1577934245.123456789"
    assert format_mtime(1577934245_000000001) == "1577934245.000000001"
    assert format_mtime(1577934245_000000000) == "1577934245"
    # rclone drops trailing zeros, and writes the sign before the whole number.
    assert format_mtime(1577934245_120000000) == "1577934245.12"
    assert format_mtime(-500_000_000) == "-0.5"
    assert format_mtime(-1_000_000_001) == "-1.000000001"
    for ns in (1577934245_123456789, 1577934245_120000000, 1, 0, -500_000_000, -1_000_000_001, 2**62 + 7):
        assert parse_mtime(format_mtime(ns)) == ns
    assert parse_mtime("1577934245.1") == 1577934245_100000000
    assert parse_mtime("garbage") is None


# --- what the index knows, and what it does not ----------------------------------------------


def test_a_bucket_changed_behind_synchros_back_is_noticed(s3_server: S3Server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("same-size.txt", "other-size.txt", "gone.txt"):
        (src / name).write_text("original")
        os.utime(src / name, ns=(T0, T0))
    bucket = new_bucket(s3_server)
    assert run(s3_server, src, url(bucket), tmp_path).returncode == 0
    s3 = s3_client(s3_server)
    # Same size and the same metadata, other bytes: only the ETag tells.
    metadata = head(s3_server, bucket, "backup/same-size.txt")["Metadata"]
    s3.put_object(Bucket=bucket, Key="backup/same-size.txt", Body=b"ORIGINAL", Metadata=metadata)
    s3.put_object(Bucket=bucket, Key="backup/other-size.txt", Body=b"longer than before")
    s3.delete_object(Bucket=bucket, Key="backup/gone.txt")

    # Without --checksum, a file of the same size and time is the same file
    # (as everywhere); the others are copied again.
    result = run(s3_server, src, url(bucket), tmp_path)
    assert result.returncode == 0
    assert "OVERWRITTEN other-size.txt" in result.stdout
    assert "ADDED gone.txt" in result.stdout
    assert "same-size.txt" not in result.stdout
    # --checksum compares the bytes with the object's MD5.
    result = run(s3_server, src, url(bucket), tmp_path, "--checksum")
    assert result.returncode == 0
    assert "OVERWRITTEN same-size.txt" in result.stdout
    assert mirror_of(s3_server, bucket, "backup") == files_of(src)
    assert "same-size.txt" not in run(s3_server, src, url(bucket), tmp_path, "--checksum").stdout


def test_the_index_is_outside_the_prefix_and_a_lost_index_costs_only_requests(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src")
    bucket = new_bucket(s3_server)
    assert run(s3_server, src, url(bucket), tmp_path).returncode == 0
    index = loads(s3_client(s3_server).get_object(Bucket=bucket, Key="backup.synchro/index")["Body"].read())
    assert index.objects["a b.txt"].mtime_ns == T0
    assert index.objects["sub/link.rclonelink"].target == "../a b.txt"
    s3_client(s3_server).delete_object(Bucket=bucket, Key="backup.synchro/index")
    again = run(s3_server, src, url(bucket), tmp_path)
    assert again.returncode == 0
    # Files and links are described by their metadata; only the folders'
    # times (kept in the index alone) are set again, without an upload.
    assert "added=0 overwritten=0 deleted=0" in summary_of(again)
    assert " bytes=0 " in summary_of(again)


# --- dry run, guard, excludes ----------------------------------------------------------------


def test_a_dry_run_changes_nothing_in_the_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    bucket = new_bucket(s3_server)
    s3_client(s3_server).put_object(Bucket=bucket, Key="backup/stale", Body=b"x")
    dry = run(s3_server, src, url(bucket), tmp_path, "--dry-run")
    assert dry.returncode == 0
    assert "DELETED stale" in dry.stdout and "ADDED a b.txt" in dry.stdout
    assert keys(s3_server, bucket) == ["backup/stale"]  # no lock, no index, nothing uploaded

    assert run(s3_server, src, url(bucket), tmp_path).returncode == 0
    (src / "a b.txt").write_text("changed")
    before = snapshot(s3_server, bucket)
    dry = run(s3_server, src, url(bucket), tmp_path, "--dry-run")
    assert "OVERWRITTEN a b.txt" in dry.stdout
    assert snapshot(s3_server, bucket) == before


def test_the_deletion_guard_refuses_and_deletes_nothing(s3_server: S3Server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for n in range(12):
        (src / f"f{n}").write_text(str(n))
    bucket = new_bucket(s3_server)
    assert run(s3_server, src, url(bucket), tmp_path).returncode == 0
    for n in range(10):
        (src / f"f{n}").unlink()
    before = snapshot(s3_server, bucket)
    refused = run(s3_server, src, url(bucket), tmp_path)
    assert refused.returncode == ExitCode.GUARD
    assert "deletion guard: this run would delete 10 of the replica's 12 files" in refused.stdout
    assert {k: v for k, v in snapshot(s3_server, bucket).items() if not k.endswith("/lock")} == before
    allowed = run(s3_server, src, url(bucket), tmp_path, "--max-delete", "100%")
    assert allowed.returncode == 0
    assert mirror_of(s3_server, bucket, "backup") == files_of(src)


def test_excluded_entries_stay_out_and_are_kept_unless_delete_excluded(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "cache").mkdir(parents=True)
    (src / "keep.txt").write_text("k")
    (src / "skip.tmp").write_text("s")
    (src / "cache" / "c").write_text("c")
    bucket = new_bucket(s3_server)
    assert (
        run(s3_server, src, url(bucket), tmp_path, "--exclude", "*.tmp", "--exclude", "cache/").returncode
        == 0
    )
    assert mirror_of(s3_server, bucket, "backup") == {"keep.txt": b"k"}
    s3_client(s3_server).put_object(Bucket=bucket, Key="backup/old.tmp", Body=b"o")
    assert run(s3_server, src, url(bucket), tmp_path, "--exclude", "*.tmp").returncode == 0
    assert "old.tmp" in mirror_of(s3_server, bucket, "backup")
    assert (
        run(s3_server, src, url(bucket), tmp_path, "--exclude", "*.tmp", "--delete-excluded").returncode == 0
    )
    assert "old.tmp" not in mirror_of(s3_server, bucket, "backup")


# --- refusals ----------------------------------------------------------------------------------


def test_a_missing_bucket_and_a_bad_url_are_one_line_refusals(s3_server: S3Server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    missing = run(s3_server, src, "s3://no-such-bucket-here/backup", tmp_path)
    assert missing.returncode == ExitCode.USAGE
    assert "bucket 'no-such-bucket-here' does not exist" in missing.stdout
    assert "Traceback" not in missing.stderr
    bad = run(s3_server, src, "s3://bucket-only", tmp_path)
    assert bad.returncode == ExitCode.USAGE
    assert bad.stderr.count("\n") == 1 and "name a prefix in the bucket" in bad.stderr
    assert not (tmp_path / "s3:").exists()


# --- the lock and a dead run's leftovers --------------------------------------------------------


def test_a_live_lock_refuses_a_second_run_and_a_stale_one_is_taken_over(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    bucket = new_bucket(s3_server)
    s3 = s3_client(s3_server)
    live = {"host": "elsewhere", "pid": 1, "token": "t", "refreshed": time.time()}
    s3.put_object(Bucket=bucket, Key="backup.synchro/lock", Body=json.dumps(live).encode())
    locked = run(s3_server, src, url(bucket), tmp_path)
    assert locked.returncode == ExitCode.LOCKED
    assert f"replica s3://{bucket}/backup is locked by another synchro run" in locked.stdout
    assert mirror_of(s3_server, bucket, "backup") == {}

    dead = dict(live, refreshed=time.time() - 3600)
    s3.put_object(Bucket=bucket, Key="backup.synchro/lock", Body=json.dumps(dead).encode())
    taken = run(s3_server, src, url(bucket), tmp_path)
    assert taken.returncode == 0, taken.stdout
    assert f"WARNING the lock of s3://{bucket}/backup was a dead run's: taken over" in taken.stdout
    assert mirror_of(s3_server, bucket, "backup") == {"f": b"f"}
    assert "backup.synchro/lock" not in keys(s3_server, bucket)  # released at the end


def test_the_lock_is_a_conditional_write_refreshed_by_its_holder(aws_env: S3Server) -> None:
    bucket = new_bucket(aws_env)
    where = S3Location(bucket, "backup")
    now = [1000.0]
    first = S3Lock(client(), where, clock=lambda: now[0], refresh_seconds=3600)
    with first:
        second = S3Lock(client(), where, clock=lambda: now[0])
        with pytest.raises(ReplicaLocked):
            second.__enter__()
        # The holder refreshes it: still alive for the other one 20 minutes later.
        now[0] += 20 * 60
        assert first.refresh()
        with pytest.raises(ReplicaLocked):
            second.__enter__()
        # Not refreshed for 15 minutes: taken over; the old holder's refresh now fails.
        now[0] += 15 * 60
        with second:
            assert not first.refresh()
            assert (
                json.loads(
                    s3_client(aws_env).get_object(Bucket=bucket, Key="backup.synchro/lock")["Body"].read()
                )["token"]
                == second.token
            )
    assert keys(aws_env, bucket) == []


def test_an_unfinished_multipart_upload_of_a_dead_run_is_aborted(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket(s3_server)
    s3 = s3_client(s3_server)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="backup/big")
    s3.upload_part(
        Bucket=bucket, Key="backup/big", UploadId=upload["UploadId"], PartNumber=1, Body=b"p" * 100
    )
    src = tmp_path / "src"
    src.mkdir()
    result = run(s3_server, src, url(bucket), tmp_path)
    assert result.returncode == 0
    assert "CLEANED the unfinished upload of big, left by an earlier run, was aborted" in result.stdout
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- large files ---------------------------------------------------------------------------------


def test_a_large_file_goes_up_in_parts_with_its_md5_for_checksum(s3_server: S3Server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(20 << 20) + b"tail"
    (src / "big").write_bytes(data)
    bucket = new_bucket(s3_server)
    assert run(s3_server, src, url(bucket), tmp_path).returncode == 0
    stored = head(s3_server, bucket, "backup/big")
    assert stored["ETag"].strip('"').endswith("-2")  # two parts
    assert stored["ContentLength"] == len(data)
    assert s3_client(s3_server).get_object(Bucket=bucket, Key="backup/big")["Body"].read() == data
    again = run(s3_server, src, url(bucket), tmp_path, "--checksum")
    assert "added=0 overwritten=0" in summary_of(again) and " bytes=0 " in summary_of(again)


# --- a server that goes away mid-run ------------------------------------------------------------


def test_a_server_stopped_mid_upload_leaves_no_partial_object_and_the_next_run_converges(
    own_weed: Weed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = own_weed.start()
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in server.env({}).items():
        monkeypatch.setenv(name, value)
    # Fail fast once it is gone: the test waits for no retries.
    monkeypatch.setattr("synchro.endpoints.s3.connect.ATTEMPTS", 1)
    monkeypatch.setattr("synchro.endpoints.s3.connect.CONNECT_SECONDS", 2.0)
    bucket = new_bucket(server)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a-small").write_text("small")
    (src / "big").write_bytes(os.urandom(40 << 20))
    (src / "later").mkdir()  # a folder's files come before its sub-folders: this one after "big"
    (src / "later" / "after").write_text("after")
    stopped: list[int] = []

    def stop_server(action: Action, copied: int) -> None:
        # After the first part of the large file is up: the server goes away.
        if action.name == "big" and copied >= 16 << 20 and not stopped:
            stopped.append(copied)
            own_weed.stop()

    logs = tmp_path / "logs"
    report = synchro.mirror(src, url(bucket), logpath=logs, hooks=Hooks(during_copy=stop_server))
    assert stopped
    assert report.exit_code == ExitCode.FAILED
    assert report.added == ["a-small"]
    failed = dict(report.failed)
    assert "big" in failed and "later/" in failed and "later/after" in failed
    assert "the S3 endpoint cannot be reached" in failed["big"]
    assert any(line.startswith("FAILED big: ") for line in log_messages(logs))

    server = own_weed.start()
    wait_writable(server, bucket)
    # The lock could not be released: this process (alive: it is the test) holds it
    # until it goes stale. The next run comes later, or from a process that is gone.
    monkeypatch.setattr("synchro.endpoints.s3.lock.STALE_SECONDS", 0.0)
    # Just after a restart, SeaweedFS may answer "volume not found" for a moment: retries cover it.
    monkeypatch.setattr("synchro.endpoints.s3.connect.ATTEMPTS", 5)
    assert "backup/big" not in keys(server, bucket)  # no partial object under the real key
    report = synchro.mirror(src, url(bucket), logpath=logs)
    assert report.exit_code == 0, report.failed
    assert sorted(report.added) == ["big", "later/", "later/after"]
    # The parts the first run could not abort (the server was gone) are aborted now.
    assert "CLEANED the unfinished upload of big, left by an earlier run, was aborted" in log_messages(logs)
    assert mirror_of(server, bucket, "backup") == files_of(src)
    assert s3_client(server).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- the API and the tasks -------------------------------------------------------------------------


def test_the_api_mirrors_with_the_standard_aws_settings(aws_env: S3Server, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    bucket = new_bucket(aws_env)
    report = synchro.mirror(src, url(bucket, "api/nested"), logpath=tmp_path)
    assert report.exit_code == 0
    assert mirror_of(aws_env, bucket, "api/nested") == files_of(src)
    with Synchro(tmp_path, quiet=True) as api:
        api.configure(src, url(bucket, "api/nested"))
        second = api.run()
    assert (second.exit_code, second.added, second.overwritten, second.bytes_copied) == (0, [], [], 0)


def test_the_api_reads_a_profile(aws_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[nas]\naws_access_key_id = {aws_env.key_id}\naws_secret_access_key = {aws_env.secret}\n"
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    bucket = new_bucket(aws_env)
    assert synchro.mirror(src, url(bucket), s3_profile="nas").exit_code == 0
    assert mirror_of(aws_env, bucket, "backup") == {"f": b"f"}
    assert synchro.mirror(src, url(bucket), s3_profile="nope").exit_code == ExitCode.USAGE


INV = Path(sys.executable).parent / "inv"
REPO = Path(synchro.__file__).resolve().parent.parent


def inv(server: S3Server, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = server.env({k: v for k, v in os.environ.items() if not k.startswith(("SYNCHRO_", "INVOKE_"))})
    env.update(PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [str(INV), "-r", str(REPO), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_tasks_back_up_to_a_bucket_and_report_its_status(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "photos")
    bucket = new_bucket(s3_server)
    (tmp_path / "backups.ini").write_text(
        f"[DEFAULT]\nlogpath = .\n\n[photos]\nsource = photos\nreplica = s3://{bucket}/photos\n",
        encoding="utf-8",
    )
    result = inv(s3_server, tmp_path, "backup", "--pair", "photos")
    assert result.returncode == 0, result.stdout + result.stderr
    assert mirror_of(s3_server, bucket, "photos") == files_of(src)
    again = inv(s3_server, tmp_path, "backup", "--pair", "photos")
    assert again.returncode == 0 and "added=0 overwritten=0 deleted=0" in again.stdout
    status = inv(s3_server, tmp_path, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"photos"' in status.stdout
    pairs = inv(s3_server, tmp_path, "pairs")
    assert f"replica  s3://{bucket}/photos" in pairs.stdout


def test_an_ini_names_the_profile(s3_server: S3Server, tmp_path: Path) -> None:
    src = tmp_path / "docs"
    src.mkdir()
    (src / "d").write_text("d")
    bucket = new_bucket(s3_server)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[nas]\naws_access_key_id = {s3_server.key_id}\naws_secret_access_key = {s3_server.secret}\n"
    )
    (tmp_path / "backups.ini").write_text(
        f"[docs]\nsource = docs\nreplica = s3://{bucket}/docs\nlogpath = .\ns3_profile = nas\n",
        encoding="utf-8",
    )
    env_server = S3Server(s3_server.endpoint, "wrong", "wrong", s3_server.process)
    result = subprocess.run(
        [str(INV), "-r", str(REPO), "backup", "--pair", "docs"],
        cwd=tmp_path,
        env=env_server.env(dict(os.environ))
        | {
            "PYTHONPATH": str(REPO),
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
            "AWS_CONFIG_FILE": str(tmp_path / "config"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The profile named in the INI, not the (wrong) keys of the environment.
    assert result.returncode == 0, result.stdout + result.stderr
    assert mirror_of(s3_server, bucket, "docs") == {"d": b"d"}
    assert all("wrong" not in log.read_text() for log in (tmp_path / "LOGS").glob("LOG-*.txt"))


# --- rclone reads what synchro wrote, and the other way ------------------------------------------


def rclone(server: S3Server, *args: str) -> subprocess.CompletedProcess[str]:
    """Debian's rclone against the server, configured by its environment only (no AWS_* of this machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(
        RCLONE_CONFIG="/dev/null",
        RCLONE_S3_PROVIDER="Other",
        RCLONE_S3_ENDPOINT=server.endpoint,
        RCLONE_S3_ACCESS_KEY_ID=server.key_id,
        RCLONE_S3_SECRET_ACCESS_KEY=server.secret,
    )
    return subprocess.run(
        ["rclone", "--contimeout", "5s", "--retries", "1", "--low-level-retries", "2", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


needs_rclone = pytest.mark.skipif(
    shutil.which("rclone") is None, reason="rclone is not installed (apt: rclone)"
)


@needs_rclone
def test_rclone_finds_nothing_to_do_after_synchro(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / "big").write_bytes(os.urandom(17 << 20))  # a multipart upload too
    bucket = new_bucket(s3_server)
    assert run(s3_server, src, url(bucket), tmp_path).returncode == 0
    checked = rclone(s3_server, "sync", "--dry-run", "--links", "-v", str(src), f":s3:{bucket}/backup")
    assert checked.returncode == 0, checked.stderr
    assert "There was nothing to transfer" in checked.stderr
    assert "Skipped" not in checked.stderr and "NOTICE" not in checked.stderr.replace("NOTICE: \n", "")
    # rclone reads the links back as links.
    back = tmp_path / "back"
    assert rclone(s3_server, "copy", "--links", f":s3:{bucket}/backup", str(back)).returncode == 0
    assert os.readlink(back / "sub" / "link") == "../a b.txt"
    assert (back / "a b.txt").stat().st_mtime_ns == T0


@needs_rclone
def test_objects_get_the_content_type_and_metadata_keys_rclone_gives_them(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ["a.txt", "b.html", "c.jpg", "d.dat", "e", "f.tar.gz"]:
        (src / name).write_text(name)
    (src / "big.txt").write_bytes(os.urandom(17 << 20))  # a multipart upload
    os.symlink("a.txt", src / "link")
    ours, theirs = new_bucket(s3_server), new_bucket(s3_server)
    assert run(s3_server, src, url(ours), tmp_path).returncode == 0
    made = rclone(s3_server, "sync", "--links", "--metadata", str(src), f":s3:{theirs}/backup")
    assert made.returncode == 0, made.stderr
    # A metadata-only change is a server-side copy: it keeps the type.
    os.utime(src / "a.txt", ns=(T0, T0))
    assert run(s3_server, src, url(ours), tmp_path).returncode == 0
    for name in ["a.txt", "b.html", "c.jpg", "d.dat", "e", "f.tar.gz", "big.txt", "link.rclonelink"]:
        mine, rclones = head(s3_server, ours, f"backup/{name}"), head(s3_server, theirs, f"backup/{name}")
        assert mine["ContentType"] == rclones["ContentType"], name
        # The same metadata, as rclone --metadata writes it (rclone adds atime and btime; synchro
        # the MD5 of a multipart upload, under rclone's own key for it).
        assert mine["Metadata"].keys() - {"md5chksum"} == rclones["Metadata"].keys() - {"atime", "btime"}, (
            name
        )
        if name != "a.txt":  # its time changed since
            kept = {key: value for key, value in mine["Metadata"].items() if key != "md5chksum"}
            assert kept == {key: rclones["Metadata"][key] for key in kept}, name


@needs_rclone
def test_a_bucket_made_by_rclone_is_in_sync_for_synchro(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    bucket = new_bucket(s3_server)
    made = rclone(
        s3_server,
        "sync",
        "--links",
        "--metadata",
        "--create-empty-src-dirs",
        str(src),
        f":s3:{bucket}/backup",
    )
    assert made.returncode == 0, made.stderr
    result = run(s3_server, src, url(bucket), tmp_path)
    assert result.returncode == 0
    # Every file and link is in sync (its mtime read from rclone's metadata);
    # rclone 1.60 keeps no empty folders in a bucket: synchro adds their markers.
    assert [line.split(" ", 2)[2] for line in result.stdout.splitlines()[2:-1]] == [
        "ADDED empty/",
        "ADDED sub/deep/",
    ]
    assert "overwritten=0 deleted=0" in summary_of(result) and " bytes=0 " in summary_of(result)
    again = run(s3_server, src, url(bucket), tmp_path)
    assert "added=0 overwritten=0 deleted=0" in summary_of(again)


# --- verify and restore from the bucket ------------------------------------------------------------


def test_verify_reads_every_byte_and_finds_what_differs(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    bucket = new_bucket(s3_server)
    assert run(s3_server, src, url(bucket), tmp_path).returncode == 0
    exact = run(s3_server, src, url(bucket), tmp_path, "--verify")
    assert exact.returncode == 0, exact.stdout + exact.stderr
    assert "SUMMARY compared=" in exact.stdout and "missing=0 extra=0 content=0 metadata=0" in exact.stdout
    before = snapshot(s3_server, bucket)

    s3 = s3_client(s3_server)
    # A flipped byte behind synchro's back, with the metadata put back; an extra object; one gone.
    held = head(s3_server, bucket, "backup/sub/x.bin")
    flipped = bytearray(s3.get_object(Bucket=bucket, Key="backup/sub/x.bin")["Body"].read())
    flipped[100] ^= 1
    s3.put_object(Bucket=bucket, Key="backup/sub/x.bin", Body=bytes(flipped), Metadata=held["Metadata"])
    s3.put_object(Bucket=bucket, Key="backup/extra.txt", Body=b"e")
    s3.delete_object(Bucket=bucket, Key="backup/-leading")
    found = run(s3_server, src, url(bucket), tmp_path, "--verify")
    assert found.returncode == ExitCode.FAILED
    lines = [line for line in found.stdout.splitlines() if not line.startswith("SUMMARY")]
    assert "MISSING -leading" in lines
    assert "EXTRA extra.txt" in lines
    assert any(line.startswith("CONTENT sub/x.bin: bytes differ") for line in lines)
    assert len(lines) == 3, lines
    # Verifying wrote nothing (no lock, no index).
    after = snapshot(s3_server, bucket)
    assert {k: v for k, v in after.items() if k.startswith("backup.synchro/")} == {
        k: v for k, v in before.items() if k.startswith("backup.synchro/")
    }


def test_inv_restore_brings_back_files_links_folders_and_times(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "photos")
    bucket = new_bucket(s3_server)
    (tmp_path / "backups.ini").write_text(
        f"[DEFAULT]\nlogpath = .\n\n[photos]\nsource = photos\nreplica = s3://{bucket}/photos\n",
        encoding="utf-8",
    )
    assert inv(s3_server, tmp_path, "backup", "--pair", "photos").returncode == 0
    verified = inv(s3_server, tmp_path, "verify", "--pair", "photos")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    target = tmp_path / "restored"
    restored = inv(s3_server, tmp_path, "restore", "--pair", "photos", "--to", str(target))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert files_of(target) == files_of(src)
    assert os.readlink(target / "sub" / "link") == "../a b.txt"
    assert (target / "a b.txt").stat().st_mtime_ns == T0
    assert (target / "sub" / "x.bin").stat().st_mode & 0o777 == 0o600
    assert (target / "empty").is_dir()
    assert (target / "sub").stat().st_mtime_ns == (src / "sub").stat().st_mtime_ns

    # Nothing that exists is replaced without --force; the source needs --force.
    again = inv(s3_server, tmp_path, "restore", "--pair", "photos", "--to", str(target))
    assert again.returncode == ExitCode.USAGE and "add --force" in again.stderr
    one = inv(
        s3_server,
        tmp_path,
        "restore",
        "--pair",
        "photos",
        "--path",
        "sub/x.bin",
        "--to",
        str(tmp_path / "one"),
    )
    assert one.returncode == 0
    assert (tmp_path / "one" / "sub" / "x.bin").read_bytes() == (src / "sub" / "x.bin").read_bytes()
    into_source = inv(s3_server, tmp_path, "restore", "--pair", "photos", "--to", str(src))
    assert into_source.returncode == ExitCode.USAGE


# --- versions: server-side copies before a replacement or a deletion --------------------------------


def test_replaced_and_deleted_objects_are_copied_into_the_versions_prefix_first(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_text("version 1")
    (src / "d" / "gone.txt").write_text("deleted later")
    os.utime(src / "a.txt", ns=(T0, T0))
    bucket = new_bucket(s3_server)
    kept_url = f"s3://{bucket}/backup-versions"  # not "*.versions": SeaweedFS hides such keys
    first = run(s3_server, src, url(bucket), tmp_path, "--versions", kept_url, "--keep-versions", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert keys(s3_server, bucket, "backup-versions/") == []

    (src / "a.txt").write_text("version 2")
    (src / "d" / "gone.txt").unlink()
    (src / "d").rmdir()
    second = run(s3_server, src, url(bucket), tmp_path, "--versions", kept_url, "--keep-versions", "2")
    assert second.returncode == 0, second.stdout + second.stderr
    (stamp,) = {line.rsplit("/", 2)[1] for line in second.stdout.splitlines() if " KEPT " in line}
    kept = [line.split(" ", 3)[3] for line in second.stdout.splitlines() if " KEPT " in line]
    assert [line.split(" -> ")[0] for line in kept] == ["d/gone.txt", "d/", "a.txt"]
    assert all(f"-> {kept_url}/" in line for line in kept)
    held = objects(s3_server, bucket, "backup-versions/")
    # The run's objects, and beside them what synchro keeps of the run (its index).
    by_name = {key.split("/", 2)[2]: obj for key, obj in held.items() if ".synchro/" not in key}
    assert sorted(key.split("/", 1)[1].split("/")[0] for key in held) == [stamp, stamp, f"{stamp}.synchro"]
    assert by_name["a.txt"].data == b"version 1"
    assert by_name["a.txt"].metadata["mtime"] == format_mtime(T0)  # a kept version keeps its metadata
    assert by_name["d/gone.txt"].data == b"deleted later"
    assert mirror_of(s3_server, bucket, "backup") == {"a.txt": b"version 2"}

    overlapping = run(s3_server, src, url(bucket), tmp_path, "--versions", f"s3://{bucket}/backup/old")
    assert overlapping.returncode == ExitCode.USAGE and "overlaps the replica" in overlapping.stderr


def test_the_api_keeps_versions_and_prunes_the_runs_no_rule_keeps(aws_env: S3Server, tmp_path: Path) -> None:
    from datetime import datetime

    src = tmp_path / "src"
    src.mkdir()
    bucket = new_bucket(aws_env)
    kept = f"s3://{bucket}/old"
    runs = []
    for day in (1, 2, 3, 4):
        (src / "a.txt").write_text(f"day {day}")
        moment = datetime(2026, 5, day, 3, 0, 0)
        report = synchro.mirror(src, url(bucket), versions=kept, keep_versions="2", clock=lambda m=moment: m)
        assert report.exit_code == 0, report.failed
        runs.append(moment.strftime("%Y-%m-%d_%H%M%S"))
    # Runs 2, 3 and 4 kept a version (run 1 replaced nothing); the two newest are left, with their indexes.
    assert keys(aws_env, bucket, "old/") == [
        f"old/{runs[2]}.synchro/index",
        f"old/{runs[2]}/a.txt",
        f"old/{runs[3]}.synchro/index",
        f"old/{runs[3]}/a.txt",
    ]
    assert s3_client(aws_env).get_object(Bucket=bucket, Key=f"old/{runs[3]}/a.txt")["Body"].read() == b"day 3"


def test_the_listing_pages_through_every_key_with_awkward_names(aws_env: S3Server) -> None:
    from synchro.endpoints.s3.snapshot import PageReader

    bucket = new_bucket(aws_env)
    s3 = s3_client(aws_env)
    names = [f"p/{n:02d} {name}" for n, name in enumerate([*NAMES, "a+b", "100%", "x y/z", "é/ü"])]
    for name in names:
        s3.put_object(Bucket=bucket, Key=name, Body=name.encode())
    s3.put_object(Bucket=bucket, Key="p2/not-this", Body=b"")
    reader = PageReader(client(), bucket, len("p/"), connections=2, page_size=2)
    pages = list(reader.pages("p/"))
    assert len(pages) == 5  # 9 keys, 2 per page
    listed = [item for page, _ in pages for item in page]
    assert [item.rel for item in listed] == sorted(name[2:] for name in names)
    assert all(item.size == len(f"p/{item.rel}".encode()) for item in listed)
    top = list(reader.pages("p/", "/"))
    assert sorted(common for _, commons in top for common in commons) == [
        "p/04 sp ace/",
        "p/07 x y/",
        "p/08 é/",
    ]
