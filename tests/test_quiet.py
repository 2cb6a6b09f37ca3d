"""``-q``: a clean run prints nothing, a run with a problem says it on standard error.

Cron mails a job's output only when there is some: the command, the tasks
and the API's quiet console must never hide a failure, a refusal or a
warning, and must print nothing at all when everything went well.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import Pair, child_env, run_synchro
from test_tasks import Inv, files_of, ini, tree
from treeutil import BASE_NS, build, log_messages, write

import synchro
from synchro import Hooks, Synchro
from synchro.pipeline.plan import Action

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def messages(text: str) -> list[str]:
    """Lines of a quiet console, time stamps checked and removed, durations normalised."""
    lines = text.splitlines()
    assert all(STAMP.match(line) for line in lines), lines
    return [re.sub(r" seconds=\S+ ", " seconds=S ", line[20:]) for line in lines]


def test_a_clean_quiet_run_prints_nothing(pair: Pair) -> None:
    build(pair.src, {"f": "data", "d": {"g": "more"}})

    result = run_synchro(pair.src, pair.rep, "24", pair.logs, "--once", "-q")

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert log_messages(pair.logs)[-1].startswith("SUMMARY added=3 ")  # the log has it all


def test_a_refused_quiet_run_says_why_on_stderr(pair: Pair) -> None:
    build(pair.src, {f"f{index:02}": "x" for index in range(12)})
    assert run_synchro(pair.src, pair.rep, "24", pair.logs, "--once", "-q").returncode == 0
    for index in range(12):
        os.unlink(pair.src / f"f{index:02}")

    result = run_synchro(pair.src, pair.rep, "24", pair.logs, "--once", "-q")

    assert (result.returncode, result.stdout) == (3, "")
    lines = messages(result.stderr)
    assert lines[0] == f"START source={pair.src} replica={pair.rep} mode=single"
    assert lines[1].startswith("REFUSED deletion guard: this run would delete 12 of the replica's 12 files")
    assert lines[-2] == "REFUSED ... and 2 more"
    assert lines[-1].startswith("SUMMARY ") and lines[-1].endswith(" exit=3")
    assert len(lines) == 1 + 1 + 10 + 1 + 1


def test_failed_entries_are_shown_and_the_rest_is_not(pair: Pair, immutable: object) -> None:
    build(pair.src, {"ok": {"a": "a"}, "frozen": {}}, mtime_ns=BASE_NS)
    assert run_synchro(pair.src, pair.rep, "24", pair.logs, "--once", "-q").returncode == 0
    write(pair.src / "frozen" / "new", "cannot go in", BASE_NS)
    write(pair.src / "ok" / "b", "b", BASE_NS)
    immutable(pair.rep / "frozen")  # type: ignore[operator]  # even root cannot write there

    result = run_synchro(pair.src, pair.rep, "24", pair.logs, "--once", "-q")

    assert (result.returncode, result.stdout) == (1, "")
    assert messages(result.stderr) == [
        f"START source={pair.src} replica={pair.rep} mode=single",
        "FAILED frozen/new: Operation not permitted",
        "FAILED frozen/: Operation not permitted",  # its times could not be set either
        "SUMMARY added=1 overwritten=0 deleted=0 untouched=3 failed=2 skipped=0 vanished=0 "
        "bytes=1 seconds=S exit=1",
    ]
    assert "ADDED ok/b" in log_messages(pair.logs)  # listed in the log, not on the console


def test_failures_in_the_helpers_part_are_shown_too(pair: Pair, immutable: object) -> None:
    """On two cores a forked helper applies part of the run: its FAILED lines reach stderr as well."""
    folders = [f"d{index:02}" for index in range(24)]
    build(pair.src, {name: {f"f{file}": "x" for file in range(20)} for name in folders}, mtime_ns=BASE_NS)
    assert run_synchro(pair.src, pair.rep, "24", pair.logs, "--once", "-q").returncode == 0
    for name in folders:
        write(pair.src / name / "new", "n", BASE_NS)
    frozen = folders[::3]
    for name in frozen:
        immutable(pair.rep / name)  # type: ignore[operator]

    result = subprocess.run(
        [*synchro_command_line(pair), "--once", "-q"],
        capture_output=True,
        text=True,
        env={**child_env(), "SYNCHRO_PROCESSES": "2"},  # share the run even on one core
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stdout) == (1, "")
    lines = messages(result.stderr)
    assert lines[0].startswith("START ")
    assert sorted(lines[1:-1]) == sorted(
        f"FAILED {name}/{what}: Operation not permitted" for name in frozen for what in ("", "new")
    )
    assert lines[-1].startswith(f"SUMMARY added={len(folders) - len(frozen)} ")
    assert lines[-1].endswith(" exit=1")


def synchro_command_line(pair: Pair) -> list[str]:
    from conftest import synchro_command

    return [*synchro_command(), str(pair.src), str(pair.rep), "24", str(pair.logs)]


def test_a_locked_replica_is_said_on_stderr(pair: Pair) -> None:
    write(pair.src / "f", "data")
    results: list[subprocess.CompletedProcess[str]] = []

    def while_locked(action: Action) -> None:
        if not results:
            results.append(run_synchro(pair.src, pair.rep, "24", pair.logs, "--once", "-q"))

    synchro.mirror(pair.src, pair.rep, hooks=Hooks(before_action=while_locked))

    assert (results[0].returncode, results[0].stdout) == (4, "")
    assert messages(results[0].stderr)[1:] == [
        f"LOCKED replica {pair.rep} is locked by another synchro run; try again later",
        "SUMMARY added=0 overwritten=0 deleted=0 untouched=0 failed=0 skipped=0 vanished=0 "
        "bytes=0 seconds=S exit=4",
    ]


def test_a_bad_pair_is_one_line_on_stderr(pair: Pair) -> None:
    result = run_synchro(pair.src, pair.root / "unplugged", "24", pair.logs, "--once", "-q")

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"synchro: error: replica folder does not exist: {pair.root}/unplugged "
        "(is the backup drive mounted? create_replica / --create-replica creates it)\n"
    )


def test_a_quiet_verification_lists_the_differences(pair: Pair) -> None:
    build(pair.src, {"same": "s", "changed": "old"})
    assert run_synchro(pair.src, pair.rep, "24", pair.logs, "--once", "-q").returncode == 0
    assert run_synchro(pair.src, pair.rep, "24", pair.logs, "--verify", "-q").stdout == ""
    write(pair.rep / "changed", "new")  # same size, other bytes

    result = run_synchro(pair.src, pair.rep, "24", pair.logs, "--verify", "-q", "--checksum")

    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[0] == f"VERIFY source={pair.src} replica={pair.rep}"
    assert [line.split(" ", 1)[0] for line in lines[1:]] == ["CONTENT", "SUMMARY"]
    assert lines[-1].endswith(" exit=1")


def test_the_api_quiet_console_gets_only_what_needs_a_person(pair: Pair) -> None:
    build(pair.src, {f"f{index:02}": "x" for index in range(12)})
    console = io.StringIO()
    with Synchro(pair.logs, quiet=True, console=console) as api:
        api.configure(pair.src, pair.rep)
        assert api.run().exit_code == 0
        assert console.getvalue() == ""
        for index in range(12):
            os.unlink(pair.src / f"f{index:02}")
        assert api.run().exit_code == 3
    lines = messages(console.getvalue())
    assert [line.split(" ", 1)[0] for line in lines] == ["START"] + ["REFUSED"] * 12 + ["SUMMARY"]


# --- the tasks ----------------------------------------------------------------------------------


@pytest.fixture
def inv(tmp_path: Path) -> Inv:
    return Inv(tmp_path)


def test_the_tasks_quiet_backup_says_a_failure_and_nothing_else(inv: Inv, tmp_path: Path) -> None:
    tree(tmp_path / "docs", {"a.txt": "a"})
    tree(tmp_path / "photos", {f"p{index:02}.jpg": "p" for index in range(12)})
    (tmp_path / "mirror").mkdir()  # the drive: create_replica makes only the last folder
    ini(
        tmp_path / "backups.ini",
        "[DEFAULT]\ncreate_replica = yes\n[docs]\nsource = docs\nreplica = mirror/docs\n"
        "[photos]\nsource = photos\nreplica = mirror/photos\n",
    )
    assert inv("backup-all", "-q").stderr == ""
    for index in range(12):
        os.unlink(tmp_path / "photos" / f"p{index:02}.jpg")  # the drive's folder is empty

    clean = inv("backup", "-p", "docs", "-q")
    refused = inv("backup", "-p", "photos", "-q")

    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "", "")
    assert (refused.returncode, refused.stdout) == (3, "")
    lines = refused.stderr.splitlines()
    assert messages("\n".join(lines[:-1]))[0] == (
        f"START source={tmp_path}/photos replica={tmp_path}/mirror/photos mode=single"
    )
    assert [line[20:].split(" ", 1)[0] for line in lines[1:-1]] == ["REFUSED"] * 12 + ["SUMMARY"]
    assert lines[-1].startswith("photos: refused: deletion guard: this run would delete 12 ")
    assert len(files_of(tmp_path / "mirror" / "photos")) == 12


# Every kind of line a quiet console meets: stamped or not, shown or not,
# including messages that start with a letter some shown word starts with.
CONSOLE_LINES = [
    "2026-12-07 10:00:00 START source=/s replica=/r mode=single",
    "2026-12-07 10:00:00 ADDED a",
    "2026-12-07 10:00:00 SKIPPED b (a socket)",
    "2026-12-07 10:00:00 OVERWRITTEN c",
    "2026-12-07 10:00:01 FAILED d: Permission denied",
    "2026-12-07 10:00:01 DELETED e",
    "2026-12-07 10:00:01 EXCLUDED f",
    "2026-12-07 10:00:01 WARNING the replica's file system (exfat) cannot keep owners",
    "2026-12-07 10:00:02 SUMMARY added=1 failed=1 exit=1",
    "2026-12-07 10:00:03 START source=/s replica=/r mode=single",
    "2026-12-07 10:00:03 SUMMARY added=0 failed=0 exit=0",
    "VERIFY source=/s replica=/r",
    "MISSING g",
    "Matched 3",
    "EXTRA h",
    "2026-12-07 10:00:04 FAILEDX not a word of its own",
]
CONSOLE_SHOWN = [
    "2026-12-07 10:00:00 START source=/s replica=/r mode=single",
    "2026-12-07 10:00:01 FAILED d: Permission denied",
    "2026-12-07 10:00:01 WARNING the replica's file system (exfat) cannot keep owners",
    "2026-12-07 10:00:02 SUMMARY added=1 failed=1 exit=1",
    "VERIFY source=/s replica=/r",
    "MISSING g",
    "EXTRA h",
]


@pytest.mark.parametrize("cut", ["line_by_line", "all_at_once", "every_7_chars", "one_char_at_a_time"])
def test_the_quiet_console_shows_the_same_lines_however_the_text_comes(cut: str) -> None:
    from synchro.faces.quiet import AttentionConsole

    text = "".join(f"{line}\n" for line in CONSOLE_LINES)
    chunks = {
        "line_by_line": [f"{line}\n" for line in CONSOLE_LINES],
        "all_at_once": [text],
        "every_7_chars": [text[i : i + 7] for i in range(0, len(text), 7)],
        "one_char_at_a_time": list(text),
    }[cut]
    out = io.StringIO()
    console = AttentionConsole(out)

    for chunk in chunks:
        assert console.write(chunk) == len(chunk)

    assert out.getvalue().splitlines() == CONSOLE_SHOWN
