"""Verify, old versions and restore on Windows, through the command, the tasks and the API.

Run under Windows CPython (tests/test_windows_lane.py: under Wine on Linux),
where the local trees are reached through paths (the portable endpoint).
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import attributes, log_lines, long_path, python, set_attributes

from synchro import ConfigError, mirror
from synchro.features.restore import restore
from synchro.features.versions import list_versions
from synchro.pipeline.log import escape

HIDDEN = stat.FILE_ATTRIBUTE_HIDDEN
SYSTEM = stat.FILE_ATTRIBUTE_SYSTEM
READONLY = stat.FILE_ATTRIBUTE_READONLY
KEPT = HIDDEN | SYSTEM | READONLY
T0 = 1_700_000_000 * 10**9
T1 = datetime(2026, 3, 1, 3, 0, 0)


def write(path: Path, data: bytes, mtime_ns: int = T0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, stat.S_IWRITE)  # a read-only file takes no new bytes
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def name(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d_%H%M%S}"


def at(moment: datetime) -> Callable[[], datetime]:
    """A clock stopped at ``moment``: it names the run's version folder."""
    return lambda: moment


def kept_line(path: str, folder: Path) -> str:
    return f"KEPT {path} -> {escape(str(folder))}/"


def command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The ``synchro`` command in a process of its own."""
    run = python("from synchro.faces.cli import main; sys.exit(main(sys.argv[1:]))", *args, cwd=cwd)
    out, err = run.communicate(timeout=120)
    return subprocess.CompletedProcess(run.args, run.returncode, out, err)


def tasks(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``synchro-tasks`` (the ``inv`` tasks) in a process of its own."""
    run = python(
        "sys.argv = ['synchro-tasks', *sys.argv[1:]]; from synchro.faces.taskprogram import main; main()",
        *args,
        cwd=cwd,
    )
    out, err = run.communicate(timeout=120)
    return subprocess.CompletedProcess(run.args, run.returncode, out, err)


