"""A closed pipe (``synchro ... | head``) is a quiet, normal end of the output.

The reader of a pipe may stop at any moment; the run must still finish and
log every line, say nothing about the pipe, and exit with its own code.
Two real pipes: one whose reader is gone before the command writes a line,
and one whose reader reads the first line and then closes while the command
is blocked on a full pipe (so the close lands in the middle of the run, at
a known point, with no timing involved).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import Pair, child_env, synchro_command
from test_tasks import INV, REPO, files_of, ini, tree
from treeutil import assert_mirror, build, log_messages

# Enough console output to fill a pipe (64 KiB) several times over.
FILES = 3000


def run_with_closed_pipe(command: list[str], when: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``command`` with its standard output on a pipe whose reader goes away.

    ``when``: "before" the command starts, or "mid-run" after the first line
    (the command then has more to write than the pipe holds, so it is
    blocked writing when the reader closes). Returns (exit code, stderr).
    """
    read_end, write_end = os.pipe()
    if when == "before":
        os.close(read_end)
    child = subprocess.Popen(command, stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    os.close(write_end)
    if when == "mid-run":
        with os.fdopen(read_end, "rb", buffering=0) as reader:
            first = b""
            while not first.endswith(b"\n"):
                chunk = reader.read(1)
                assert chunk, "the command wrote no line"
                first += chunk
    _, err = child.communicate(timeout=120)
    return child.returncode, err


@pytest.mark.parametrize("when", ["before", "mid-run"])
def test_the_command_finishes_a_run_whose_output_is_closed(pair: Pair, when: str) -> None:
    build(pair.src, {f"file{index:05}.txt": "x" for index in range(FILES)})

    code, err = run_with_closed_pipe(
        [*synchro_command(), str(pair.src), str(pair.rep), "24", str(pair.logs), "--once"],
        when,
        pair.root,
        child_env(),
    )

    assert (code, err) == (0, "")
    assert_mirror(pair.src, pair.rep)
    messages = log_messages(pair.logs)
    assert sum(message.startswith("ADDED ") for message in messages) == FILES
    assert messages[-1].startswith(f"SUMMARY added={FILES} ")


def test_a_failed_run_keeps_its_exit_code_when_its_output_is_closed(pair: Pair) -> None:
    build(pair.src, {f"f{index:02}": "x" for index in range(12)})
    first = [*synchro_command(), str(pair.src), str(pair.rep), "24", str(pair.logs), "--once", "-q"]
    assert subprocess.run(first, env=child_env(), check=False).returncode == 0
    for index in range(12):
        os.unlink(pair.src / f"f{index:02}")

    code, err = run_with_closed_pipe(
        [*synchro_command(), str(pair.src), str(pair.rep), "24", str(pair.logs), "--once"],
        "before",
        pair.root,
        child_env(),
    )

    assert (code, err) == (3, "")


def test_a_verification_finishes_when_its_output_is_closed(pair: Pair) -> None:
    build(pair.src, {f"file{index:05}.txt": "x" for index in range(FILES)})
    first = [*synchro_command(), str(pair.src), str(pair.rep), "24", str(pair.logs), "--once", "-q"]
    assert subprocess.run(first, env=child_env(), check=False).returncode == 0
    for index in range(0, FILES, 2):
        os.unlink(pair.rep / f"file{index:05}.txt")  # a difference for every other file

    code, err = run_with_closed_pipe(
        [*synchro_command(), str(pair.src), str(pair.rep), "24", str(pair.logs), "--verify"],
        "before",
        pair.root,
        child_env(),
    )

    assert (code, err) == (1, "")  # the replica differs: the verification's own code


@pytest.mark.parametrize("args", [["-h"], ["--version"]], ids=["help", "version"])
def test_help_into_a_closed_pipe_is_quiet(tmp_path: Path, args: list[str]) -> None:
    code, err = run_with_closed_pipe([*synchro_command(), *args], "before", tmp_path, child_env())
    assert (code, err) == (0, "")


# --- the tasks ------------------------------------------------------------------------------------


def inv_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SYNCHRO_", "INVOKE_"))}
    env.update(PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")
    return env


@pytest.fixture
def four_pairs(tmp_path: Path) -> Path:
    for name in "abcd":
        tree(tmp_path / name, {f"file{index:04}.txt": name for index in range(FILES // 4)})
    (tmp_path / "mirror").mkdir()  # the drive: create_replica makes only the last folder
    return ini(
        tmp_path / "backups.ini",
        "[DEFAULT]\ncreate_replica = yes\n"
        + "".join(f"[{name}]\nsource = {name}\nreplica = mirror/{name}\n" for name in "abcd"),
    )


@pytest.mark.parametrize("when", ["before", "mid-run"])
def test_backup_all_finishes_every_pair_when_its_output_is_closed(
    tmp_path: Path, four_pairs: Path, when: str
) -> None:
    code, err = run_with_closed_pipe(
        [str(INV), "-r", str(REPO), "backup-all", "-v"], when, tmp_path, inv_env()
    )

    assert (code, err) == (0, "")
    for name in "abcd":
        assert len(files_of(tmp_path / "mirror" / name)) == FILES // 4
    summaries = [message for message in log_messages(tmp_path) if message.startswith("SUMMARY ")]
    assert len(summaries) == 4
    assert all(message.startswith(f"SUMMARY added={FILES // 4} ") for message in summaries)


@pytest.mark.parametrize(
    "task", [["status", "--json"], ["status"], ["pairs"]], ids=["status-json", "status", "pairs"]
)
def test_a_report_task_into_a_closed_pipe_is_quiet(tmp_path: Path, four_pairs: Path, task: list[str]) -> None:
    code, err = run_with_closed_pipe([str(INV), "-r", str(REPO), *task], "before", tmp_path, inv_env())
    assert (code, err) == (0, "")


def test_pairs_keeps_its_exit_code_when_its_output_is_closed(tmp_path: Path) -> None:
    ini(tmp_path / "backups.ini", "[gone]\nsource = not-mounted\nreplica = r\n")
    code, err = run_with_closed_pipe([str(INV), "-r", str(REPO), "pairs"], "before", tmp_path, inv_env())
    assert (code, err) == (2, "")


def test_a_restore_finishes_when_its_output_is_closed(tmp_path: Path) -> None:
    tree(tmp_path / "docs", {f"file{index:04}.txt": "d" for index in range(FILES // 4)})
    ini(tmp_path / "backups.ini", "[docs]\nsource = docs\nreplica = mirror\ncreate_replica = yes\n")
    backup = [str(INV), "-r", str(REPO), "backup", "-p", "docs", "-q"]
    assert subprocess.run(backup, cwd=tmp_path, env=inv_env(), check=False).returncode == 0

    code, err = run_with_closed_pipe(
        [str(INV), "-r", str(REPO), "restore", "-p", "docs", "--to", "back", "-v"],
        "before",
        tmp_path,
        inv_env(),
    )

    assert (code, err) == (0, "")
    assert files_of(tmp_path / "back") == files_of(tmp_path / "docs")
