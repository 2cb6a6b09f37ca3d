"""Versions of a replica on another machine read back: ``inv versions`` and ``restore --at``.

The same history is made three times, by :func:`synchro.mirror` with an
injected clock: into a local replica, into an ``sftp://`` replica on the
real OpenSSH server (``sshd``) and into an ``s3://`` prefix on the real
SeaweedFS (``s3_server``), each keeping its versions where its replica is.
Four runs change, delete, add, retype and add back entries; after each, the
state of the replica is recorded. Then, through the tasks (``inv``), the
command (``synchro-tasks``) and the library under them
(:mod:`synchro.faces.runner`): ``versions`` lists exactly what the local
pair lists, and ``restore --at`` of each moment gives exactly the state
the replica had then.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import child_env
from s3util import keys, new_bucket, s3_client
from servers import S3Server, SshServer
from test_tasks import FACES
from treeutil import BASE_NS, Link, Snapshot, build, diff, set_mtime, snapshot, write

import synchro
from synchro import ConfigError
from synchro.endpoints.s3.replica import S3Replica
from synchro.endpoints.sftp.lock import LOCK_NAME
from synchro.endpoints.sftp.replica import SftpReplica
from synchro.errors import ExitCode
from synchro.faces import runner
from synchro.faces.config import load_config

T1 = datetime(2026, 3, 1, 3, 0, 0)
T2 = T1 + timedelta(days=1)
T3 = T1 + timedelta(days=2)
T4 = T1 + timedelta(days=3)
SECOND = 10**9


def name(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d_%H%M%S}"


@dataclass
class History:
    """A pair ``docs`` (INI in ``root``) whose versions were kept over four runs, and its states."""

    kind: str  # "local", "sftp" or "s3"
    root: Path
    src: Path
    replica: str
    versions: str
    env: dict[str, str]  # what a process needs to reach the server (HOME, or AWS_*)
    s3: S3Server | None = None  # the bucket's server
    states: dict[str, Snapshot] = field(default_factory=dict)  # run name -> the replica just before it
    now: Snapshot = field(default_factory=dict)  # the replica after the last run

    @property
    def ini(self) -> Path:
        return self.root / "backups.ini"

    def write_ini(self, *, versions: bool = True) -> None:
        kept = f"versions = {self.versions}\n" if versions else ""
        self.ini.write_text(
            f"[docs]\nsource = {self.src}\nreplica = {self.replica}\nlogpath = {self.root / 'logs'}\n{kept}",
            encoding="utf-8",
        )

    def pair(self) -> runner.PairConfig:
        return load_config(self.ini).pair("docs")

    def restore(self, to: Path, **flags: object) -> runner.RestoreReport:
        """The library under ``inv restore``, in this process."""
        return runner.restore(self.pair(), to=str(to), console=io.StringIO(), **flags)  # type: ignore[arg-type]

    def face(self, face: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``inv ARGS`` or ``synchro-tasks ARGS`` over the INI, with the server's settings."""
        env = {k: v for k, v in child_env().items() if not k.startswith(("SYNCHRO_", "INVOKE_", "AWS_"))}
        env.update(self.env)
        return subprocess.run(
            [*FACES[face], *args, "--ini", str(self.ini)],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def seconds(snap: Snapshot) -> Snapshot:
    return {path: entry._replace(mtime_ns=entry.mtime_ns // SECOND * SECOND) for path, entry in snap.items()}


def _make_history(kind: str, root: Path, replica: str, rep_dir: Path | None, versions: str) -> History:
    """Four runs with distinct clocks; the replica's state recorded after each."""
    src = root / "docs"
    src.mkdir()
    (root / "logs").mkdir()
    h = History(kind, root, src, replica, versions, {})

    def state() -> Snapshot:
        if rep_dir is None:  # a bucket: exactly the source's tree (times to the nanosecond)
            return snapshot(src)
        held = snapshot(rep_dir)
        held.pop(os.fsencode(LOCK_NAME), None)
        return held

    def run(moment: datetime) -> None:
        report = synchro.mirror(src, replica, logpath=root / "logs", versions=versions, clock=lambda: moment)
        assert report.exit_code == 0, report.failed

    build(
        src,
        {
            "a.txt": "a, first",
            "gone.txt": "gone, first",
            "keep.txt": "never changes",
            "stays": {"s.txt": "s"},
            "projects": {"plan.md": "plan v1", "old": {"draft.txt": "a draft", "empty": {}}},
            "link": Link("a.txt"),
            "flip": "a file that becomes a folder",
        },
        mtime_ns=BASE_NS,
    )
    os.chmod(src / "projects" / "old", 0o750)
    run(T1)
    h.states[name(T2)] = state()
    write(src / "a.txt", "a, second, longer", BASE_NS + 1 * SECOND)  # replaced by T2 and T3
    os.unlink(src / "gone.txt")  # deleted by T2, added back by T4
    build(src, {"new.txt": "new, first", "newdir": {"x.txt": "x, first"}}, mtime_ns=BASE_NS + SECOND)
    build(src / "stays", {"inner-new.txt": "added in an old folder"}, mtime_ns=BASE_NS + SECOND)
    set_mtime(src / "stays", BASE_NS)  # a folder's time is kept only with a version in it: set back
    os.unlink(src / "link")
    os.symlink("keep.txt", src / "link")
    run(T2)
    h.states[name(T3)] = state()
    write(src / "a.txt", "a, third", BASE_NS + 2 * SECOND)
    write(src / "new.txt", "new, second", BASE_NS + 2 * SECOND)  # added by T2, replaced by T3
    write(src / "newdir" / "x.txt", "x, second", BASE_NS + 2 * SECOND)
    set_mtime(src / "newdir", BASE_NS + SECOND)
    write(src / "later.txt", "later", BASE_NS + 2 * SECOND)  # added by T3
    shutil.rmtree(src / "projects" / "old")  # a folder tree deleted whole
    os.unlink(src / "flip")
    build(src, {"flip": {"inside": "now a folder"}}, mtime_ns=BASE_NS + 2 * SECOND)
    run(T3)
    h.states[name(T4)] = state()
    write(src / "gone.txt", "gone, back again", BASE_NS + 3 * SECOND)
    run(T4)  # only adds: a list, no run folder
    h.now = state()
    return h


@pytest.fixture(scope="module")
def local_history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """The same history into a local replica: what the remote ones must list alike."""
    root = tmp_path_factory.mktemp("local-history")
    (root / "backup" / "docs").mkdir(parents=True)
    h = _make_history(
        "local", root, str(root / "backup" / "docs"), root / "backup" / "docs", str(root / "VERSIONS")
    )
    h.write_ini()
    return h


def _use_env(patch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """This process as a client of the server: its HOME (keys), or only its AWS settings."""
    if any(key.startswith("AWS_") for key in env):
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            patch.delenv(key)
    patch.delenv("SSH_AUTH_SOCK", raising=False)
    for key, value in env.items():
        patch.setenv(key, value)


@pytest.fixture(scope="module", params=["sftp", "s3"])
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """The history kept on the SSH server, and in the bucket."""
    root = tmp_path_factory.mktemp(f"{request.param}-history")
    if request.param == "sftp":
        sshd: SshServer = request.getfixturevalue("sshd")
        rep = root / "server" / "docs"
        rep.mkdir(parents=True)
        env = {"HOME": str(sshd.home)}
        args: tuple[str, Path | None, str] = (
            sshd.url(rep, alias=True),
            rep,
            str(root / "server" / "VERSIONS"),
        )
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = new_bucket(s3)
        env = s3.env({})
        args = (f"s3://{bucket}/docs", None, f"s3://{bucket}/docs-versions")
    with pytest.MonkeyPatch.context() as patch:
        _use_env(patch, env)
        h = _make_history(request.param, root, *args)
    h.env = env
    h.s3 = request.getfixturevalue("s3_server") if request.param == "s3" else None
    h.write_ini()
    yield h


@pytest.fixture
def remote(history: History, monkeypatch: pytest.MonkeyPatch) -> History:
    """The remote history, with this process able to reach its server (for the library calls)."""
    _use_env(monkeypatch, history.env)
    return history


# --- what the keepers leave where the replica is -------------------------------------------------


def test_each_run_keeps_its_versions_and_its_list_of_additions_beside_the_replica(
    remote: History, local_history: History
) -> None:
    local = Path(local_history.versions)
    lists = {n: (local / n).read_bytes() for n in os.listdir(local) if n.endswith(".added")}
    if remote.kind == "sftp":
        kept = Path(remote.versions)
        names = sorted(os.listdir(kept))
        added = {n: (kept / n).read_bytes() for n in names if n.endswith(".added")}
    else:
        assert remote.s3 is not None
        bucket = remote.versions.split("/")[2]
        listed = keys(remote.s3, bucket, "docs-versions/")
        names = sorted({key.split("/")[1] for key in listed} - {f"{name(T2)}.synchro", f"{name(T3)}.synchro"})
        s3 = s3_client(remote.s3)
        added = {
            n: s3.get_object(Bucket=bucket, Key=f"docs-versions/{n}")["Body"].read()
            for n in names
            if n.endswith(".added")
        }
        assert f"docs-versions/{name(T3)}.synchro/index" in listed  # what T3 kept, described
        assert f"docs-versions/{name(T3)}/projects/old/empty/" in listed  # a deleted empty folder
    # The local layout: a run folder per run that kept something, a list per run that added.
    assert names == [name(T2), f"{name(T2)}.added", name(T3), f"{name(T3)}.added", f"{name(T4)}.added"]
    assert sorted(os.listdir(local)) == names
    assert added == lists
    assert added[f"{name(T2)}.added"].split(b"\0") == [b"new.txt", b"stays/inner-new.txt", b"newdir", b""]
    assert added[f"{name(T4)}.added"] == b"gone.txt\0"


# --- inv versions -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "a.txt", "projects", "projects/old", "link", "flip", "never.txt"])
def test_versions_lists_exactly_what_a_local_pair_lists(
    remote: History, local_history: History, path: str
) -> None:
    expected = runner.versions_table(local_history.pair(), path)

    got = runner.versions_table(remote.pair(), path)

    assert got == expected.replace(local_history.versions, remote.versions)


def test_inv_versions_and_the_command_list_the_kept_versions(remote: History) -> None:
    listed = remote.face("inv", "versions", "--pair", "docs", "--path", "a.txt")
    overview = remote.face("synchro-tasks", "versions", "--pair", "docs")

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["version", "size", "modified", "what"]
    assert [line.split()[:3] for line in lines[1:]] == [[name(T2), "8", "B"], [name(T3), "17", "B"]]
    assert all(line.endswith("  a.txt") for line in lines[1:])
    assert overview.returncode == 0, overview.stderr
    assert [line.split()[0] for line in overview.stdout.splitlines()[1:]] == [name(T2), name(T3)]
    assert overview.stdout.splitlines()[2].endswith("  . (9 entries)")


# --- restore --at -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "state"),
    [
        (name(T2), name(T2)),
        (name(T2 - timedelta(hours=5)), name(T2)),  # any moment: the first run from then on
        (name(T3), name(T3)),
        (name(T4), name(T4)),
        (name(T4 + timedelta(days=1)), ""),  # after every run: the replica as it is
        ("", ""),  # no --at: the replica as it is
    ],
)
def test_restore_at_a_moment_gives_the_replica_as_it_was_then(
    remote: History, tmp_path: Path, at: str, state: str
) -> None:
    report = remote.restore(tmp_path / "then", at=at)

    assert report.exit_code == 0, report.failed
    expected = remote.states[state] if state else remote.now
    # Exactly the replica just before that run: nothing more, nothing less (the root's own time aside).
    assert diff(expected, snapshot(tmp_path / "then"), ignore=["."]) == []


def test_inv_restore_and_the_command_restore_as_of_a_run(
    remote: History, local_history: History, tmp_path: Path
) -> None:
    whole = remote.face(
        "inv", "restore", "--pair", "docs", "--at", name(T3), "--to", str(tmp_path / "whole"), "-v"
    )
    one = remote.face(
        "synchro-tasks",
        "restore",
        "--pair",
        "docs",
        "--path",
        "projects/old",
        "--at",
        name(T3),
        "--to",
        str(tmp_path / "one"),
    )

    assert whole.returncode == 0, whole.stderr
    local = local_history.restore(tmp_path / "local", at=name(T3))
    assert whole.stdout.splitlines()[-1] == local.summary().replace(
        str(tmp_path / "local"), str(tmp_path / "whole")
    )
    lines = whole.stdout.splitlines()
    assert "RESTORED new.txt" in lines and "RESTORED projects/old/draft.txt" in lines
    assert "RESTORED gone.txt" not in lines  # deleted by T2, added back by T4
    assert "RESTORED later.txt" not in lines  # added by T3
    assert diff(remote.states[name(T3)], snapshot(tmp_path / "whole"), ignore=["."]) == []
    assert one.returncode == 0, one.stderr
    assert one.stdout == (
        f"RESTORED projects/old as of {name(T3)} into {tmp_path / 'one'}: 3 entries, 1 file, 7 bytes (exit 0)\n"
    )
    got = snapshot(tmp_path / "one")
    for path in (b"projects/old", b"projects/old/draft.txt", b"projects/old/empty"):
        assert got[path] == remote.states[name(T3)][path], path


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "yesterday"], "--at: expected YYYY-MM-DD_HHMMSS"),
        (
            ["--path", "newdir/x.txt", "--at", name(T2)],
            f"--path newdir/x.txt: did not exist as of {name(T2)}",
        ),
        (
            ["--path", "nothing.txt", "--at", name(T2)],
            "--path nothing.txt: not found in the replica or any version",
        ),
        (["--path", "../etc", "--at", name(T2)], "--path: '..' is not allowed"),
    ],
)
def test_refusals_are_one_line_exit_2_and_write_nothing(
    remote: History, tmp_path: Path, args: list[str], message: str
) -> None:
    result = remote.face("inv", "restore", "--pair", "docs", *args, "--to", str(tmp_path / "r"))

    assert result.returncode == ExitCode.USAGE, result.stdout + result.stderr
    assert result.stderr.startswith(f"synchro: error: {message}"), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_target_that_holds_entries_is_refused_without_force(remote: History, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    build(target, {"a.txt": "mine, not the backup's", "projects": {"other.txt": "mine too"}})
    before = snapshot(target)

    refused = remote.face("inv", "restore", "--pair", "docs", "--at", name(T3), "--to", str(target))

    assert refused.returncode == ExitCode.USAGE
    assert refused.stderr == (
        f"synchro: error: --to {target}: 1 entry would be replaced (first: a.txt); "
        "restore into a new or empty folder, or add --force\n"
    )
    assert snapshot(target) == before  # nothing written
    forced = remote.restore(target, at=name(T3), force=True)
    assert forced.exit_code == 0
    assert (target / "a.txt").read_text() == "a, second, longer"
    assert (target / "projects" / "other.txt").read_text() == "mine too"  # a restore never deletes


def test_without_versions_at_is_refused_and_versions_too(remote: History, tmp_path: Path) -> None:
    ini = tmp_path / "plain.ini"
    ini.write_text(f"[docs]\nsource = {remote.src}\nreplica = {remote.replica}\n", encoding="utf-8")
    pair = load_config(ini).pair("docs")

    with pytest.raises(ConfigError) as at:
        runner.restore(pair, to=str(tmp_path / "r"), at=name(T2), console=io.StringIO())
    with pytest.raises(ConfigError) as listing:
        runner.versions_table(pair)

    assert str(at.value) == "--at: this pair keeps no versions (give it a versions folder: versions = PATH)"
    assert str(listing.value) == "pair 'docs' keeps no versions; give it a versions folder (versions = PATH)"
    assert not (tmp_path / "r").exists()


def test_an_entry_that_cannot_be_written_fails_alone(remote: History, tmp_path: Path) -> None:
    target = tmp_path / "t"
    blocked = target / "projects"
    blocked.mkdir(parents=True)
    # A read-only mount: even root cannot write there.
    subprocess.run(["mount", "--bind", str(blocked), str(blocked)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(blocked)], check=True)
        lines: list[str] = []
        report = runner.restore(remote.pair(), to=str(target), at=name(T3), console=io.StringIO())
        lines = [path for path, _ in report.failed]
    finally:
        subprocess.run(["umount", str(blocked)], check=True)

    assert report.exit_code == ExitCode.FAILED
    assert lines and all(path.startswith("projects/") for path in lines), lines
    expected = {p: e for p, e in remote.states[name(T3)].items() if not p.startswith(b"projects")}
    got = {p: e for p, e in snapshot(target).items() if not p.startswith(b"projects")}
    assert diff(expected, got, ignore=["."]) == []  # everything else restored


# --- the keepers' lists, names and pruning on the server ------------------------------------------


class Store:
    """A fresh pair into the server or the bucket of ``remote``, and what its versions folder holds."""

    def __init__(self, remote: History, tmp_path: Path) -> None:
        self.remote, self.src, self.logs = remote, tmp_path / "src", tmp_path / "logs"
        self.src.mkdir()
        self.logs.mkdir()
        if remote.kind == "sftp":
            rep = tmp_path / "server" / "rep"
            rep.mkdir(parents=True)
            self.kept = tmp_path / "server" / "kept"
            self.replica = remote.replica.replace(str(Path(remote.versions).parent / "docs"), str(rep))
            self.versions = str(self.kept)
        else:
            bucket = remote.replica.split("/")[2]
            self.prefix = f"kept-{tmp_path.name}"
            self.replica = f"s3://{bucket}/rep-{tmp_path.name}"
            self.versions = f"s3://{bucket}/{self.prefix}"

    def run(self, moment: datetime, **options: object) -> None:
        report = synchro.mirror(
            self.src, self.replica, logpath=self.logs, versions=self.versions, clock=lambda: moment, **options
        )
        assert report.exit_code == 0, report.failed

    def names(self) -> list[str]:
        """The run folders and lists (not what synchro keeps of an s3:// run beside it)."""
        if self.remote.kind == "sftp":
            return sorted(os.listdir(self.kept)) if self.kept.exists() else []
        assert self.remote.s3 is not None
        listed = keys(self.remote.s3, self.replica.split("/")[2], self.prefix + "/")
        return sorted({key.split("/")[1] for key in listed if ".synchro/" not in key})

    def read(self, list_name: str) -> bytes:
        if self.remote.kind == "sftp":
            return (self.kept / list_name).read_bytes()
        assert self.remote.s3 is not None
        s3 = s3_client(self.remote.s3)
        got = s3.get_object(Bucket=self.replica.split("/")[2], Key=f"{self.prefix}/{list_name}")
        return got["Body"].read()

    def pruned(self) -> list[str]:
        lines = "".join(log.read_text() for log in sorted(self.logs.glob("**/LOG-*.txt"))).splitlines()
        return [line.split(" PRUNED ", 1)[1].split(" (")[0] for line in lines if " PRUNED " in line]


def test_names_taken_move_a_second_and_lists_are_pruned_with_their_runs(
    remote: History, tmp_path: Path
) -> None:
    store = Store(remote, tmp_path)
    build(store.src, {"a.txt": "a0"}, mtime_ns=BASE_NS)
    store.run(T1)  # the first run: nothing to keep, nothing before it to list
    assert store.names() == []
    write(store.src / "a.txt", "a1", BASE_NS + SECOND)
    write(store.src / "b.txt", "b", BASE_NS + SECOND)
    store.run(T2)
    write(store.src / "a.txt", "a2", BASE_NS + 2 * SECOND)
    store.run(T2)  # the same second: the next free name
    later = name(T2 + timedelta(seconds=1))
    assert store.names() == [name(T2), f"{name(T2)}.added", later]
    assert store.read(f"{name(T2)}.added") == b"b.txt\0"

    write(store.src / "a.txt", "a3", BASE_NS + 3 * SECOND)
    store.run(T3, keep_versions="1")

    assert store.names() == [name(T3)]
    shown = store.versions.rstrip("/")
    assert store.pruned() == [f"{shown}/{name(T2)}/", f"{shown}/{later}/", f"{shown}/{name(T2)}.added"]


def test_into_an_emptied_replica_a_run_lists_one_record(remote: History, tmp_path: Path) -> None:
    store = Store(remote, tmp_path)
    build(store.src, {"a.txt": "a", "box": {"in.txt": "in"}}, mtime_ns=BASE_NS)
    store.run(T1)
    shutil.rmtree(store.src)
    store.src.mkdir()
    store.run(T2, max_delete="100%")  # keeps everything: the run folder
    build(store.src, {"a.txt": "a, again", "c.txt": "c"}, mtime_ns=BASE_NS + SECOND)
    store.run(T3)  # into an empty replica: everything is new, one record says so

    assert store.names() == [name(T2), f"{name(T3)}.added"]
    assert store.read(f"{name(T3)}.added") == b".\0"


def test_a_restore_is_refused_while_a_run_holds_the_replica(remote: History, tmp_path: Path) -> None:
    replica = SftpReplica(remote.replica) if remote.kind == "sftp" else S3Replica(remote.replica)
    holder: AbstractContextManager[object] = replica.lock()  # as a run holds it

    with holder:
        refused = remote.face(
            "inv", "restore", "--pair", "docs", "--at", name(T3), "--to", str(tmp_path / "r")
        )
        listed = remote.face("inv", "versions", "--pair", "docs", "--path", "a.txt")

    assert refused.returncode == ExitCode.LOCKED, refused.stderr
    assert refused.stderr.endswith("is locked by another synchro run; try again later\n")
    assert not (tmp_path / "r").exists()
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3  # listing needs no lock
