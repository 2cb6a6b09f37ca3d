"""What the console says once, and says right: the log folder left out, one log warning, bad flags."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pair, run_synchro
from treeutil import build, log_messages

import synchro


def test_a_log_folder_inside_the_source_is_said_once_per_run(pair: Pair) -> None:
    build(pair.src, {"a": "a", "docs": {"b": "b"}})

    # LOGPATH defaults to the current folder: here, the source itself.
    first = run_synchro(pair.src, pair.rep, "--once", cwd=pair.src)
    second = run_synchro(pair.src, pair.rep, "--once", "-v", cwd=pair.src)

    note = "NOTE the log folder LOGS/ is inside the source; it is left out of the mirror"
    for result in (first, second):
        assert result.returncode == 0, result.stderr
        assert [line[20:] for line in result.stdout.splitlines()].count(note) == 1
    assert log_messages(pair.src).count(note) == 2  # once per run
    assert sorted(os.listdir(pair.rep)) == ["a", "docs"]


def test_a_log_folder_deeper_in_the_source_is_named(pair: Pair) -> None:
    build(pair.src, {"a": "a", "var": {}})

    result = run_synchro(pair.src, pair.rep, "24", pair.src / "var", "--once", "-q")

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert "NOTE the log folder var/LOGS/ is inside the source; it is left out of the mirror" in (
        log_messages(pair.src / "var")
    )
    assert os.listdir(pair.rep / "var") == []


def test_once_with_max_is_a_usage_error(pair: Pair) -> None:
    result = run_synchro(pair.src, pair.rep, "--once", "--max", "2", cwd=pair.root)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "synchro: error: --max counts the cycles of ongoing mode; --once runs one cycle: "
        "give one of them (see synchro -h)\n"
    )
    assert not (pair.root / "LOGS").exists()


@pytest.fixture
def read_only_logs(pair: Pair) -> Iterator[Path]:
    """``pair.logs/LOGS`` on a read-only tmpfs: the log cannot be written at all."""
    logs = pair.logs / "LOGS"
    logs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(logs)], check=True)
    try:
        yield logs
    finally:
        subprocess.run(["umount", str(logs)], check=True)


def test_a_log_that_cannot_be_written_is_one_warning_with_the_helper(
    pair: Pair, read_only_logs: Path, helper_keeps_a_part: list[bool], capfd: pytest.CaptureFixture[str]
) -> None:
    """The run is shared with a forked helper, which writes its own lines: it must not warn again."""
    build(pair.src, {f"d{folder:02}": {f"f{file}": "x" for file in range(10)} for folder in range(8)})

    report = synchro.mirror(pair.src, pair.rep, logpath=pair.logs)

    assert helper_keeps_a_part == [True]
    assert report.exit_code == 0
    assert len(os.listdir(pair.rep)) == 8
    err = capfd.readouterr().err
    assert err == (
        f"synchro: warning: cannot write the log in {read_only_logs}: Read-only file system; "
        "the run goes on without it\n"
    )
