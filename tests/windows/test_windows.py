"""synchro on Windows: what a Windows user does and what Windows does to files.

Run under Windows CPython (tests/test_windows_lane.py: under Wine on Linux).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, attributes, held_open, log_lines, long_path, python, set_attributes

from synchro import mirror
from synchro.endpoints.portable.lock import FileRunLock
from synchro.endpoints.portable.replica import RETRY_DELAYS, PortableReplica
from synchro.endpoints.portable.tree import PortableTree
from synchro.endpoints.resolve import local_endpoint

HIDDEN = stat.FILE_ATTRIBUTE_HIDDEN
SYSTEM = stat.FILE_ATTRIBUTE_SYSTEM
READONLY = stat.FILE_ATTRIBUTE_READONLY
T0 = 1_700_000_000 * 10**9


def write(path: Path, data: bytes, mtime_ns: int = T0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_windows_uses_the_portable_endpoint() -> None:
    assert os.name == "nt"
    assert local_endpoint() == "portable"


def test_mirror_copies_overwrites_and_deletes(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    write(src / "a.txt", b"alpha")
    write(src / "sub" / "b.txt", b"beta")
    write(src / "gone" / "c.txt", b"gamma")
    report = mirror(src, rep, create_replica=True, logpath=tmp_path)
    assert report.exit_code == 0, report.failed
    assert (rep / "sub" / "b.txt").read_bytes() == b"beta"
    assert os.stat(rep / "a.txt").st_mtime_ns == T0

    write(src / "a.txt", b"alpha, longer", T0 + 10**9)
    (src / "gone" / "c.txt").unlink()
    (src / "gone").rmdir()
    report = mirror(src, rep, logpath=tmp_path)
    assert report.exit_code == 0, report.failed
    assert (report.overwritten, report.deleted) == (["a.txt"], ["gone/c.txt", "gone/"])
    assert (rep / "a.txt").read_bytes() == b"alpha, longer"
    assert not (rep / "gone").exists()
    assert mirror(src, rep, logpath=tmp_path).added == []
    # What no Windows tree has (case-only names, CON) is no loss worth a warning.
    warnings = [line for line in log_lines(tmp_path) if " WARNING " in line]
    assert not [line for line in warnings if "case" in line or "reserves" in line], warnings


def test_hidden_system_and_read_only_files_are_kept(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    write(src / "desktop.ini", b"[.ShellClassInfo]")
    write(src / "secret.txt", b"s")
    write(src / "locked.txt", b"v1")
    write(src / "plain.txt", b"p")
    set_attributes(src / "desktop.ini", HIDDEN | SYSTEM)
    set_attributes(src / "secret.txt", HIDDEN)
    os.chmod(src / "locked.txt", stat.S_IREAD)
    assert mirror(src, rep, create_replica=True, logpath=tmp_path).exit_code == 0
    mask = HIDDEN | SYSTEM | READONLY
    for name in ("desktop.ini", "secret.txt", "locked.txt", "plain.txt"):
        assert attributes(rep / name) & mask == attributes(src / name) & mask, name

    # A change of attributes alone is seen; a read-only replica file is overwritten.
    set_attributes(src / "secret.txt", 0x80)
    os.chmod(src / "locked.txt", stat.S_IWRITE)
    write(src / "locked.txt", b"v2", T0 + 10**9)
    os.chmod(src / "locked.txt", stat.S_IREAD)
    report = mirror(src, rep, logpath=tmp_path)
    assert report.exit_code == 0, report.failed
    assert sorted(report.overwritten) == ["locked.txt", "secret.txt"]
    assert (rep / "locked.txt").read_bytes() == b"v2"
    assert attributes(rep / "secret.txt") & HIDDEN == 0
    assert attributes(rep / "locked.txt") & READONLY

    # Deleted in the source: a read-only replica file is deleted too.
    os.chmod(src / "locked.txt", stat.S_IWRITE)
    (src / "locked.txt").unlink()
    report = mirror(src, rep, logpath=tmp_path)
    assert report.deleted == ["locked.txt"] and report.exit_code == 0


def test_a_source_file_in_use_is_skipped_then_copied_on_a_later_cycle(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    write(src / "mail.pst", b"mailbox")
    write(src / "other.txt", b"o")
    with held_open(src / "mail.pst"):
        report = mirror(src, rep, create_replica=True, logpath=tmp_path)
    assert report.added == ["other.txt"]
    assert "SKIPPED mail.pst: in use by another program" in [line[20:] for line in log_lines(tmp_path)]
    assert not (rep / "mail.pst").exists()

    report = mirror(src, rep, logpath=tmp_path)
    assert report.added == ["mail.pst"] and report.exit_code == 0
    assert (rep / "mail.pst").read_bytes() == b"mailbox"


def test_a_replica_file_in_use_is_retried_then_fails_alone(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    write(src / "a.txt", b"v1")
    write(src / "b.txt", b"b1")
    assert mirror(src, rep, create_replica=True, logpath=tmp_path).exit_code == 0
    write(src / "a.txt", b"v2", T0 + 10**9)
    write(src / "b.txt", b"b2", T0 + 10**9)
    with held_open(rep / "a.txt"):
        report = mirror(src, rep, logpath=tmp_path)
    assert report.exit_code == 1
    assert report.overwritten == ["b.txt"]
    waited = f"{sum(RETRY_DELAYS):.1f}"
    assert report.failed == [("a.txt", f"in use by another program (still after {waited} s)")]
    assert (rep / "a.txt").read_bytes() == b"v1"
    assert not [name for name in os.listdir(rep) if name.startswith(".synchro-tmp-")]
    assert mirror(src, rep, logpath=tmp_path).overwritten == ["a.txt"]


def test_a_replica_file_released_during_the_retries_is_replaced(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    write(src / "a.txt", b"new")
    write(rep / "a.txt", b"old")
    waits: list[float] = []
    holder = held_open(rep / "a.txt")

    def sleep(seconds: float) -> None:
        # The antivirus lets go after the second try.
        waits.append(seconds)
        if len(waits) == 2:
            holder.__exit__(None, None, None)

    replica = PortableReplica(str(rep), sleep=sleep)
    replica.open()
    replica.measure(as_root=False)
    holder.__enter__()
    assert replica.copy_file(PortableTree(str(src)), "", "a.txt") == 3
    assert waits == list(RETRY_DELAYS[:2])
    assert (rep / "a.txt").read_bytes() == b"new"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("CON", "a device name (CON)"),
        ("nul.txt", "a device name (NUL)"),
        ("COM1", "a device name (COM1)"),
        ("lpt9.log", "a device name (LPT9)"),
        ("trailing.", "a name ending in a dot or a space"),
        ("trailing ", "a name ending in a dot or a space"),
    ],
)
def test_names_windows_cannot_hold_fail_alone(tmp_path: Path, name: str, why: str) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    write(src / "fine.txt", b"f")
    # Only the \\?\ form reaches such a name (another tool, a Linux share).
    with open(long_path(src) + "\\" + name, "wb") as odd:
        odd.write(b"x")
    report = mirror(src, rep, create_replica=True, logpath=tmp_path)
    assert report.exit_code == 1
    assert report.added == ["fine.txt"]
    ((failed, reason),) = report.failed
    assert failed == name
    assert reason.startswith("the replica's file system (") and reason.endswith(f") cannot hold {why}")
    assert sorted(os.listdir(rep)) == ["fine.txt"]


def test_paths_longer_than_260_characters(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    deep = Path(long_path(src))
    for level in range(8):
        deep = deep / (f"level-{level}-" + "x" * 40)
    os.makedirs(deep)
    with open(deep / "file.txt", "wb") as out:
        out.write(b"far")
    assert len(str(deep / "file.txt")) > 300
    report = mirror(src, rep, create_replica=True, logpath=tmp_path)
    assert report.exit_code == 0, report.failed
    copied = Path(long_path(rep)) / deep.relative_to(long_path(src)) / "file.txt"
    with open(copied, "rb") as far:
        assert far.read() == b"far"
    assert mirror(src, rep, logpath=tmp_path).added == []


def test_a_locked_replica_is_exit_4_and_the_lock_file_is_never_mirrored(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    write(src / "a.txt", b"a")
    rep.mkdir()
    with FileRunLock(str(rep), str(rep / ".synchro-lock")):
        report = mirror(src, rep, logpath=tmp_path)
        assert attributes(rep / ".synchro-lock") & HIDDEN
    assert int(report.exit_code) == 4
    assert any(" LOCKED " in line for line in log_lines(tmp_path))
    report = mirror(src, rep, logpath=tmp_path)
    assert report.exit_code == 0 and report.added == ["a.txt"]
    assert sorted(os.listdir(rep)) == ["a.txt"]  # the lock file went with the run


def test_the_log_is_shared_by_concurrent_runs(tmp_path: Path) -> None:
    pairs = []
    for index in range(3):
        src = tmp_path / f"src{index}"
        for number in range(40):
            write(src / f"file-{number:03d}.txt", b"x" * number)
        pairs.append((src, tmp_path / f"rep{index}"))
    runs = [
        python(
            "from synchro import mirror; r = mirror(sys.argv[1], sys.argv[2], create_replica=True, logpath=sys.argv[3]);"
            "sys.exit(int(r.exit_code))",
            str(src),
            str(rep),
            str(tmp_path),
        )
        for src, rep in pairs
    ]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
    lines = log_lines(tmp_path)
    assert sum(" SUMMARY added=40 " in line for line in lines) == 3
    assert sum(" ADDED " in line for line in lines) == 3 * 40
    for line in lines:  # whole lines only, never two cut into one
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ .*", line), line
        assert line.count(" ADDED ") + line.count(" SUMMARY ") + line.count(" START ") <= 1, line


def test_the_seed_api_from_a_script_in_another_folder(tmp_path: Path) -> None:
    src, rep, scripts = tmp_path / "src", tmp_path / "rep", tmp_path / "scripts"
    write(src / "a.txt", b"a")
    scripts.mkdir()
    (scripts / "backup.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent.parent.parent)!r})\n"
        "from synchro import Synchro\n"
        "s = Synchro()\n"
        "s.configure(sys.argv[1], sys.argv[2], create_replica=True)\n"
        "report = s.run()\n"
        "s.close_api()\n"
        "sys.exit(int(report.exit_code))\n"
    )
    done = subprocess.run(
        [sys.executable, str(scripts / "backup.py"), str(src), str(rep)],
        cwd=scripts,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (rep / "a.txt").read_bytes() == b"a"
    assert any(line.endswith("ADDED a.txt") for line in log_lines(scripts))  # the log beside the script


def test_the_tasks_over_an_ini_with_windows_paths(tmp_path: Path) -> None:
    src, rep = tmp_path / "Pictures", tmp_path / "Backup" / "Pictures"
    write(src / "img.jpg", b"jpeg")
    rep.parent.mkdir()
    ini = tmp_path / "backups.ini"
    ini.write_text(
        f"[DEFAULT]\nlogpath = {tmp_path}\n\n[photos]\nsource = {src}\nreplica = {rep}\ncreate_replica = yes\n"
    )
    assert str(src).startswith(("Z:\\", "C:\\"))  # a drive letter and backslashes
    run = python(
        "sys.argv = ['synchro-tasks', 'backup', '--pair', 'photos', '--ini', sys.argv[1]];"
        "from synchro.faces.taskprogram import main; main()",
        str(ini),
    )
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    assert (rep / "img.jpg").read_bytes() == b"jpeg"
    assert any(line.endswith("ADDED img.jpg") for line in log_lines(tmp_path))


def test_symbolic_links_are_copied_as_links(tmp_path: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    write(src / "a.txt", b"a")
    try:
        os.symlink("a.txt", src / "link")
        os.lstat(src / "link")
    except OSError as error:
        # Wine says it made the link, which is then nowhere to be found.
        pytest.skip(f"this Windows cannot create symbolic links ({error.strerror}): Wine, or no privilege")
    report = mirror(src, rep, create_replica=True, logpath=tmp_path)
    assert report.exit_code == 0
    assert os.readlink(rep / "link") == "a.txt"


@pytest.mark.parametrize(("event", "name"), [("c", "Ctrl+C"), ("break", "Ctrl+Break")])
def test_a_console_ctrl_c_stops_a_run_cleanly_with_exit_130(tmp_path: Path, event: str, name: str) -> None:
    """The real console event, sent by a program in the same console, as a user's key press is."""
    src, rep = tmp_path / "src", tmp_path / "rep"
    for number in range(5):
        write(src / f"file-{number}.txt", b"x" * 1000)
    driver = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("console_driver.py")),
            event,
            str(REPO),
            str(src),
            str(rep),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        creationflags=subprocess.CREATE_NEW_CONSOLE,  # type: ignore[attr-defined,unused-ignore]
    )
    said = driver.stdout
    if said.startswith("refused "):
        # Wine 8 generates CTRL_C_EVENT but refuses CTRL_BREAK_EVENT (ERROR_INVALID_HANDLE);
        # Windows sends both. The handler is tested below with the signal raised in the process.
        pytest.skip(f"this system does not generate the console event: {said.strip()}")
    assert said.startswith("exit 130\n"), said + driver.stderr
    assert "synchro: interrupted" in said
    lines = log_lines(tmp_path)
    assert lines[-2].endswith(
        f"INTERRUPTED the run was stopped by {name}; the replica holds no partial file"
    ), lines
    assert lines[-1].split()[2] == "SUMMARY" and lines[-1].endswith("exit=130")
    assert os.listdir(rep) == []  # no temporary, no partial file