def test_verify_through_the_command(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    write(src / "a.txt", b"alpha")
    write(src / "sub" / "b.txt", b"beta")
    write(src / "secret.txt", b"s")
    set_attributes(src / "secret.txt", HIDDEN)
    os.utime(src / "sub", ns=(T0, T0))
    done = command("--once", "--create-replica", str(src), str(rep), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    exact = command("--verify", str(src), str(rep), cwd=tmp_path)
    assert exact.returncode == 0, exact.stdout + exact.stderr
    assert exact.stdout.splitlines()[-1].startswith(
        "SUMMARY compared=4 missing=0 extra=0 content=0 metadata=0"
    )

    # A flipped byte with the same size and time, a lost attribute, an extra file.
    write(rep / "sub" / "b.txt", b"bet4")
    os.utime(rep / "sub", ns=(T0, T0))
    set_attributes(rep / "secret.txt", 0x80)
    write(rep / "extra.txt", b"e")
    root = os.stat(src)
    os.utime(rep, ns=(root.st_atime_ns, root.st_mtime_ns))
    found = command("--verify", str(src), str(rep), cwd=tmp_path)
    assert found.returncode == 1, found.stdout + found.stderr
    lines = found.stdout.splitlines()
    assert "EXTRA extra.txt" in lines
    assert "METADATA secret.txt: attributes hidden in the source, no attributes in the replica" in lines
    assert any(
        line.startswith("CONTENT sub/b.txt: bytes differ, same size and time (blake2b ") for line in lines
    )
    assert lines[-1].startswith("SUMMARY compared=4 missing=0 extra=1 content=1 metadata=1 failed=0")
    assert not (rep / ".synchro-lock").exists()  # verify held the run lock, and let it go


def test_versions_are_kept_over_runs_with_their_attributes_then_pruned(tmp_path: Path) -> None:
    src, rep, versions = tmp_path / "src", tmp_path / "rep", tmp_path / "versions"
    write(src / "report.docx", b"draft 1")
    write(src / "secret.txt", b"secret 1")
    write(src / "old" / "notes.txt", b"notes")
    os.chmod(src / "report.docx", stat.S_IREAD)
    set_attributes(src / "secret.txt", HIDDEN | SYSTEM)
    moment = T1

    def run(**options: object) -> object:
        report = mirror(
            src,
            rep,
            create_replica=True,
            logpath=tmp_path,
            versions=versions,
            clock=lambda: moment,
            **options,
        )
        assert report.exit_code == 0, report.failed
        return report

    run()
    assert not versions.exists()  # the first run into an empty replica: nothing to keep, nothing to list

    moment = T1 + timedelta(days=1)
    write(src / "report.docx", b"draft 2 is longer", T0 + 10**9)
    os.chmod(src / "report.docx", stat.S_IREAD)
    write(src / "secret.txt", b"secret 2", T0 + 10**9)
    set_attributes(src / "secret.txt", HIDDEN | SYSTEM)
    (src / "old" / "notes.txt").unlink()
    (src / "old").rmdir()
    run()
    kept = versions / name(moment)
    assert (kept / "report.docx").read_bytes() == b"draft 1"
    assert (kept / "secret.txt").read_bytes() == b"secret 1"
    assert (kept / "old" / "notes.txt").read_bytes() == b"notes"
    # As they were in the replica: read-only, hidden and system stay with the old version.
    assert attributes(kept / "report.docx") & KEPT == READONLY
    assert attributes(kept / "secret.txt") & KEPT == HIDDEN | SYSTEM
    assert os.stat(kept / "report.docx").st_mtime_ns == T0
    assert attributes(rep / "report.docx") & KEPT == READONLY
    assert (rep / "report.docx").read_bytes() == b"draft 2 is longer"
    lines = [line[20:] for line in log_lines(tmp_path)]
    assert kept_line("report.docx", kept) in lines
    assert kept_line("old/", kept) in lines

    for day in (2, 3):
        moment = T1 + timedelta(days=day)
        write(src / "report.docx", f"draft {day + 1}".encode(), T0 + day * 10**9)
        run(keep_versions="2")
    assert sorted(os.listdir(versions)) == [name(T1 + timedelta(days=2)), name(T1 + timedelta(days=3))]
    assert f"PRUNED {escape(str(kept))}/ (not one of the 2 newest)" in [
        line[20:] for line in log_lines(tmp_path)
    ]
    rows = list_versions(str(versions), "report.docx")
    assert [row.version for row in rows] == [name(T1 + timedelta(days=2)), name(T1 + timedelta(days=3))]


def test_backup_versions_and_restore_through_the_tasks(tmp_path: Path) -> None:
    src, rep, versions = tmp_path / "Documents", tmp_path / "Backup" / "Documents", tmp_path / "Versions"
    write(src / "letter.txt", b"dear ana, v1")
    write(src / "desktop.ini", b"[.ShellClassInfo]")
    set_attributes(src / "desktop.ini", HIDDEN | SYSTEM)
    rep.parent.mkdir()
    ini = tmp_path / "backups.ini"
    ini.write_text(
        f"[DEFAULT]\nlogpath = {tmp_path}\n\n"
        f"[docs]\nsource = {src}\nreplica = {rep}\ncreate_replica = yes\nversions = {versions}\n"
    )
    first = tasks("backup", "--pair", "docs", "--ini", str(ini), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    write(src / "letter.txt", b"dear ana, v2", T0 + 10**9)
    write(src / "new.txt", b"new")
    second = tasks("backup", "--pair", "docs", "--ini", str(ini), cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    # The second run's: it kept letter.txt (run folder), and listed new.txt (run_name.added).
    (run_name,) = (entry for entry in os.listdir(versions) if not entry.endswith(".added"))
    assert sorted(os.listdir(versions)) == [run_name, f"{run_name}.added"]
    listed = tasks("versions", "--pair", "docs", "--path", "letter.txt", "--ini", str(ini), cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert listed.stdout.splitlines()[1].startswith(run_name) and "letter.txt" in listed.stdout

    now = tmp_path / "now"
    current = tasks("restore", "--pair", "docs", "--to", str(now), "--ini", str(ini), cwd=tmp_path)
    assert current.returncode == 0, current.stdout + current.stderr
    assert sorted(os.listdir(now)) == ["desktop.ini", "letter.txt", "new.txt"]
    assert (now / "letter.txt").read_bytes() == b"dear ana, v2"
    assert attributes(now / "desktop.ini") & KEPT == HIDDEN | SYSTEM

    before = tmp_path / "before"
    earlier = tasks(
        "restore", "--pair", "docs", "--at", run_name, "--to", str(before), "--ini", str(ini), cwd=tmp_path
    )
    assert earlier.returncode == 0, earlier.stdout + earlier.stderr
    assert sorted(os.listdir(before)) == ["desktop.ini", "letter.txt"]  # new.txt came with that run
    assert (before / "letter.txt").read_bytes() == b"dear ana, v1"
    assert os.stat(before / "letter.txt").st_mtime_ns == T0
    assert attributes(before / "desktop.ini") & KEPT == HIDDEN | SYSTEM
    lines = [line[20:] for line in log_lines(tmp_path)]
    assert kept_line("letter.txt", versions / run_name) in lines


def test_restore_through_the_api_as_of_each_run_and_in_place(tmp_path: Path) -> None:
    src, rep, versions = tmp_path / "src", tmp_path / "rep", tmp_path / "versions"
    write(src / "a.txt", b"a1")
    write(src / "photos" / "img.jpg", b"jpeg 1")
    write(src / "locked.txt", b"locked 1")
    os.chmod(src / "locked.txt", stat.S_IREAD)
    moments = [T1 + timedelta(hours=hour) for hour in range(3)]
    for index, moment in enumerate(moments):
        if index == 1:
            write(src / "a.txt", b"a2", T0 + 10**9)
            write(src / "locked.txt", b"locked 2", T0 + 10**9)
            os.chmod(src / "locked.txt", stat.S_IREAD)
        if index == 2:
            (src / "photos" / "img.jpg").unlink()
            (src / "photos").rmdir()
        report = mirror(src, rep, create_replica=True, logpath=tmp_path, versions=versions, clock=at(moment))
        assert report.exit_code == 0, report.failed

    lines: list[str] = []
    first = restore(
        str(rep), str(tmp_path / "first"), at=name(moments[1]), versions=str(versions), emit=lines.append
    )
    assert first.exit_code == 0, first.failed
    assert (tmp_path / "first" / "a.txt").read_bytes() == b"a1"
    assert (tmp_path / "first" / "locked.txt").read_bytes() == b"locked 1"
    assert attributes(tmp_path / "first" / "locked.txt") & READONLY
    assert (tmp_path / "first" / "photos" / "img.jpg").read_bytes() == b"jpeg 1"
    assert "RESTORED photos/img.jpg" in lines

    second = restore(str(rep), str(tmp_path / "second"), at=name(moments[2]), versions=str(versions))
    assert second.exit_code == 0, second.failed
    assert (tmp_path / "second" / "a.txt").read_bytes() == b"a2"
    assert (tmp_path / "second" / "photos" / "img.jpg").read_bytes() == b"jpeg 1"

    # Back into the source, over a read-only file: refused without force, done with it.
    with pytest.raises(ConfigError, match="restoring there replaces your files; add --force"):
        restore(
            str(rep), str(src), path="photos", at=name(moments[2]), versions=str(versions), source=str(src)
        )
    done = restore(
        str(rep), str(src), at=name(moments[2]), versions=str(versions), source=str(src), force=True
    )
    assert done.exit_code == 0, done.failed
    assert (src / "photos" / "img.jpg").read_bytes() == b"jpeg 1"
    assert (src / "locked.txt").read_bytes() == b"locked 2"

    # A long path restores too.
    deep = Path(long_path(src)) / ("x" * 120) / ("y" * 120)
    os.makedirs(deep)
    with open(deep / "far.txt", "wb") as far:
        far.write(b"far")
    assert (
        mirror(src, rep, logpath=tmp_path, versions=versions, clock=at(T1 + timedelta(days=1))).exit_code == 0
    )
    out = tmp_path / "deep"
    assert restore(str(rep), str(out), path=f"{'x' * 120}/{'y' * 120}/far.txt").exit_code == 0
    with open(Path(long_path(out)) / ("x" * 120) / ("y" * 120) / "far.txt", "rb") as back:
        assert back.read() == b"far"


def test_a_read_only_file_is_kept_by_a_move_not_a_hard_link(tmp_path: Path) -> None:
    """A hard link would share the read-only attribute, which the mirror clears to replace the file."""
    from synchro.endpoints.portable.folders import PathFolders

    write(tmp_path / "rep" / "locked.txt", b"old")
    write(tmp_path / "rep" / "plain.txt", b"old")
    os.chmod(tmp_path / "rep" / "locked.txt", stat.S_IREAD)
    (tmp_path / "kept").mkdir()
    replica, kept = PathFolders(str(tmp_path / "rep")), PathFolders(str(tmp_path / "kept"))
    with pytest.raises(PermissionError) as refused:
        kept.link_from(replica, "locked.txt")
    assert refused.value.errno == errno.EPERM  # what makes the keeper move it instead
    kept.link_from(replica, "plain.txt")
    assert (tmp_path / "kept" / "plain.txt").read_bytes() == b"old"
