"""A pair's folders are compared by identity, and a replica is created only as its last folder.

A bind mount shows one folder under a second path: string comparisons of
paths miss that the replica is the source's parent (the mirror would delete
the originals) or lies inside it (each run would nest the replica in itself).
Every case here is a refusal, exit 2, with nothing touched, through the API,
the command and the tasks. ``--create-replica`` creates the replica folder
but never its missing parents (the mount point of an unplugged drive).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_synchro
from test_tasks import Inv, files_of, ini, one_line_error, tree
from treeutil import BASE_NS, Snapshot, assert_mirror, build, log_messages, snapshot, summary

from synchro import ConfigError, Synchro, mirror

Bind = Callable[[Path, Path], Path]
# tmp, bind -> (source, replica, logpath, options, message)
Case = Callable[[Path, Bind], tuple[Path, Path, Path, dict[str, Any], str]]


def _tree(root: Path) -> None:
    """``data/docs`` (the user's documents) and ``home/backup`` (an existing replica)."""
    for folder in ("data/docs", "home/backup", "logs"):
        (root / folder).mkdir(parents=True)
    build(root / "data" / "docs", {"doc0.odt": "zero", "sub": {"doc1.odt": "one"}}, mtime_ns=BASE_NS)
    build(root / "home", {"notes.txt": "notes"}, mtime_ns=BASE_NS)


def _replica_is_the_parent_of_the_source(
    tmp: Path, bind: Bind
) -> tuple[Path, Path, Path, dict[str, Any], str]:
    alias = bind(tmp / "data", tmp / "alias")
    return (
        tmp / "data" / "docs",
        alias,
        tmp / "logs",
        {},
        f"source {tmp}/data/docs is inside the replica {alias}",
    )


def _replica_inside_the_source(tmp: Path, bind: Bind) -> tuple[Path, Path, Path, dict[str, Any], str]:
    alias = bind(tmp / "home", tmp / "alias")
    return (
        alias,
        tmp / "home" / "backup",
        tmp / "logs",
        {},
        f"replica {tmp}/home/backup is inside the source {alias}",
    )


def _same_folder(tmp: Path, bind: Bind) -> tuple[Path, Path, Path, dict[str, Any], str]:
    alias = bind(tmp / "data", tmp / "alias")
    return tmp / "data", alias, tmp / "logs", {}, f"source and replica are the same folder: {tmp}/data"


def _replica_to_create_inside_the_source(
    tmp: Path, bind: Bind
) -> tuple[Path, Path, Path, dict[str, Any], str]:
    alias = bind(tmp / "home", tmp / "alias")
    return (
        alias,
        tmp / "home" / "new",
        tmp / "logs",
        {"create_replica": True},
        f"replica {tmp}/home/new is inside the source {alias}",
    )


def _logs_inside_the_replica(tmp: Path, bind: Bind) -> tuple[Path, Path, Path, dict[str, Any], str]:
    alias = bind(tmp / "home" / "backup", tmp / "alias")
    return (
        tmp / "data",
        tmp / "home" / "backup",
        alias,
        {},
        f"the log folder {alias}/LOGS is inside the replica {tmp}/home/backup: the mirror would delete it",
    )


def _replica_is_the_log_folder(tmp: Path, bind: Bind) -> tuple[Path, Path, Path, dict[str, Any], str]:
    (tmp / "logs" / "LOGS").mkdir()
    alias = bind(tmp / "logs" / "LOGS", tmp / "alias")
    return (
        tmp / "data",
        alias,
        tmp / "logs",
        {},
        f"replica {alias} is inside the log folder {tmp}/logs/LOGS",
    )


def _versions_inside_the_replica(tmp: Path, bind: Bind) -> tuple[Path, Path, Path, dict[str, Any], str]:
    alias = bind(tmp / "home" / "backup", tmp / "alias")
    return (
        tmp / "data",
        tmp / "home" / "backup",
        tmp / "logs",
        {"versions": alias / "old"},
        f"versions folder {alias}/old is inside the replica {tmp}/home/backup; give a folder outside both",
    )


def _versions_contain_the_source(tmp: Path, bind: Bind) -> tuple[Path, Path, Path, dict[str, Any], str]:
    alias = bind(tmp / "data", tmp / "alias")
    return (
        tmp / "data" / "docs",
        tmp / "home" / "backup",
        tmp / "logs",
        {"versions": alias},
        f"versions folder {alias} contains the source {tmp}/data/docs; give a folder outside both",
    )


CASES: dict[str, Case] = {
    "replica-is-the-parent-of-the-source": _replica_is_the_parent_of_the_source,
    "replica-inside-the-source": _replica_inside_the_source,
    "same-folder": _same_folder,
    "replica-to-create-inside-the-source": _replica_to_create_inside_the_source,
    "logs-inside-the-replica": _logs_inside_the_replica,
    "replica-is-the-log-folder": _replica_is_the_log_folder,
    "versions-inside-the-replica": _versions_inside_the_replica,
    "versions-contain-the-source": _versions_contain_the_source,
}


def _without_logs(snap: Snapshot) -> Snapshot:
    """Without the log, the one thing written, and the alias (a second view of a folder
    that is in the snapshot under its own name, and may be where the log is)."""
    return {
        path: entry
        for path, entry in snap.items()
        if b"LOGS" not in path.split(b"/") and path.split(b"/")[0] != b"alias"
    }


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_bind_mount_alias_is_refused_by_the_api_before_anything_is_touched(
    tmp_path: Path, bind_mount: Bind, case: Case
) -> None:
    _tree(tmp_path)
    source, replica, logpath, options, message = case(tmp_path, bind_mount)
    os.makedirs(logpath / "LOGS", exist_ok=True)  # making it would change its parent's time
    before = snapshot(tmp_path)

    report = mirror(source, replica, logpath=logpath, **options)

    assert (report.exit_code, report.message) == (2, message)
    assert _without_logs(snapshot(tmp_path)) == _without_logs(before)
    assert log_messages(logpath) == [
        f"START source={source} replica={replica} mode=single",
        f"ERROR {message}",
        summary(code=2),
    ]
    with Synchro(logpath, quiet=True) as api, pytest.raises(ConfigError, match=message):
        api.configure(source, replica, **options)


def test_the_issue_command_exits_2_and_the_originals_stay(tmp_path: Path, bind_mount: Bind) -> None:
    """``mount --bind /t/data /t/alias; synchro /t/data/docs /t/alias 1 logs --once``."""
    _tree(tmp_path)
    alias = bind_mount(tmp_path / "data", tmp_path / "alias")
    before = snapshot(tmp_path / "data")

    result = run_synchro(tmp_path / "data" / "docs", alias, "1", "logs", "--once", cwd=tmp_path)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"synchro: error: source {tmp_path}/data/docs is inside the replica {alias}\n"
    assert snapshot(tmp_path / "data") == before


def test_the_reverse_command_exits_2_and_nests_nothing(tmp_path: Path, bind_mount: Bind) -> None:
    """``mount --bind /t/home /t/alias; synchro /t/alias /t/home/backup ...``."""
    _tree(tmp_path)
    alias = bind_mount(tmp_path / "home", tmp_path / "alias")

    result = run_synchro(alias, tmp_path / "home" / "backup", "1", "logs", "--once", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr == (f"synchro: error: replica {tmp_path}/home/backup is inside the source {alias}\n")
    assert os.listdir(tmp_path / "home" / "backup") == []


def test_a_log_folder_inside_the_source_through_an_alias_is_left_out(
    tmp_path: Path, bind_mount: Bind
) -> None:
    """The log folder named through a bind mount of the source is still found in it,
    and left out of the mirror as it is when named directly."""
    _tree(tmp_path)
    alias = bind_mount(tmp_path / "data", tmp_path / "alias")
    (tmp_path / "data" / "docs" / "LOGS").mkdir()  # beforehand: making it changes the time of docs

    report = mirror(tmp_path / "data", tmp_path / "home" / "backup", logpath=alias / "docs")

    assert report.exit_code == 0
    assert (tmp_path / "data" / "docs" / "LOGS").is_dir()
    assert not (tmp_path / "home" / "backup" / "docs" / "LOGS").exists()
    assert_mirror(tmp_path / "data", tmp_path / "home" / "backup", ignore=["docs/LOGS"])


# --- a root mounted inside the other tree: never entered --------------------------------------


def test_the_source_mounted_inside_the_replica_is_never_emptied(tmp_path: Path, bind_mount: Bind) -> None:
    """``mount --bind /data /backup/view; synchro /data /backup``: ``view`` is only in the
    replica, and deleting it would delete the originals through the mount."""
    _tree(tmp_path)
    source, replica = tmp_path / "data", tmp_path / "home" / "backup"
    bind_mount(source, replica / "view")
    before = snapshot(source)

    result = run_synchro(source, replica, "1", tmp_path / "logs", "--once", "-q")

    assert result.returncode == 1
    assert snapshot(source) == before
    messages = log_messages(tmp_path / "logs")
    assert "FAILED view/: is the source folder itself (mounted here too): left alone" in messages
    assert not [message for message in messages if message.startswith("DELETED")]
    # Quiet, the failed run still says so on stderr: its START, the FAILED line, its SUMMARY.
    assert [line[20:].split(" ")[0] for line in result.stderr.splitlines()] == ["START", "FAILED", "SUMMARY"]


def test_the_replica_mounted_inside_the_source_is_never_copied_into_itself(
    tmp_path: Path, bind_mount: Bind
) -> None:
    _tree(tmp_path)
    source, replica = tmp_path / "data", tmp_path / "home" / "backup"
    bind_mount(replica, source / "docs" / "mnt")

    for _ in range(2):  # a second run does not nest a level deeper
        report = mirror(source, replica, logpath=tmp_path / "logs")
        assert report.exit_code == 1
        assert report.failed == [("docs/mnt/", "is the replica folder itself (mounted here too): left alone")]

    assert sorted(str(path.relative_to(replica)) for path in replica.rglob("*")) == [
        "docs",
        "docs/doc0.odt",
        "docs/mnt",  # the mount point itself, made empty: its content is not entered
        "docs/sub",
        "docs/sub/doc1.odt",
    ]


# --- the tasks: a pair, and pairs that overlap through a bind mount -----------------------------


def test_a_task_on_a_pair_whose_replica_is_an_alias_of_the_source_parent_exits_2(
    tmp_path: Path, bind_mount: Bind
) -> None:
    _tree(tmp_path)
    alias = bind_mount(tmp_path / "data", tmp_path / "alias")
    ini(tmp_path / "backups.ini", "[docs]\nsource = data/docs\nreplica = alias\nlogpath = logs\n")
    before = snapshot(tmp_path / "data")

    result = Inv(tmp_path)("backup", "--pair", "docs")

    message = f"source {tmp_path}/data/docs is inside the replica {alias}"
    assert (result.returncode, result.stdout) == (2, f"docs: error: {message} (exit 2)\n")
    assert log_messages(tmp_path / "logs") == [f"ERROR {message}"]
    assert snapshot(tmp_path / "data") == before


def test_pairs_that_overlap_through_a_bind_mount_are_refused_when_the_file_is_read(
    tmp_path: Path, bind_mount: Bind
) -> None:
    _tree(tmp_path)
    bind_mount(tmp_path / "data", tmp_path / "alias")
    ini(
        tmp_path / "backups.ini",
        "[docs]\nsource = data/docs\nreplica = home/backup\n"
        "[other]\nsource = elsewhere\nreplica = alias/docs/copy\n",
    )

    line = one_line_error(Inv(tmp_path)("backup-all"))

    assert line == (
        f"synchro: error: backups.ini: the replica of [other] ({tmp_path}/alias/docs/copy) "
        f"overlaps the source of [docs] ({tmp_path}/data/docs); a mirror would overwrite that pair's originals"
    )
    assert files_of(tmp_path / "data") == {"docs/doc0.odt": "zero", "docs/sub/doc1.odt": "one"}


# --- create_replica: the last folder only --------------------------------------------------------


def test_create_replica_creates_the_last_folder(tmp_path: Path) -> None:
    tree(tmp_path / "src", {"f": "data"})
    replica = tmp_path / "drive" / "backup"
    replica.parent.mkdir()

    report = mirror(tmp_path / "src", replica, logpath=tmp_path, create_replica=True)

    assert report.exit_code == 0
    assert_mirror(tmp_path / "src", replica)
    assert log_messages(tmp_path)[:3] == [
        f"START source={tmp_path}/src replica={replica} mode=single",
        f"CREATED replica folder {replica}",
        "ADDED f",
    ]


def _missing_parent(replica: Path) -> str:
    return (
        f"replica folder does not exist, nor its parent folder: {replica} (is the backup drive "
        "mounted? create_replica / --create-replica creates only the last folder)"
    )


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_create_replica_never_creates_a_missing_parent_api(tmp_path: Path, dry_run: bool) -> None:
    tree(tmp_path / "src", {"f": "data"})
    replica = tmp_path / "media" / "ana" / "USB" / "backup"  # the mount point was removed
    (tmp_path / "media" / "ana").mkdir(parents=True)

    report = mirror(tmp_path / "src", replica, logpath=tmp_path, create_replica=True, dry_run=dry_run)

    assert (report.exit_code, report.message) == (2, _missing_parent(replica))
    assert os.listdir(tmp_path / "media" / "ana") == []


def test_create_replica_never_creates_a_missing_parent_command(tmp_path: Path) -> None:
    tree(tmp_path / "src", {"f": "data"})
    replica = tmp_path / "unplugged" / "backup"

    result = run_synchro(tmp_path / "src", replica, "--once", "--create-replica", cwd=tmp_path)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"synchro: error: {_missing_parent(replica)}\n"
    assert not (tmp_path / "unplugged").exists()

    (tmp_path / "unplugged").mkdir()  # the drive is back
    result = run_synchro(tmp_path / "src", replica, "--once", "--create-replica", "-q", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert_mirror(tmp_path / "src", replica)


def test_create_replica_never_creates_a_missing_parent_tasks(tmp_path: Path) -> None:
    tree(tmp_path / "docs", {"f": "data"})
    ini(tmp_path / "backups.ini", "[docs]\nsource = docs\nreplica = unplugged/docs\ncreate_replica = yes\n")

    result = Inv(tmp_path)("backup", "--pair", "docs")

    message = _missing_parent(tmp_path / "unplugged" / "docs")
    assert (result.returncode, result.stdout) == (2, f"docs: error: {message} (exit 2)\n")
    assert log_messages(tmp_path) == [f"ERROR {message}"]
    assert not (tmp_path / "unplugged").exists()