@pytest.mark.parametrize(("key", "name"), [("SIGINT", "Ctrl+C"), ("SIGBREAK", "Ctrl+Break")])
def test_ctrl_c_and_ctrl_break_stop_a_run_cleanly_with_exit_130(tmp_path: Path, key: str, name: str) -> None:
    """The signal raised in the process: what Windows makes of either console event (and
    Ctrl+Break's only test under Wine, which cannot generate that event)."""
    src, rep = tmp_path / "src", tmp_path / "rep"
    for number in range(5):
        write(src / f"file-{number}.txt", b"x" * 1000)
    # The key is pressed as the first copy is about to be put in place.
    run = python(
        "import os, signal;"
        "real = os.replace;"
        f"os.replace = lambda a, b: (signal.raise_signal(signal.{key}), real(a, b));"
        "from synchro.faces.cli import main;"
        "sys.exit(main(['--once', '--create-replica', sys.argv[1], sys.argv[2]]))",
        str(src),
        str(rep),
        cwd=tmp_path,
    )
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, out + err
    assert "synchro: interrupted" in err
    lines = log_lines(tmp_path)
    assert lines[-2].endswith(
        f"INTERRUPTED the run was stopped by {name}; the replica holds no partial file"
    ), lines
    assert lines[-1].split()[2] == "SUMMARY" and lines[-1].endswith("exit=130")
    assert os.listdir(rep) == []  # no temporary, no partial file
