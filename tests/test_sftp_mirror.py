"""A replica on a real OpenSSH server (``sftp://``), through the command, the tasks and the API.

The server runs on this machine (the ``sshd`` fixture), so what it holds is
checked by reading its folder directly: an exact mirror is a local
snapshot equal to the source's (times to the second, what SFTP keeps).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import child_env, synchro_command
from servers import SshServer
from treeutil import BASE_NS, Link, Snapshot, build, diff, log_messages, snapshot, write

import synchro
from synchro import Hooks
from synchro.endpoints.sftp.lock import LOCK_NAME
from synchro.pipeline.plan import Action

SECOND = 10**9


def run(sshd: SshServer, *args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m synchro ...`` with the private HOME of the server's client (keys, known_hosts)."""
    return subprocess.run(
        [*synchro_command(), *map(str, args)],
        capture_output=True,
        text=True,
        env=sshd.env(child_env()),
        cwd=cwd,
        timeout=120,
        check=False,
    )


def seconds(snap: Snapshot) -> Snapshot:
    """Times to the second (SFTP keeps whole seconds); links' times only where the server sets them."""
    return {path: entry._replace(mtime_ns=entry.mtime_ns // SECOND * SECOND) for path, entry in snap.items()}


def assert_remote_mirror(src: Path, rep: Path) -> None:
    left, right = seconds(snapshot(src)), seconds(snapshot(rep))
    right.pop(os.fsencode(LOCK_NAME), None)
    problems = diff(left, right)
    assert not problems, "replica differs from source:\n" + "\n".join(problems[:40])


def inodes(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry's inode and change time: what a run that rewrites nothing leaves as it was."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (st.st_ino, st.st_ctime_ns)
    return found


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    src, rep, logs = tmp_path / "src", tmp_path / "server" / "rep", tmp_path / "logs"
    src.mkdir()
    rep.mkdir(parents=True)
    logs.mkdir()
    build(
        src,
        {
            "a.txt": "alpha",
            "empty": "",
            "sub": {"b.bin": b"\x00\x01" * 70000, "deeper": {"c": "see"}, "link": Link("../a.txt")},
            "dangling": Link("nowhere/at/all"),
            "space name ü": "unicode",
        },
        mtime_ns=BASE_NS + 123_456_789,
    )
    os.chmod(src / "sub" / "deeper" / "c", 0o640)
    os.chmod(src / "sub" / "deeper", 0o750)
    return {"src": src, "rep": rep, "logs": logs, "root": tmp_path}


def test_command_mirrors_exactly_then_changes_nothing(sshd: SshServer, tree: dict[str, Path]) -> None:
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]

    first = run(sshd, src, sshd.url(rep), "24", logs, "--once")

    assert (first.returncode, first.stderr) == (0, ""), first.stdout
    assert_remote_mirror(src, rep)
    before = inodes(rep)
    second = run(sshd, src, sshd.url(rep), "24", logs, "--once")
    assert (second.returncode, second.stderr) == (0, ""), second.stdout
    lines = [line[20:] for line in second.stdout.splitlines()]
    # No change logged; the one warning says what SFTP cannot keep.
    assert len(lines) == 3 and lines[1].startswith(
        "WARNING the replica's file system (sftp) cannot keep exact times (1 s)"
    ), lines
    assert lines[-1].startswith("SUMMARY added=0 overwritten=0 deleted=0 untouched=9 failed=0"), lines
    assert " bytes=0 " in lines[-1]
    assert log_messages(logs)[-3:-1] == lines[:2]  # the daily log says the same
    assert inodes(rep) == before  # nothing rewritten
    assert not (rep / LOCK_NAME).exists()  # released


def test_changes_deletions_and_leftover_temporaries(sshd: SshServer, tree: dict[str, Path]) -> None:
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    assert run(sshd, src, sshd.url(rep), "24", logs, "--once").returncode == 0
    write(src / "a.txt", "ALPHA changed", mtime_ns=BASE_NS + 5 * SECOND)
    os.chmod(src / "empty", 0o600)
    (src / "sub" / "deeper" / "c").unlink()
    write(rep / ".synchro-tmp-0123456789ab", "a crashed run's temporary")
    (rep / "extra").mkdir()
    write(rep / "extra" / "x", "only in the replica")

    result = run(sshd, src, sshd.url(rep, alias=True), "24", logs, "--once")

    assert result.returncode == 0, result.stdout + result.stderr
    assert_remote_mirror(src, rep)
    out = result.stdout
    assert "OVERWRITTEN a.txt" in out and "DELETED sub/deeper/c" in out and "DELETED extra/x" in out


def test_dry_run_changes_nothing_on_the_server(sshd: SshServer, tree: dict[str, Path]) -> None:
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    write(rep / "old", "to be deleted")
    before = snapshot(rep)

    result = run(sshd, src, sshd.url(rep), "24", logs, "--once", "--dry-run")

    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(rep) == before
    assert "ADDED a.txt" in result.stdout and "DELETED old" in result.stdout


def test_missing_replica_is_refused_and_created_on_request(sshd: SshServer, tree: dict[str, Path]) -> None:
    src, logs = tree["src"], tree["logs"]
    missing = tree["root"] / "server" / "new"

    refused = run(sshd, src, sshd.url(missing), "24", logs, "--once")
    assert refused.returncode == 2
    assert "replica folder does not exist" in refused.stderr + refused.stdout
    assert not missing.exists()
    cwd = tree["root"]
    nested = tree["root"] / "server" / "no" / "parent"
    no_parent = run(sshd, src, sshd.url(nested), "24", logs, "--once", "--create-replica", cwd=cwd)
    assert no_parent.returncode == 2 and "parent folder" in no_parent.stderr + no_parent.stdout
    assert not (tree["root"] / "server" / "no").exists()
    assert not any(p.name.startswith("sftp:") for p in cwd.iterdir())  # never a local folder

    made = run(sshd, src, sshd.url(missing), "24", logs, "--once", "--create-replica")
    assert made.returncode == 0, made.stdout + made.stderr
    assert_remote_mirror(src, missing)


def test_a_held_lock_refuses_and_a_dead_ones_is_taken_over(sshd: SshServer, tree: dict[str, Path]) -> None:
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    write(rep / LOCK_NAME, "host=elsewhere pid=1 since=today\n")

    # Held (written just now) by a run named through the URL: the alias is the same replica.
    held = run(sshd, src, sshd.url(rep, alias=True), "24", logs, "--once")
    assert held.returncode == 4, held.stdout + held.stderr
    assert "host=elsewhere pid=1" in held.stdout + held.stderr
    assert not (rep / "a.txt").exists()

    old = BASE_NS  # not written for years: its run is dead
    os.utime(rep / LOCK_NAME, ns=(old, old))
    taken = run(sshd, src, sshd.url(rep), "24", logs, "--once")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "took over the lock" in taken.stdout
    assert_remote_mirror(src, rep)
    assert not (rep / LOCK_NAME).exists()


def test_guard_excludes_and_checksum(sshd: SshServer, tree: dict[str, Path]) -> None:
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    for i in range(20):
        write(rep / f"old{i}", "x")

    guarded = run(sshd, src, sshd.url(rep), "24", logs, "--once")
    assert guarded.returncode == 3
    assert (rep / "old0").exists() and not (rep / "a.txt").exists()

    result = run(sshd, src, sshd.url(rep), "24", logs, "--once", "--max-delete", "100%", "--exclude", "*.bin")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (rep / "sub" / "b.bin").exists() and (rep / "a.txt").exists()

    # Same size, same second, other bytes: only --checksum sees it (reading the server's file back).
    st = os.stat(src / "a.txt")
    write(rep / "a.txt", "ALPHA", mtime_ns=st.st_mtime_ns)
    plain = run(sshd, src, sshd.url(rep), "24", logs, "--once", "--exclude", "*.bin")
    assert "a.txt" not in plain.stdout.split("\n", 1)[1] and (rep / "a.txt").read_text() == "ALPHA"
    checked = run(sshd, src, sshd.url(rep), "24", logs, "--once", "--exclude", "*.bin", "--checksum")
    assert checked.returncode == 0 and "OVERWRITTEN a.txt" in checked.stdout
    assert (rep / "a.txt").read_text() == "alpha"


def test_changed_host_key_is_refused_in_one_line(
    sshd: SshServer, tree: dict[str, Path], tmp_path: Path
) -> None:
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    env = sshd.env(child_env())
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    for name in ("id_ed25519", "config"):
        (home / ".ssh" / name).write_bytes((sshd.home / ".ssh" / name).read_bytes())
    os.chmod(home / ".ssh" / "id_ed25519", 0o600)
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key = (other.with_suffix(".pub")).read_text().split()[:2]
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {' '.join(key)}\n")
    env["HOME"] = str(home)

    result = subprocess.run(
        [*synchro_command(), str(src), sshd.url(rep), "24", str(logs), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    errors = [line for line in result.stdout.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "has CHANGED" in errors[0] and "ssh-keygen -R" in errors[0], result.stdout
    assert result.stderr == ""
    assert os.listdir(rep) == []


def test_api_mirror_and_ini_tasks(
    sshd: SshServer, tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    monkeypatch.setenv("HOME", str(sshd.home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)

    report = synchro.mirror(src, sshd.url(rep, alias=True), logpath=logs, timeout=20)

    assert report.exit_code == 0, report.message
    assert_remote_mirror(src, rep)
    again = synchro.mirror(src, sshd.url(rep), logpath=logs)
    assert (again.exit_code, again.bytes_copied, again.changed) == (0, 0, 0)

    ini = tree["root"] / "backups.ini"
    write(src / "new", "from the tasks")
    ini.write_text(
        f"[nas]\nsource = {src}\nreplica = {sshd.url(rep, alias=True)}\nlogpath = {logs}\ntimeout = 15\n"
    )
    env = sshd.env(child_env())
    tasks = Path(synchro.__file__).resolve().parent.parent / "tasks.py"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "-r",
            str(tasks.parent),
            "backup",
            "--pair",
            "nas",
            "--ini",
            str(ini),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (rep / "new").read_text() == "from the tasks"


def test_server_killed_mid_upload(
    sshd: SshServer, tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's session process dies while a file is on its way: exit 1, no partial file, next run converges."""
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    monkeypatch.setenv("HOME", str(sshd.home))
    write(src / "big", os.urandom(5 << 20))
    killed: list[int] = []

    def kill_session(action: Action, copied: int) -> None:
        if action.name != "big" or killed:
            return
        # The sshd process serving this connection: a child of the listening server.
        children = Path(f"/proc/{sshd.process.pid}/task/{sshd.process.pid}/children").read_text().split()
        for pid in map(int, children):
            with contextlib.suppress(ProcessLookupError):  # another test's session, ending now
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    report = synchro.mirror(src, sshd.url(rep), logpath=logs, hooks=Hooks(during_copy=kill_session))

    assert killed
    assert report.exit_code == 1
    assert any("connection" in reason and "lost" in reason for _, reason in report.failed), report.failed
    assert not (rep / "big").exists()
    again = synchro.mirror(src, sshd.url(rep), logpath=logs)
    assert again.exit_code == 0, again.failed
    assert_remote_mirror(src, rep)
    assert not [name for name in os.listdir(rep) if name.startswith(".synchro-tmp-")]


# Runs the command with the server's session killed when the upload of the
# file named by argv[1] begins: the hold is that upload itself, in the loop
# that sends it, before its first request.
KILL_AT_UPLOAD = """
import contextlib, os, signal, sys
from pathlib import Path
from synchro.endpoints.sftp import replica
from synchro.faces.cli import command

name, sshd_pid = sys.argv[1], int(sys.argv[2])
upload = replica.SftpCopyJob._upload
killed = []

async def killing(self, *args, **kwargs):
    if self.name == name and not killed:
        children = Path(f"/proc/{sshd_pid}/task/{sshd_pid}/children").read_text().split()
        for pid in map(int, children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return await upload(self, *args, **kwargs)

replica.SftpCopyJob._upload = killing
sys.argv = ["synchro", *sys.argv[3:]]
command()
"""


def test_a_lost_connection_is_one_line_for_the_rest_of_the_run(
    sshd: SshServer, tree: dict[str, Path]
) -> None:
    """The command loses its server mid-run: one FAILED line for every action left, exit 1."""
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    for folder in range(8):
        (src / f"many{folder}").mkdir()
        for number in range(10):
            write(src / f"many{folder}" / f"f{number}", f"{folder}/{number}", mtime_ns=BASE_NS)

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_AT_UPLOAD,
            "f5",
            str(sshd.process.pid),
            src,
            sshd.url(rep),
            "24",
            logs,
            "--once",
        ],
        capture_output=True,
        text=True,
        env=sshd.env(child_env()),
        timeout=120,
        check=False,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    # Nothing but the run's own lines: no traceback, no task of the lost
    # connection reported pending as the process ends.
    assert "Traceback" not in done.stderr, done.stderr
    assert "Task was destroyed" not in done.stderr, done.stderr
    failed = [line for line in log_messages(logs) if line.startswith("FAILED")]
    assert len(failed) == 1, failed
    line = re.fullmatch(
        r"FAILED \./: the connection to (\S+) was lost \(.*\): (\d+) actions not done; the next run converges",
        failed[0],
    )
    assert line and line.group(1) == sshd.url(rep), failed[0]
    missing = [
        path for path in src.rglob("*") if path.is_file() and not (rep / path.relative_to(src)).exists()
    ]
    assert 1 <= len(missing) <= int(line.group(2)), (missing, failed[0])
    for path in src.rglob("*"):  # what is there under a real name is whole
        there = rep / path.relative_to(src)
        if path.is_file() and not path.is_symlink() and there.exists():
            assert there.read_bytes() == path.read_bytes(), there

    again = run(sshd, src, sshd.url(rep), "24", logs, "--once")
    assert again.returncode == 0, again.stdout + again.stderr
    assert_remote_mirror(src, rep)
    assert not [path for path in rep.rglob(".synchro-tmp-*")]


def inv(sshd: SshServer, ini: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tasks = Path(synchro.__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(tasks), *args, "--ini", str(ini)],
        capture_output=True,
        text=True,
        env=sshd.env(child_env()),
        timeout=120,
        check=False,
    )


def test_tasks_status_verify_and_restore(sshd: SshServer, tree: dict[str, Path]) -> None:
    src, rep, logs, root = tree["src"], tree["rep"], tree["logs"], tree["root"]
    ini = root / "backups.ini"
    ini.write_text(f"[nas]\nsource = {src}\nreplica = {sshd.url(rep, alias=True)}\nlogpath = {logs}\n")

    assert inv(sshd, ini, "backup", "--pair", "nas").returncode == 0
    status = inv(sshd, ini, "status")
    assert status.returncode == 0 and "nas" in status.stdout and "OK" in status.stdout.upper(), status.stdout

    exact = inv(sshd, ini, "verify", "--pair", "nas")
    assert exact.returncode == 0, exact.stdout + exact.stderr
    assert "SUMMARY" in exact.stdout and "MISSING" not in exact.stdout

    # A bit flipped on the server, the time put back: only reading the bytes back sees it.
    st = os.stat(rep / "a.txt")
    write(rep / "a.txt", "alphA", mtime_ns=st.st_mtime_ns)
    (rep / "sub" / "deeper" / "c").unlink()
    differs = inv(sshd, ini, "verify", "--pair", "nas")
    assert differs.returncode == 1
    assert "CONTENT a.txt: bytes differ, same size and time" in differs.stdout
    assert "MISSING sub/deeper/c" in differs.stdout
    assert os.stat(rep / "a.txt").st_mtime_ns == st.st_mtime_ns  # verify changed nothing

    target = root / "restored"
    restored = inv(sshd, ini, "restore", "--pair", "nas", "--to", str(target))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert (target / "a.txt").read_text() == "alphA"  # the replica as it is
    assert (target / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    assert os.readlink(target / "sub" / "link") == "../a.txt"
    assert (
        os.stat(target / "sub" / "b.bin").st_mtime_ns
        == os.stat(src / "sub" / "b.bin").st_mtime_ns // SECOND * SECOND
    )
    one = inv(sshd, ini, "restore", "--pair", "nas", "--path", "sub/b.bin", "--to", str(root / "one"))
    assert one.returncode == 0 and (root / "one" / "sub" / "b.bin").exists()
    again = inv(sshd, ini, "restore", "--pair", "nas", "--to", str(target))
    assert again.returncode == 2 and "would be replaced" in again.stdout + again.stderr


def test_command_verify(sshd: SshServer, tree: dict[str, Path]) -> None:
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    assert run(sshd, src, sshd.url(rep), "24", logs, "--once").returncode == 0

    result = run(sshd, src, sshd.url(rep), "24", logs, "--verify")

    assert result.returncode == 0, result.stdout + result.stderr
    (rep / "extra").write_text("x")
    differs = run(sshd, src, sshd.url(rep), "24", logs, "--verify")
    assert differs.returncode == 1 and "EXTRA extra" in differs.stdout


def test_a_server_that_stops_answering_ends_the_run(
    sshd: SshServer, tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its session process stopped (SIGSTOP) mid-upload: the run gives up after the timeout, exit 1."""
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    monkeypatch.setenv("HOME", str(sshd.home))
    write(src / "big", os.urandom(3 << 20))
    stopped: list[int] = []

    def freeze(action: Action, copied: int) -> None:
        if action.name != "big" or stopped:
            return
        children = Path(f"/proc/{sshd.process.pid}/task/{sshd.process.pid}/children").read_text().split()
        for pid in map(int, children):
            with contextlib.suppress(ProcessLookupError):  # another test's session, ending now
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)

    try:
        report = synchro.mirror(src, sshd.url(rep), logpath=logs, timeout=2, hooks=Hooks(during_copy=freeze))
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
    assert stopped
    assert report.exit_code == 1
    assert any("lost" in reason for _, reason in report.failed), report.failed
    assert not (rep / "big").exists()


def test_versions_are_kept_on_the_server(sshd: SshServer, tree: dict[str, Path]) -> None:
    src, rep, logs, root = tree["src"], tree["rep"], tree["logs"], tree["root"]
    kept = root / "server" / "versions"
    assert run(sshd, src, sshd.url(rep), "24", logs, "--once", "--versions", kept).returncode == 0
    assert not kept.exists()  # nothing replaced or deleted yet
    old = (rep / "sub" / "b.bin").stat()
    write(src / "sub" / "b.bin", "new bytes", mtime_ns=BASE_NS + 9 * SECOND)
    shutil.rmtree(src / "sub" / "deeper")

    result = run(sshd, src, sshd.url(rep), "24", logs, "--once", "--versions", sshd.url(kept))

    assert result.returncode == 0, result.stdout + result.stderr
    assert_remote_mirror(src, rep)
    (run_folder,) = kept.iterdir()
    # Overwritten: a hard link to the old file (the same inode: nothing was copied).
    assert (run_folder / "sub" / "b.bin").stat().st_ino == old.st_ino
    assert (run_folder / "sub" / "deeper" / "c").read_text() == "see"
    assert stat.S_IMODE((run_folder / "sub" / "deeper").stat().st_mode) == 0o750
    assert "KEPT sub/b.bin ->" in result.stdout and "KEPT sub/deeper/ ->" in result.stdout

    elsewhere = run(sshd, src, sshd.url(rep), "24", logs, "--once", "--versions", "relative/folder")
    assert elsewhere.returncode == 2 and "absolute path on that server" in elsewhere.stdout + elsewhere.stderr
    inside = run(sshd, src, sshd.url(rep), "24", logs, "--once", "--versions", rep / "v")
    assert inside.returncode == 2 and "is inside the replica" in inside.stdout + inside.stderr


def test_versions_on_the_server_are_pruned(
    sshd: SshServer, tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, rep, logs, root = tree["src"], tree["rep"], tree["logs"], tree["root"]
    monkeypatch.setenv("HOME", str(sshd.home))
    kept = root / "server" / "versions"
    now = [datetime(2026, 3, 1, 3, 0, 0)]
    options: dict[str, Any] = {"logpath": logs, "versions": str(kept), "keep_versions": "1"}
    assert synchro.mirror(src, sshd.url(rep), clock=lambda: now[0], **options).exit_code == 0
    for day, text in ((2, "one"), (3, "two")):
        now[0] = datetime(2026, 3, day, 3, 0, 0)
        write(src / "a.txt", text, mtime_ns=BASE_NS + day * SECOND)
        report = synchro.mirror(src, sshd.url(rep), clock=lambda: now[0], **options)
        assert report.exit_code == 0, report.failed

    assert sorted(p.name for p in kept.iterdir()) == ["2026-03-03_030000"]  # the older one pruned
    assert (kept / "2026-03-03_030000" / "a.txt").read_text() == "one"
    assert (rep / "a.txt").read_text() == "two"


def test_ini_pairs_naming_one_replica_by_alias_and_url_are_refused(
    sshd: SshServer, tree: dict[str, Path]
) -> None:
    """A Host alias and the URL it stands for (after ~/.ssh/config) are one replica: refused before any run."""
    src, rep, logs, root = tree["src"], tree["rep"], tree["logs"], tree["root"]
    other = root / "other"
    other.mkdir()
    ini = root / "backups.ini"

    def pairs(first: str, second: str) -> str:
        return (
            f"[alias]\nsource = {src}\nreplica = {first}\nlogpath = {logs}\n"
            f"[url]\nsource = {other}\nreplica = {second}\nlogpath = {logs}\n"
        )

    ini.write_text(pairs(sshd.url(rep, alias=True), sshd.url(rep)))
    same = inv(sshd, ini, "backup-all")
    assert same.returncode == 2, same.stdout + same.stderr
    assert f"pairs [alias] and [url] have the same replica {sshd.url(rep, alias=True)}" in same.stderr
    assert "Traceback" not in same.stderr
    assert not list(rep.iterdir())  # nothing ran

    ini.write_text(pairs(sshd.url(rep, alias=True), sshd.url(rep / "inner")))
    inside = inv(sshd, ini, "backup-all")
    assert inside.returncode == 2
    assert "the replica of [url] is inside the replica of [alias]" in inside.stderr

    (root / "server" / "rep2").mkdir()
    ini.write_text(pairs(sshd.url(rep, alias=True), sshd.url(root / "server" / "rep2")))
    apart = inv(sshd, ini, "backup-all")
    assert apart.returncode == 0, apart.stdout + apart.stderr


def test_versions_on_the_server_named_by_the_other_spelling(
    sshd: SshServer, tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica named by its alias keeps versions at a URL of the same server (and the reverse)."""
    src, rep, logs, root = tree["src"], tree["rep"], tree["logs"], tree["root"]
    monkeypatch.setenv("HOME", str(sshd.home))
    kept = root / "server" / "versions"
    report = synchro.mirror(src, sshd.url(rep, alias=True), logpath=logs, versions=sshd.url(kept))
    assert report.exit_code == 0, report.message
    elsewhere = synchro.mirror(
        src, sshd.url(rep, alias=True), logpath=logs, versions=f"sftp://nobody@127.0.0.1:1{kept}"
    )
    assert elsewhere.exit_code == 2 and "is not on the replica's server" in elsewhere.message


def test_a_folder_listed_in_several_answers(sshd: SshServer, tree: dict[str, Path]) -> None:
    """More entries than one READDIR answer holds (OpenSSH: 100): all are seen, a second run changes nothing."""
    src, rep, logs = tree["src"], tree["rep"], tree["logs"]
    for number in range(250):
        write(src / "sub" / f"n{number:03}", str(number), mtime_ns=BASE_NS)
    assert run(sshd, src, sshd.url(rep), "24", logs, "--once").returncode == 0
    (rep / "sub" / "n249").unlink()
    write(rep / "sub" / "extra", "x")

    again = run(sshd, src, sshd.url(rep), "24", logs, "--once")

    assert again.returncode == 0, again.stdout + again.stderr
    assert_remote_mirror(src, rep)
    last = log_messages(logs)[-4:]
    assert "ADDED sub/n249" in last and "DELETED sub/extra" in last, last
