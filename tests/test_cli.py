"""The ``synchro`` command, run as a user runs it: a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import Pair, child_env, run_synchro
from treeutil import BASE_NS, assert_mirror, build, log_messages, snapshot, summary, write

import synchro
from synchro import Hooks
from synchro.endpoints.local import compiled
from synchro.pipeline.plan import Action

SCRIPT = Path(sysconfig.get_path("scripts")) / "synchro"


run = run_synchro


def stamped(output: str) -> list[str]:
    """Console lines without their timestamps."""
    lines = output.splitlines()
    assert all(re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} ", line) for line in lines), lines
    return [re.sub(r" seconds=\S+ ", " seconds=S ", line[20:]) for line in lines]


def test_once_mirrors_and_exits_0(pair: Pair) -> None:
    build(pair.src, {"f": "data", "d": {"g": "more"}})

    result = run(pair.src, pair.rep, "--once", cwd=pair.root)

    assert (result.returncode, result.stderr) == (0, "")
    assert_mirror(pair.src, pair.rep)
    lines = stamped(result.stdout)
    assert lines[0] == f"START source={pair.src} replica={pair.rep} mode=single"
    assert sorted(lines[1:-1]) == ["ADDED d/", "ADDED d/g", "ADDED f"]
    assert lines[-1] == summary(added=3, nbytes=8)
    assert log_messages(pair.root) == lines  # LOGPATH defaults to the current folder


def test_the_installed_script_works_like_python_m(pair: Pair) -> None:
    write(pair.src / "f", "data")

    result = subprocess.run(
        [str(SCRIPT), str(pair.src), str(pair.rep), "24", str(pair.logs / "elsewhere"), "--once", "-q"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert_mirror(pair.src, pair.rep)
    assert log_messages(pair.logs / "elsewhere")[1] == "ADDED f"


def test_some_entries_failed_exits_1(pair: Pair, immutable: object) -> None:
    build(pair.src, {"ok": {"a": "a"}, "frozen": {}}, mtime_ns=BASE_NS)
    run(pair.src, pair.rep, "--once", "-q", cwd=pair.root)
    write(pair.src / "frozen" / "new", "cannot go in", BASE_NS)
    write(pair.src / "ok" / "b", "b", BASE_NS)
    immutable(pair.rep / "frozen")  # type: ignore[operator]  # even root cannot write there

    result = run(pair.src, pair.rep, "--once", cwd=pair.root)

    assert result.returncode == 1
    lines = stamped(result.stdout)
    assert "FAILED frozen/new: Operation not permitted" in lines
    assert "ADDED ok/b" in lines  # the run went on
    assert (pair.rep / "ok" / "b").read_text() == "b"
    assert lines[-1].endswith(" exit=1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["{root}/missing", "{root}/rep"],
            "source folder does not exist: {root}/missing",
            id="missing-source",
        ),
        pytest.param(
            ["{root}/src", "{root}/unmounted"],
            "replica folder does not exist: {root}/unmounted (is the backup drive mounted? "
            "create_replica / --create-replica creates it)",
            id="missing-replica",
        ),
        pytest.param(
            ["{root}/src", "{root}/src/inner"],
            "replica {root}/src/inner is inside the source {root}/src",
            id="nested",
        ),
        pytest.param(
            ["{root}/src", "{root}/rep", "--max-delete", "lots"],
            "max_delete: expected a number N or a percentage P% (e.g. 50%), got 'lots'",
            id="bad-max-delete",
        ),
        pytest.param(
            ["{root}/src", "{root}/rep", "--exclude", "!"],
            "exclude: invalid pattern: Invalid git pattern: '!'",
            id="bad-exclude-pattern",
        ),
        pytest.param(
            ["{root}/src", "{root}/unmounted", "--create-replica", "--exclude", "[z-a]"],
            "exclude: invalid pattern: bad character range z-a at position 10",
            id="bad-range-no-replica-made",
        ),
        pytest.param(
            ["{root}/src", "{root}/rep", "--modify-window", "soon"],
            "modify_window: expected a number of seconds, got 'soon'",
            id="bad-modify-window",
        ),
    ],
)
def test_a_configuration_error_exits_2_with_one_line(pair: Pair, args: list[str], message: str) -> None:
    os.mkdir(pair.src / "inner")
    cwd = pair.root / "cwd"
    os.mkdir(cwd)
    before = snapshot(pair.root)

    result = run(*(arg.format(root=pair.root) for arg in args), "--once", cwd=cwd)

    assert result.returncode == 2
    assert result.stderr == f"synchro: error: {message.format(root=pair.root)}\n"
    assert result.stdout == ""
    assert not (pair.root / "unmounted").exists()
    outside_logs = {k: v for k, v in snapshot(pair.root).items() if not k.startswith(b"cwd")}
    assert outside_logs == {k: v for k, v in before.items() if not k.startswith(b"cwd")}
    # The error is in the log too (LOGPATH is the current folder by default).
    assert log_messages(cwd) == [f"ERROR {message.format(root=pair.root)}"]


@pytest.mark.parametrize(
    "args",
    [["--bogus"], ["--max-delete"], [], ["only-source"], ["src", "rep", "often"]],
    ids=["unknown-option", "missing-value", "no-arguments", "one-argument", "interval-not-a-number"],
)
def test_a_usage_error_exits_2_without_traceback(pair: Pair, args: list[str]) -> None:
    result = run(
        *(["src", "rep", "--once"] if args and args[0].startswith("-") else []), *args, cwd=pair.root
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("synchro: error: ")]
    assert len(errors) == 1
    assert result.stderr.splitlines()[-1] == errors[0]
    assert result.stdout == ""
    assert os.listdir(pair.rep) == []


def test_a_bad_option_is_one_line_on_stderr(pair: Pair) -> None:
    result = run(pair.src, pair.rep, "--once", "--bogus")

    assert result.returncode == 2
    assert result.stderr == "synchro: error: unrecognized arguments: --bogus (see synchro -h)\n"


def test_deletion_guard_exits_3(pair: Pair) -> None:
    build(pair.src, {f"f{index}": "x" for index in range(12)})
    run(pair.src, pair.rep, "--once", "-q", cwd=pair.root)
    for index in range(12):
        os.unlink(pair.src / f"f{index}")
    before = snapshot(pair.rep)

    refused = run(pair.src, pair.rep, "--once", cwd=pair.root)

    assert refused.returncode == 3
    assert snapshot(pair.rep) == before
    assert stamped(refused.stdout)[1].startswith(
        "REFUSED deletion guard: this run would delete 12 of the replica's 12 files"
    )

    lifted = run(pair.src, pair.rep, "--once", "--max-delete", "100%", cwd=pair.root)
    assert lifted.returncode == 0
    assert os.listdir(pair.rep) == []


def test_a_locked_replica_exits_4_naming_it(pair: Pair) -> None:
    write(pair.src / "f", "data")
    results: list[subprocess.CompletedProcess[str]] = []

    def while_locked(action: Action) -> None:
        if not results:
            results.append(run(pair.src, pair.rep, "--once", cwd=pair.root))

    synchro.mirror(pair.src, pair.rep, hooks=Hooks(before_action=while_locked))

    assert results[0].returncode == 4
    lines = stamped(results[0].stdout)
    assert lines[1] == f"LOCKED replica {pair.rep} is locked by another synchro run; try again later"
    assert lines[-1] == summary(code=4)


def test_version_and_help() -> None:
    version = run("--version")
    # What the compiled modules' state reads like, each way: tests/test_build.py.
    expected = f"synchro {synchro.__version__} ({compiled.describe()})\n"
    assert (version.returncode, version.stdout) == (0, expected)

    usage = run("-h")
    assert usage.returncode == 0
    assert usage.stdout.startswith("usage: synchro ")
    for option in (
        "--once",
        "--max",
        "--dry-run",
        "--checksum",
        "--exclude",
        "--delete-excluded",
        "--max-delete",
        "--modify-window",
        "--create-replica",
        "-v",
        "-q",
        "--version",
    ):
        assert f" {option}" in usage.stdout, option
    assert "exit codes: 0 success, 1 some entries failed, 2 usage or configuration error" in usage.stdout


def test_dry_run_prints_what_it_would_do_and_changes_nothing(pair: Pair) -> None:
    build(pair.src, {"new": "n", "d": {"x": "x"}})
    write(pair.rep / "old", "o")
    before = snapshot(pair.rep)

    result = run(pair.src, pair.rep, "--once", "--dry-run", cwd=pair.root)

    assert result.returncode == 0
    assert snapshot(pair.rep) == before
    lines = stamped(result.stdout)
    assert lines[0] == f"START source={pair.src} replica={pair.rep} mode=single dry-run"
    assert sorted(lines[1:-1]) == ["ADDED d/", "ADDED d/x", "ADDED new", "DELETED old"]
    assert lines[-1] == summary(added=3, deleted=1, nbytes=2, dry=True)


def test_exclude_verbose_and_create_replica_options(pair: Pair) -> None:
    build(pair.src, {"keep": "k", "skip.tmp": "t", "cache": {"c": "c"}}, mtime_ns=BASE_NS)
    replica = pair.root / "new-backup"

    first = run(
        pair.src,
        replica,
        "--once",
        "--create-replica",
        "--exclude",
        "*.tmp",
        "--exclude",
        "cache/",
        cwd=pair.root,
    )
    second = run(
        pair.src, replica, "--once", "-v", "--exclude", "*.tmp", "--exclude", "cache/", cwd=pair.root
    )

    assert (first.returncode, second.returncode) == (0, 0)
    assert stamped(first.stdout)[1] == f"CREATED replica folder {replica}"
    assert sorted(os.listdir(replica)) == ["keep"]
    assert stamped(second.stdout)[1:-1] == ["UNTOUCHED keep"]


COMMA_WARNING = (
    "WARNING exclude pattern '*.tmp, *.bak' holds ', ' so it is one pattern, which leaves out only "
    "names with that comma; give one pattern per line in the INI file (exclude = then each indented "
    "on its own line), one --exclude per pattern, or a list in Python"
)


def test_an_exclude_pattern_with_a_comma_and_space_is_warned_about(pair: Pair) -> None:
    build(pair.src, {"a.tmp": "t", "b.bak": "b"}, mtime_ns=BASE_NS)
    result = run(pair.src, pair.rep, "--once", "--exclude", "*.tmp, *.bak", cwd=pair.root)
    assert result.returncode == 0, result.stderr
    assert stamped(result.stdout)[0] == COMMA_WARNING
    assert COMMA_WARNING in log_messages(pair.logs)
    assert sorted(os.listdir(pair.rep)) == ["a.tmp", "b.bak"]  # the pattern left nothing out
    # Written as two patterns: no warning, both left out (and, with --delete-excluded, deleted).
    result = run(
        pair.src,
        pair.rep,
        "--once",
        "--exclude",
        "*.tmp",
        "--exclude",
        "*.bak",
        "--delete-excluded",
        cwd=pair.root,
    )
    assert "WARNING" not in result.stdout
    assert os.listdir(pair.rep) == []


def test_verbose_checksum_lists_the_files_it_found_equal_by_content(pair: Pair) -> None:
    build(pair.src, {"a": "same", "sub": {"b": "same too", "c": "old"}})
    assert run(pair.src, pair.rep, "24", pair.logs, "--once").returncode == 0
    # Same size and time, other bytes: only --checksum sees it.
    stat = os.stat(pair.src / "sub" / "c")
    write(pair.src / "sub" / "c", "new")
    os.utime(pair.src / "sub" / "c", ns=(stat.st_atime_ns, stat.st_mtime_ns))

    result = run(pair.src, pair.rep, "24", pair.logs, "--once", "-v", "--checksum")

    assert result.returncode == 0, result.stderr
    lines = stamped(result.stdout)[1:-1]
    assert sorted(lines) == ["OVERWRITTEN sub/c", "UNTOUCHED a", "UNTOUCHED sub/", "UNTOUCHED sub/b"]
    assert stamped(result.stdout)[-1].startswith("SUMMARY added=0 overwritten=1 deleted=0 untouched=3 ")


def test_ongoing_mode_with_max_stops_after_the_last_cycle(pair: Pair) -> None:
    write(pair.src / "f", "data")

    result = run(pair.src, pair.rep, "0.25", pair.logs, "--max", "1")

    assert result.returncode == 0
    lines = stamped(result.stdout)
    assert lines[:2] == [
        "ONGOING every 0.25 h, 1 cycles",
        f"START source={pair.src} replica={pair.rep} mode=ongoing",
    ]
    assert lines[-1] == summary(added=1, nbytes=4)


def test_ongoing_mode_exits_with_the_last_cycles_code(pair: Pair) -> None:
    build(pair.src, {f"f{index}": "x" for index in range(10)})
    run(pair.src, pair.rep, "--once", "-q", cwd=pair.root)
    for index in range(10):
        os.unlink(pair.src / f"f{index}")

    result = run(pair.src, pair.rep, "1", pair.logs, "--max", "1", "-q")

    assert (result.returncode, result.stdout) == (3, "")


def test_main_returns_the_exit_code_in_process(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    """cli.main is also callable from Python (the console script calls it, through cli.command)."""
    from synchro.faces.cli import main

    write(pair.src / "f", "f")
    assert main([str(pair.src), str(pair.rep), "1", str(pair.logs), "--once", "-q"]) == 0
    assert main([str(pair.root / "missing"), str(pair.rep), "1", str(pair.logs), "--once"]) == 2
    assert capsys.readouterr().err == f"synchro: error: source folder does not exist: {pair.root}/missing\n"
    assert sys.modules["synchro"] is synchro
