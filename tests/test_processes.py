"""Real processes: killed mid-run, running at once, stopped by signals.

The child processes are deterministic: a small Python script runs synchro
with a hook that tells the parent where it is ("READY") and then blocks
reading its standard input, so the parent kills or releases it at exactly
that point. Nothing waits on a timer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import Pair, child_env, run_synchro, start_python, synchro_command
from treeutil import (
    BASE_NS,
    assert_mirror,
    assert_rsync_clean,
    build,
    log_lines,
    log_messages,
    snapshot,
    strip_stamp,
    write,
)

CHILD = r"""
import json, os, sys
import synchro, synchro.endpoints.local.filecopy
from synchro import Hooks

args = json.loads(sys.argv[1])

def wait_for_parent():
    print("READY", flush=True)
    os.read(0, 1)  # the parent kills us here, or writes a byte to let us go on

hooks = None
if args["mode"] == "after-files":
    copies = 0
    def before_action(action):
        global copies
        if action.op.name == "COPY":
            if copies == args["files"]:
                wait_for_parent()
            copies += 1
    hooks = Hooks(before_action=before_action)
elif args["mode"] == "mid-copy":
    real_copy = synchro.endpoints.local.filecopy._copy_data
    def half_then_wait(src, dst, on_chunk=None, size=None):
        half = os.read(src, os.fstat(src).st_size // 2)
        os.write(dst, half)
        wait_for_parent()
        return len(half) + real_copy(src, dst, on_chunk)
    synchro.endpoints.local.filecopy._copy_data = half_then_wait
    synchro.endpoints.local.filecopy._copy_small = None  # the copy in Python, where it can stop halfway

if "cli" in args:
    from synchro.faces.cli import main
    sys.exit(main(args["cli"]))
report = synchro.mirror(args["src"], args["rep"], logpath=args["logs"], hooks=hooks)
sys.exit(int(report.exit_code))
"""


def start_child(**args: Any) -> subprocess.Popen[str]:
    child = start_python(CHILD, json.dumps(args))
    assert child.stdout is not None
    line = child.stdout.readline()
    if line != "READY\n":
        child.kill()
        _, err = child.communicate(timeout=30)
        pytest.fail(f"the child did not reach its hook: {line!r} {err}")
    return child


run_cli = run_synchro


def temporaries(root: Path) -> list[bytes]:
    return [path for path in snapshot(root, content=False) if b".synchro-tmp-" in path]


def assert_no_torn_file(pair: Pair, old: dict[bytes, Any]) -> None:
    """Every file under a real name is complete: the old replica version or the new source one."""
    new = snapshot(pair.src)
    for path, entry in snapshot(pair.rep).items():
        if entry.kind != "file" or b".synchro-tmp-" in path:
            continue
        assert entry.data in {getattr(old.get(path), "data", None), getattr(new.get(path), "data", None)}, (
            path
        )


# --- kill -9 and rerun ---------------------------------------------------------------------------


def _tree_with_old_replica(pair: Pair) -> dict[bytes, Any]:
    build(pair.src, {f"f{index:02d}": f"old {index}" for index in range(20)}, mtime_ns=BASE_NS)
    write(pair.src / "big.bin", os.urandom(1 << 20), BASE_NS)
    run_cli(pair.src, pair.rep, "--once", "-q", cwd=pair.root)
    for index in range(20):
        write(pair.src / f"f{index:02d}", f"new version {index}", BASE_NS + 1)
    write(pair.src / "big.bin", os.urandom(1 << 20), BASE_NS + 1)
    build(pair.src, {"added": {f"n{index}": "n" for index in range(10)}})
    return snapshot(pair.rep)


@pytest.mark.parametrize(
    "mode", ["after-files", "mid-copy"], ids=["between-files", "in-the-middle-of-a-copy"]
)
def test_kill_9_leaves_no_torn_file_and_the_next_run_converges(pair: Pair, mode: str) -> None:
    old = _tree_with_old_replica(pair)

    child = start_child(mode=mode, files=7, src=str(pair.src), rep=str(pair.rep), logs=str(pair.logs))
    child.kill()  # SIGKILL: no cleanup of any kind runs
    child.communicate(timeout=30)

    assert child.returncode == -signal.SIGKILL
    assert_no_torn_file(pair, old)
    if mode == "mid-copy":  # the half-written file is only a temporary
        assert len(temporaries(pair.rep)) == 1
    assert all(
        re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [A-Z]+ ", line) for line in log_lines(pair.logs)
    )

    rerun = run_cli(pair.src, pair.rep, "--once", cwd=pair.root)  # the kernel released the lock

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert temporaries(pair.rep) == []
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)


# --- runs at once on one replica -----------------------------------------------------------------


def start_runs(pair: Pair, count: int) -> list[subprocess.Popen[str]]:
    """``count`` runs of the command on the pair at once, each with its own log folder."""
    return [
        subprocess.Popen(
            [*synchro_command(), str(pair.src), str(pair.rep), "1", str(pair.root / f"log{index}"), "--once"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for index in range(count)
    ]


def test_a_second_run_on_a_locked_replica_exits_4(pair: Pair) -> None:
    build(pair.src, {f"f{index}": str(index) for index in range(5)})
    holder = start_child(
        mode="after-files", files=0, src=str(pair.src), rep=str(pair.rep), logs=str(pair.logs)
    )

    others = start_runs(pair, 7)
    outputs = [other.communicate(timeout=60) for other in others]
    assert os.listdir(pair.rep) == []  # held, and no lock file inside the replica
    holder.communicate(input="x", timeout=60)  # let the first run finish

    assert holder.returncode == 0
    assert [other.returncode for other in others] == [4] * 7
    locked = f"LOCKED replica {pair.rep} is locked by another synchro run; try again later"
    for out, err in outputs:
        assert [strip_stamp(line) for line in out.splitlines()][1] == locked
        assert err == ""
    # The lock is outside the replica: the replica is an exact mirror.
    assert_mirror(pair.src, pair.rep)


def test_of_eight_runs_started_at_once_exactly_one_mirrors(pair: Pair) -> None:
    build(
        pair.src,
        {f"d{folder}": {f"f{index:03d}": "x" * index for index in range(100)} for folder in range(3)},
    )

    runs = start_runs(pair, 8)
    outputs = [run.communicate(timeout=60) for run in runs]

    codes = [run.returncode for run in runs]
    assert set(codes) <= {0, 4}, outputs
    summaries = [strip_stamp(out.splitlines()[-1]) for out, _ in outputs]
    mirrored = [text for text in summaries if text.startswith("SUMMARY added=303 ")]
    assert len(mirrored) == 1, summaries
    for code, text in zip(codes, summaries, strict=True):
        if not text.startswith("SUMMARY added=303 "):  # locked out, or came after and found nothing to do
            assert text.startswith("SUMMARY added=0 overwritten=0 deleted=0 ")
            assert text.endswith(f"exit={code}")
    assert_mirror(pair.src, pair.rep)


def test_many_cron_runs_share_one_daily_log(tmp_path: Path) -> None:
    pairs = 6
    for index in range(pairs):
        os.makedirs(tmp_path / f"src{index}")
        os.makedirs(tmp_path / f"rep{index}")
        build(
            tmp_path / f"src{index}", {f"pair{index}-{number:03d}-" + "y" * 80: "" for number in range(300)}
        )

    runs = [
        subprocess.Popen(
            [
                *synchro_command(),
                str(tmp_path / f"src{index}"),
                str(tmp_path / f"rep{index}"),
                "--once",
                "-q",
            ],
            cwd=tmp_path,
            env=child_env(),
        )
        for index in range(pairs)
    ]
    assert [run.wait(timeout=60) for run in runs] == [0] * pairs

    messages = log_messages(tmp_path)
    assert len(messages) == pairs * 302
    for index in range(pairs):
        added = [m for m in messages if m.startswith(f"ADDED pair{index}-")]
        assert sorted(added) == [f"ADDED pair{index}-{number:03d}-" + "y" * 80 for number in range(300)]
        assert (
            messages.count(f"START source={tmp_path}/src{index} replica={tmp_path}/rep{index} mode=single")
            == 1
        )
    assert sum(m.startswith("SUMMARY added=300 ") for m in messages) == pairs


# --- signals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "synchro: interrupted"), (signal.SIGTERM, 143, "synchro: terminated")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_in_ongoing_mode_stops_it_cleanly(pair: Pair, signum: int, code: int, said: str) -> None:
    write(pair.src / "f", "data")
    command = subprocess.Popen(
        [*synchro_command(), str(pair.src), str(pair.rep), "0.25", str(pair.logs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert command.stdout is not None
    for line in command.stdout:  # the first cycle, then it waits a quarter of an hour
        if " SUMMARY " in line:
            break

    command.send_signal(signum)
    _, err = command.communicate(timeout=30)

    assert command.returncode == code
    assert err == f"{said}\n"
    messages = log_messages(pair.logs)
    by = "Ctrl+C" if signum == signal.SIGINT else "SIGTERM"
    assert messages[-1] == f"INTERRUPTED ongoing mode stopped by {by}"
    assert messages[-2].startswith("SUMMARY added=1 ")
    assert (pair.rep / "f").read_text() == "data"


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_in_the_middle_of_a_copy_removes_the_temporary(pair: Pair, signum: int, code: int) -> None:
    old = _tree_with_old_replica(pair)
    child = start_child(
        mode="mid-copy", cli=[str(pair.src), str(pair.rep), "1", str(pair.logs), "--once", "-q"]
    )
    assert len(temporaries(pair.rep)) == 1

    child.send_signal(signum)
    child.communicate(timeout=30)

    assert child.returncode == code
    assert temporaries(pair.rep) == []
    assert_no_torn_file(pair, old)
    messages = log_messages(pair.logs)
    by = "Ctrl+C" if signum == signal.SIGINT else "SIGTERM"
    assert messages[-2] == f"INTERRUPTED the run was stopped by {by}; the replica holds no partial file"
    assert messages[-1].startswith("SUMMARY ") and messages[-1].endswith(f" exit={code}")
