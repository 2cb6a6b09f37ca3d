"""Backups onto the drives people use: a real exFAT file system, through all three faces.

exFAT keeps no owners, no permission bits and no links, keeps times to a
step (10 ms in the kernel's driver, 1 s through exfat-fuse), refuses
``: ? * " < > | \\`` in names and does not tell ``A.txt`` from ``a.txt``.
Each test runs the command (``python -m synchro``), the tasks (``inv``
over an INI file) and the API (``synchro.mirror``) in turn, and reads
what each run did from the daily log, the one record all three share.
The source trees belong to uid 1000, as a user's files do when root's
cron backs them up.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import NOBODY, child_env, chown_tree, mirror_as_nobody, open_to_others, synchro_command
from fsfixtures import Volume

import synchro
from synchro.features.verify import run_verify
from synchro.options import make_options

REPO = Path(__file__).resolve().parents[1]
INV = Path(sys.executable).parent / "inv"
OWNER = 1000  # a user's uid: root's chown to it is what exFAT refuses
T0 = 1_700_000_000_123_456_789  # source times with nanoseconds that no drive keeps
FACES = ["command", "tasks", "api"]
CHANGES = ("ADDED ", "OVERWRITTEN ", "DELETED ")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (.*)$")
COLLISION = re.compile(r"^FAILED (.+): the replica's file system does not tell it from (.+)$")


@dataclass
class Run:
    """One run as the log tells it (its lines from START to SUMMARY) and its exit code."""

    code: int
    lines: list[str]

    def starting(self, *words: str) -> list[str]:
        return [line for line in self.lines if line.startswith(words)]

    @property
    def warnings(self) -> list[str]:
        return self.starting("WARNING ")

    @property
    def failed(self) -> list[str]:
        return self.starting("FAILED ")

    @property
    def changes(self) -> list[str]:
        return self.starting(*CHANGES)

    def summary(self, key: str) -> int:
        (line,) = self.starting("SUMMARY ")
        match = re.search(rf"\b{key}=(\d+)", line)
        assert match, line
        return int(match[1])


@dataclass
class Backup:
    """Mirrors ``src`` into ``rep`` through one face; logs go to ``logs``."""

    face: str
    src: Path
    rep: Path
    logs: Path
    monkeypatch: pytest.MonkeyPatch

    def __call__(self, *, processes: str = "2") -> Run:
        # "2": share the run with the helper process even on one core; "1": never.
        before = len(self._log_lines())
        if self.face == "command":
            code = self._child(
                [*synchro_command(), "--once", str(self.src), str(self.rep), "24", str(self.logs)], processes
            )
        elif self.face == "tasks":
            config = self._config()
            code = self._child(
                [str(INV), "-r", str(REPO), "backup", "--pair", "usb", "--ini", str(config)], processes
            )
        else:
            self.monkeypatch.setenv("SYNCHRO_PROCESSES", processes)
            code = int(synchro.mirror(self.src, self.rep, logpath=self.logs).exit_code)
        lines = self._log_lines()[before:]
        assert lines and lines[0].startswith("START ") and lines[-1].startswith("SUMMARY "), lines
        assert f"exit={code}" in lines[-1]
        return Run(code, lines)

    def verify(self) -> tuple[int, list[str]]:
        """Verify the pair through the same face: (exit code, the lines it printed)."""
        if self.face == "command":
            result = self._run_child(
                [*synchro_command(), "--once", "--verify", str(self.src), str(self.rep), "24", str(self.logs)]
            )
        elif self.face == "tasks":
            config = self._config()
            result = self._run_child(
                [str(INV), "-r", str(REPO), "verify", "--pair", "usb", "--ini", str(config)]
            )
        else:
            console = io.StringIO()
            report = run_verify(self.src, self.rep, make_options(), logpath=self.logs, console=console)
            return int(report.exit_code), console.getvalue().splitlines()
        return result.returncode, result.stdout.splitlines()

    def _config(self) -> Path:
        config = self.logs / "backups.ini"
        config.write_text(
            f"[usb]\nsource = {self.src}\nreplica = {self.rep}\nlogpath = {self.logs}\n", encoding="utf-8"
        )
        return config

    def _child(self, command: list[str], processes: str) -> int:
        result = self._run_child(command, processes)
        assert "usage" not in result.stderr.lower(), result.stderr  # a run, not a refused command line
        return result.returncode

    def _run_child(self, command: list[str], processes: str = "2") -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in child_env().items() if not k.startswith(("SYNCHRO_", "INVOKE_"))}
        env["SYNCHRO_PROCESSES"] = processes
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def _log_lines(self) -> list[str]:
        lines = []
        for path in sorted((self.logs / "LOGS").glob("LOG-*.txt")):
            for line in path.read_text(encoding="utf-8").splitlines():
                match = STAMP.match(line)
                assert match, line
                lines.append(match[1])
        return lines


@pytest.fixture(params=FACES)
def backup(
    request: pytest.FixtureRequest, tmp_path: Path, exfat: Path, monkeypatch: pytest.MonkeyPatch
) -> Backup:
    src, logs = tmp_path / "src", tmp_path / "logs"
    src.mkdir()
    logs.mkdir()
    return Backup(request.param, src, exfat, logs, monkeypatch)


def make_tree(root: Path, files: dict[str, str], modes: dict[str, int] | None = None) -> None:
    """Files with their text, owned by OWNER, with times to the nanosecond (folders too)."""
    for i, (name, text) in enumerate(sorted(files.items())):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod((modes or {}).get(name, 0o644))
        os.utime(path, ns=(T0, T0 + i * 1_111_111_111))
    chown_tree(root, OWNER)
    folders = sorted({p for p in root.rglob("*") if p.is_dir()}, key=lambda p: -len(p.parts))
    for i, folder in enumerate([*folders, root]):
        os.utime(folder, ns=(T0, T0 - i * 3_333_333_333))


def files_of(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


TREE = {
    "a.txt": "alpha",
    "notes/b.txt": "beta",
    "notes/deeper/c.txt": "gamma",
    "private.txt": "secret",
    "run.sh": "#!/bin/sh\necho hi\n",
    ".hidden": "dot",
    "big.bin": "x" * 300_000,
}
MODES = {"private.txt": 0o600, "run.sh": 0o755}


def test_root_run_copies_every_file_with_one_warning(backup: Backup) -> None:
    make_tree(backup.src, TREE, MODES)
    (backup.src / "empty").mkdir()
    run = backup()
    assert run.code == 0, run.lines
    assert run.failed == []
    assert files_of(backup.rep) == TREE
    assert (backup.rep / "empty").is_dir()
    (warning,) = run.warnings
    assert "exfat" in warning or "fuseblk" in warning
    assert "owners" in warning and "permissions" in warning
    assert run.summary("added") == len(TREE) + 3  # the files, notes/, notes/deeper/, empty/


def test_unchanged_tree_is_left_alone_on_every_later_run(backup: Backup, exfat_volume: Volume) -> None:
    make_tree(backup.src, TREE, MODES)
    assert backup().code == 0
    second = backup()
    assert second.code == 0, second.lines
    assert second.changes == [] and second.failed == []
    assert second.summary("bytes") == 0
    assert len(second.warnings) == 1
    # What the drive keeps on disk, not only what its driver remembers.
    exfat_volume.remount()
    third = backup()
    assert (third.code, third.changes, third.summary("bytes")) == (0, [], 0), third.lines


def test_a_real_change_is_still_seen(backup: Backup) -> None:
    make_tree(backup.src, TREE, MODES)
    assert backup().code == 0
    # Same size, a time 3 s later: more than any drive's step.
    path = backup.src / "a.txt"
    st = path.stat()
    path.write_text("ALPHA", encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3 * 10**9))
    run = backup()
    assert run.code == 0
    assert run.changes == ["OVERWRITTEN a.txt"]
    assert (backup.rep / "a.txt").read_text(encoding="utf-8") == "ALPHA"


def test_verify_after_a_run_finds_the_replica_exact(backup: Backup) -> None:
    make_tree(backup.src, TREE, MODES)
    os.symlink("a.txt", backup.src / "link")  # skipped by the run: not missing either
    assert backup().code == 0
    code, lines = backup.verify()
    assert code == 0, lines
    assert (
        lines[-1].startswith("SUMMARY ") and " missing=0 extra=0 content=0 metadata=0 failed=0 " in lines[-1]
    )
    # It still reads every byte: a flipped byte on the drive is found.
    (backup.rep / "notes" / "b.txt").write_text("BETA", encoding="utf-8")
    os.utime(backup.rep / "notes" / "b.txt", ns=(T0, (backup.src / "notes" / "b.txt").stat().st_mtime_ns))
    code, lines = backup.verify()
    assert code == 1
    assert [line for line in lines if line.startswith("CONTENT ")] != []


def test_names_that_differ_only_in_case_fail_one_and_never_flip(backup: Backup) -> None:
    make_tree(backup.src, {"A.txt": "upper", "a.txt": "lower", "other.txt": "other"})
    kept: set[str] = set()
    for attempt in range(3):
        run = backup()
        assert run.code == 1, run.lines
        (failure,) = run.failed
        match = COLLISION.match(failure)
        assert match, failure
        failed_name, other = match[1], match[2]
        assert {failed_name, other} == {"A.txt", "a.txt"}
        # The replica holds the other name, with that file's data.
        assert sorted(os.listdir(backup.rep)) == sorted([other, "other.txt"])
        assert (backup.rep / other).read_text(encoding="utf-8") == (backup.src / other).read_text(
            encoding="utf-8"
        )
        kept.add(other)
        if attempt:
            assert run.changes == [], run.lines
    assert len(kept) == 1  # the same name on every run


@pytest.mark.parametrize("processes", ["1", "2"], ids=["one-process", "with-helper"])
def test_case_only_renames_converge_in_one_run(backup: Backup, processes: str) -> None:
    photos = {f"Photos/p{i:03}.jpg": f"photo {i}" for i in range(150)}
    make_tree(backup.src, {**photos, "Report.TXT": "report"})
    assert backup(processes=processes).code == 0
    os.rename(backup.src / "Photos", backup.src / "photos")
    os.rename(backup.src / "Report.TXT", backup.src / "report.txt")
    run = backup(processes=processes)
    assert run.code == 0, [line for line in run.lines if not line.startswith(CHANGES)]
    assert run.failed == [] and run.starting("REFUSED ") == []
    assert sorted(os.listdir(backup.rep)) == ["photos", "report.txt"]
    assert files_of(backup.rep) == files_of(backup.src)
    again = backup(processes=processes)
    assert (again.code, again.changes) == (0, [])


def test_names_the_drive_cannot_hold_fail_alone(backup: Backup) -> None:
    make_tree(
        backup.src,
        {"a:b": "colon", "what?": "question", "sub/x|y": "bar", "sub/ok.txt": "ok", "fine.txt": "ok"},
    )
    bad = os.open(os.fsencode(backup.src) + b"/bad\xff", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(bad)
    for _ in range(2):
        run = backup()
        assert run.code == 1, run.lines
        assert len(run.failed) == 4, run.lines
        assert all("cannot hold" in line for line in run.failed), run.failed
        paths = {line.split(": ")[0].removeprefix("FAILED ") for line in run.failed}
        assert {"a:b", "what?", "sub/x|y"} < paths
        (not_utf8,) = [line for line in run.failed if "not UTF-8" in line]
        assert "bad" in not_utf8
        assert files_of(backup.rep) == {"fine.txt": "ok", "sub/ok.txt": "ok"}


def test_links_the_drive_cannot_hold_are_skipped_with_the_reason(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "alpha", "sub/b.txt": "beta"})
    os.symlink("a.txt", backup.src / "link")
    os.symlink("../a.txt", backup.src / "sub" / "up")
    for _ in range(2):
        run = backup()
        assert run.code == 0, run.lines
        assert sorted(run.starting("SKIPPED ")) == [
            "SKIPPED link: the replica's file system (exfat) cannot hold symbolic links",
            "SKIPPED sub/up: the replica's file system (exfat) cannot hold symbolic links",
        ]
        assert files_of(backup.rep) == {"a.txt": "alpha", "sub/b.txt": "beta"}
    assert run.changes == []


# --- a user's run, a user's drive --------------------------------------------------------


def test_a_users_run_onto_a_drive_mounted_for_them(tmp_path: Path, exfat_volume_for_nobody: Volume) -> None:
    rep = exfat_volume_for_nobody.folder()
    src, logs = tmp_path / "src", tmp_path / "logs"
    src.mkdir()
    logs.mkdir()
    make_tree(src, TREE, {"run.sh": 0o755})
    chown_tree(src, NOBODY)
    os.chown(logs, NOBODY, NOBODY)
    for folder in (src, rep, logs):
        open_to_others(folder)
    first = mirror_as_nobody(src, rep, logpath=logs)
    assert first.code == 0, first.payload
    assert files_of(rep) == TREE
    second = mirror_as_nobody(src, rep, logpath=logs)
    assert second.code == 0
    assert second.payload["counts"] | {"untouched": 0} == dict.fromkeys(second.payload["counts"], 0)
    log = "\n".join(path.read_text(encoding="utf-8") for path in (logs / "LOGS").glob("LOG-*.txt"))
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 2  # one per run
    assert all("permissions" in line and "owners" not in line for line in warnings)


def test_a_users_run_onto_a_drive_mounted_for_root(tmp_path: Path, exfat: Path, exfat_volume: Volume) -> None:
    # Every entry there is root's: the user may write data but set no time
    # nor mode. Files are then compared by size, and the warning says so.
    if exfat_volume.driver == "kernel":
        pytest.skip("the kernel's exfat refuses other users' writes at all (mode 0755)")
    src, logs = tmp_path / "src", tmp_path / "logs"
    src.mkdir()
    logs.mkdir()
    make_tree(src, TREE)
    chown_tree(src, NOBODY)
    os.chown(logs, NOBODY, NOBODY)
    for folder in (src, exfat, logs):
        open_to_others(folder)
    first = mirror_as_nobody(src, exfat, logpath=logs)
    assert first.code == 0, first.payload
    assert files_of(exfat) == TREE
    second = mirror_as_nobody(src, exfat, logpath=logs)
    assert second.code == 0, second.payload
    assert second.payload["counts"] | {"untouched": 0} == dict.fromkeys(second.payload["counts"], 0)
    log = "\n".join(path.read_text(encoding="utf-8") for path in (logs / "LOGS").glob("LOG-*.txt"))
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 2  # one per run
    assert all("modification times" in line for line in warnings)


# --- replicas that hold everything: nothing changes ----------------------------------------


def test_no_warning_on_a_replica_that_holds_everything(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.mkdir()
    make_tree(src, TREE, MODES)
    os.symlink("a.txt", src / "link")
    report = synchro.mirror(src, rep, logpath=tmp_path, create_replica=True)
    assert report.exit_code == 0
    log = "\n".join(path.read_text(encoding="utf-8") for path in (tmp_path / "LOGS").glob("LOG-*.txt"))
    assert " WARNING " not in log
    assert os.stat(rep / "private.txt").st_mode & 0o777 == 0o600
    assert os.stat(rep / "a.txt").st_uid == OWNER
    assert os.stat(rep / "a.txt").st_mtime_ns == os.stat(src / "a.txt").st_mtime_ns
