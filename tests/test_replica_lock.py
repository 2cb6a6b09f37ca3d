"""One run per replica: the lock is an ``flock`` on the replica folder itself.

Whatever the environment of a run (``$TMPDIR`` set or not, another user),
and whatever path names the folder (a symlink, a bind mount), a second run
on the same replica is refused with ``LOCKED`` (exit 4) while the first
holds it, and no lock file is left anywhere. Each race holds the first run
at a hook (``before_action``) while the second one runs to its end.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Pair, child_env, open_to_others, run_as_nobody, synchro_command
from test_tasks import Inv, ini
from treeutil import assert_mirror, build, log_messages, summary

import synchro
from synchro import ConfigError, Hooks, ReplicaLocked
from synchro.pipeline.helper import ENV as PROCESSES
from synchro.pipeline.lock import ReplicaLock
from synchro.pipeline.plan import Action

LOCKED = "replica {} is locked by another synchro run; try again later"


def command(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*synchro_command(), *map(str, args)],
        capture_output=True,
        text=True,
        env={**child_env(), **env},
        timeout=60,
        check=False,
    )


def while_running(pair: Pair, second: Callable[[], Any], **env: str) -> Any:
    """Run the first mirror of ``pair`` in this process (with ``env`` set), and
    ``second()`` while it holds the lock, before its first change; its result."""
    build(pair.src, {"f": "data", "g": "more"})
    results: list[Any] = []

    def hold(action: Action) -> None:
        if not results:
            results.append(second())

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        report = synchro.mirror(pair.src, pair.rep, logpath=pair.logs, hooks=Hooks(before_action=hold))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert report.exit_code == 0
    assert_mirror(pair.src, pair.rep)
    return results[0]


def test_a_run_with_another_tmpdir_is_locked_out_and_no_file_is_left(pair: Pair) -> None:
    """The first run has TMPDIR=first, the second TMPDIR=second (cron has none at all)."""
    temps = [pair.root / "first", pair.root / "second"]
    for temp in temps:
        temp.mkdir()

    result = while_running(
        pair,
        lambda: command(pair.src, pair.rep, "1", pair.logs, "--once", env={"TMPDIR": str(temps[1])}),
        TMPDIR=str(temps[0]),
    )

    assert result.returncode == 4
    assert result.stdout.splitlines()[1].endswith(f" LOCKED {LOCKED.format(pair.rep)}")
    assert [os.listdir(temp) for temp in temps] == [[], []]
    assert sorted(os.listdir(pair.root)) == ["LOGS", "first", "rep", "second", "src"]


def test_a_run_without_tmpdir_is_locked_out(pair: Pair) -> None:
    env = {key: value for key, value in child_env().items() if key != "TMPDIR"}
    result = while_running(
        pair,
        lambda: subprocess.run(
            [*synchro_command(), str(pair.src), str(pair.rep), "1", str(pair.logs), "--once"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        ),
        TMPDIR=str(pair.root / "src"),  # anything: the first run's TMPDIR plays no part
    )
    assert result.returncode == 4


@pytest.mark.parametrize("how", ["symlink", "bind-mount"])
def test_another_path_to_the_replica_is_the_same_lock(
    pair: Pair, bind_mount: Callable[[Path, Path], Path], how: str
) -> None:
    alias = pair.root / "alias"
    if how == "symlink":
        alias.symlink_to(pair.rep)
    else:
        bind_mount(pair.rep, alias)

    def second() -> subprocess.CompletedProcess[str]:
        return command(pair.src, alias, "1", pair.logs, "--once", env={})

    result = while_running(pair, second)

    assert result.returncode == 4
    shown = pair.rep if how == "symlink" else alias  # a symlink is resolved, a mount point is a folder
    assert result.stdout.splitlines()[1].endswith(f" LOCKED {LOCKED.format(shown)}")


def test_a_task_on_a_locked_replica_exits_4(tmp_path: Path) -> None:
    pair = Pair(tmp_path, tmp_path / "src", tmp_path / "rep", tmp_path)
    pair.src.mkdir()
    pair.rep.mkdir()
    ini(tmp_path / "backups.ini", f"[docs]\nsource = {pair.src}\nreplica = {pair.rep}\n")
    inv = Inv(tmp_path)

    result = while_running(pair, lambda: inv("backup", "--pair", "docs", env={"TMPDIR": str(pair.src)}))

    assert result.returncode == 4
    assert result.stdout.splitlines()[-1] == f"docs: locked: {LOCKED.format(pair.rep)} (exit 4)"


def test_the_api_raises_replica_locked_while_a_run_holds_it(pair: Pair) -> None:
    def second() -> synchro.Report:
        return synchro.mirror(pair.src, pair.rep)

    report = while_running(pair, second)

    assert (report.exit_code, report.message) == (4, LOCKED.format(pair.rep))
    with ReplicaLock(str(pair.rep)), pytest.raises(ReplicaLocked):
        ReplicaLock(str(pair.rep)).__enter__()
    with ReplicaLock(str(pair.rep)):  # released by both
        pass


def test_another_user_and_root_exclude_each_other(pair: Pair) -> None:
    open_to_others(pair.rep)
    replica = str(pair.rep)

    def try_lock() -> tuple[int, Any]:
        try:
            with ReplicaLock(replica):
                return 0, "locked"
        except ReplicaLocked:
            return 0, "refused"

    with ReplicaLock(replica):
        assert run_as_nobody(try_lock).payload == "refused"
    assert run_as_nobody(try_lock).payload == "locked"


def test_a_replica_that_cannot_be_opened_is_a_clean_refusal(pair: Pair) -> None:
    pair.rep.chmod(0o700)  # root's: nobody cannot read it
    open_to_others(pair.root)
    replica = str(pair.rep)

    def try_lock() -> tuple[int, Any]:
        try:
            with ReplicaLock(replica):
                return 0, "locked"
        except ConfigError as error:
            return 0, str(error)

    assert run_as_nobody(try_lock).payload == f"cannot lock replica {replica}: Permission denied"


def test_the_helper_process_leaves_no_lock_behind(pair: Pair) -> None:
    """A run shared with the forked helper (which inherits the lock's descriptor):
    once the command has exited, the replica is free."""
    build(pair.src, {f"d{folder}": {f"f{index}": "x" for index in range(50)} for folder in range(8)})

    result = command(pair.src, pair.rep, "1", pair.logs, "--once", "-q", env={PROCESSES: "2"})

    assert (result.returncode, result.stderr) == (0, "")
    assert_mirror(pair.src, pair.rep)
    with ReplicaLock(str(pair.rep)):
        pass
    assert log_messages(pair.logs)[-1] == summary(added=408, nbytes=400)
