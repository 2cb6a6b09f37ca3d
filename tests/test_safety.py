"""Nothing torn, nothing lost (README: "Safety rules").

Refusals touch nothing; the deletion guard refuses a whole run; temporaries
never survive; a file that changes while it is copied is not installed; a
vanished entry is a warning; a source folder that cannot be read is not
mistaken for an empty one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Pair, chown_tree, mirror_as_nobody, open_to_others
from treeutil import (
    BASE_NS,
    SECOND,
    Link,
    Snapshot,
    Tree,
    assert_mirror,
    assert_rsync_clean,
    build,
    entries,
    log_messages,
    snapshot,
    summary,
    write,
)

import synchro.endpoints.local.filecopy
from synchro import Hooks, mirror
from synchro.endpoints.local.filecopy import OnChunk
from synchro.pipeline.plan import Action, Op

# --- refusals: exit 2, nothing touched -------------------------------------------------

Case = Callable[[Path], tuple[str, str, str, str]]  # tmp -> (source, replica, logpath, message)


def _missing_source(tmp: Path) -> tuple[str, str, str, str]:
    return f"{tmp}/nope", f"{tmp}/rep", f"{tmp}", f"source folder does not exist: {tmp}/nope"


def _source_is_a_file(tmp: Path) -> tuple[str, str, str, str]:
    write(tmp / "file", "x")
    return f"{tmp}/file", f"{tmp}/rep", f"{tmp}", f"source is not a folder: {tmp}/file"


def _replica_is_a_file(tmp: Path) -> tuple[str, str, str, str]:
    write(tmp / "file", "x")
    return f"{tmp}/src", f"{tmp}/file", f"{tmp}", f"replica is not a folder: {tmp}/file"


def _missing_replica(tmp: Path) -> tuple[str, str, str, str]:
    return (
        f"{tmp}/src",
        f"{tmp}/unmounted/backup",
        f"{tmp}",
        f"replica folder does not exist: {tmp}/unmounted/backup "
        "(is the backup drive mounted? create_replica / --create-replica creates it)",
    )


def _same_folder(tmp: Path) -> tuple[str, str, str, str]:
    return f"{tmp}/src", f"{tmp}/src", f"{tmp}", f"source and replica are the same folder: {tmp}/src"


def _same_via_symlink(tmp: Path) -> tuple[str, str, str, str]:
    os.symlink(tmp / "src", tmp / "alias")
    return f"{tmp}/src", f"{tmp}/alias", f"{tmp}", f"source and replica are the same folder: {tmp}/src"


def _same_via_dotdot(tmp: Path) -> tuple[str, str, str, str]:
    return f"{tmp}/src", f"{tmp}/rep/../src", f"{tmp}", f"source and replica are the same folder: {tmp}/src"


def _replica_inside_source(tmp: Path) -> tuple[str, str, str, str]:
    os.mkdir(tmp / "src" / "backup")
    return (
        f"{tmp}/src",
        f"{tmp}/src/backup",
        f"{tmp}",
        f"replica {tmp}/src/backup is inside the source {tmp}/src",
    )


def _replica_inside_source_via_link(tmp: Path) -> tuple[str, str, str, str]:
    os.mkdir(tmp / "src" / "backup")
    os.symlink(tmp / "src" / "backup", tmp / "link")
    return f"{tmp}/src", f"{tmp}/link", f"{tmp}", f"replica {tmp}/link is inside the source {tmp}/src"


def _source_inside_replica(tmp: Path) -> tuple[str, str, str, str]:
    os.mkdir(tmp / "rep" / "inner")
    return (
        f"{tmp}/rep/inner",
        f"{tmp}/rep",
        f"{tmp}",
        f"source {tmp}/rep/inner is inside the replica {tmp}/rep",
    )


def _replica_is_logs(tmp: Path) -> tuple[str, str, str, str]:
    os.mkdir(tmp / "LOGS")
    return f"{tmp}/src", f"{tmp}/LOGS", f"{tmp}", f"replica {tmp}/LOGS is inside the log folder {tmp}/LOGS"


def _replica_inside_logs(tmp: Path) -> tuple[str, str, str, str]:
    os.makedirs(tmp / "LOGS" / "rep")
    return (
        f"{tmp}/src",
        f"{tmp}/LOGS/rep",
        f"{tmp}",
        f"replica {tmp}/LOGS/rep is inside the log folder {tmp}/LOGS",
    )


def _logs_inside_replica(tmp: Path) -> tuple[str, str, str, str]:
    return (
        f"{tmp}/src",
        f"{tmp}/rep",
        f"{tmp}/rep",
        f"the log folder {tmp}/rep/LOGS is inside the replica {tmp}/rep: the mirror would delete it",
    )


def _without_logs(snap: Snapshot) -> Snapshot:
    return {path: entry for path, entry in snap.items() if b"LOGS" not in path.split(b"/")}


REFUSALS: dict[str, Case] = {
    "missing-source": _missing_source,
    "source-is-a-file": _source_is_a_file,
    "replica-is-a-file": _replica_is_a_file,
    "missing-replica": _missing_replica,
    "same-folder": _same_folder,
    "same-via-symlink": _same_via_symlink,
    "same-via-dotdot": _same_via_dotdot,
    "replica-inside-source": _replica_inside_source,
    "replica-inside-source-via-link": _replica_inside_source_via_link,
    "source-inside-replica": _source_inside_replica,
    "replica-is-LOGS": _replica_is_logs,
    "replica-inside-LOGS": _replica_inside_logs,
    "LOGS-inside-replica": _logs_inside_replica,
}


@pytest.mark.parametrize("case", list(REFUSALS.values()), ids=list(REFUSALS))
def test_a_bad_pair_is_refused_before_anything_is_touched(tmp_path: Path, case: Case) -> None:
    for folder in ("src", "rep"):
        os.mkdir(tmp_path / folder)
        build(tmp_path / folder, {"f": folder, "d": {"g": "g"}}, mtime_ns=BASE_NS)
    write(tmp_path / "rep" / "only-in-replica", "would be deleted")
    source, replica, logpath, message = case(tmp_path)
    # LOGS made beforehand: making it would change its parent's time.
    os.makedirs(Path(logpath) / "LOGS", exist_ok=True)
    before = snapshot(tmp_path)

    report = mirror(source, replica, logpath=logpath)

    assert report.exit_code == 2
    assert report.message == message
    # The log (asked for there, even inside the replica) is the one thing written.
    assert _without_logs(snapshot(tmp_path)) == _without_logs(before)
    assert log_messages(logpath) == [
        f"START source={source} replica={replica} mode=single",
        f"ERROR {message}",
        summary(code=2),
    ]


def test_create_replica_creates_a_missing_replica(pair: Pair) -> None:
    build(pair.src, {"f": "data"})
    replica = pair.root / "new" / "backup"
    replica.parent.mkdir()  # only the last folder is created (tests/test_roots.py)

    report = mirror(pair.src, replica, logpath=pair.logs, create_replica=True)

    assert report.exit_code == 0
    assert_mirror(pair.src, replica)
    assert log_messages(pair.logs)[:3] == [
        f"START source={pair.src} replica={replica} mode=single",
        f"CREATED replica folder {replica}",
        "ADDED f",
    ]


# --- the deletion guard -------------------------------------------------------------------

GUARD_MESSAGE = (
    "deletion guard: this run would delete {deleted} of the replica's {total} files (limit {limit}); "
    "nothing was changed. Is the source mounted? If the deletions are intended, "
    "rerun with a higher --max-delete (100% lifts the limit)"
)


@pytest.mark.parametrize(
    ("files", "deleted", "max_delete", "limit", "refused"),
    [
        pytest.param(20, 11, None, "50%", True, id="default-11-of-20"),
        pytest.param(20, 10, None, "50%", False, id="default-10-of-20-is-half"),
        pytest.param(10, 10, None, "50%", True, id="default-10-of-10"),
        pytest.param(9, 9, None, "50%", False, id="default-9-of-9-below-10"),
        pytest.param(20, 6, 5, "5", True, id="max-5-deletes-6"),
        pytest.param(20, 5, "5", "5", False, id="max-5-deletes-5"),
        pytest.param(3, 3, 2, "2", True, id="max-2-small-replica"),
        pytest.param(40, 11, "25%", "25%", True, id="25%-11-of-40"),
        pytest.param(40, 10, "25%", "25%", False, id="25%-10-of-40"),
        pytest.param(8, 8, "25%", "25%", False, id="25%-8-of-8-below-10"),
        pytest.param(20, 20, "100%", "100%", False, id="100%-lifts-it"),
        pytest.param(1, 1, 0, "0", True, id="max-0"),
    ],
)
def test_the_deletion_guard_refuses_the_whole_run(
    pair: Pair, files: int, deleted: int, max_delete: object, limit: str, refused: bool
) -> None:
    tree: Tree = {f"f{index:02d}": str(index) for index in range(files)}
    build(pair.src, {"sub": tree}, mtime_ns=BASE_NS)
    pair.mirror()
    for index in range(deleted):
        os.unlink(pair.src / "sub" / f"f{index:02d}")
    write(pair.src / "new-file", "would be added", BASE_NS)
    before = snapshot(pair.rep)
    start = len(log_messages(pair.logs))

    report = pair.mirror(max_delete=max_delete)

    messages = log_messages(pair.logs)[start:]
    if not refused:
        assert report.exit_code == 0
        assert len(report.deleted) == deleted
        assert_mirror(pair.src, pair.rep)
        return
    assert report.exit_code == 3
    assert snapshot(pair.rep) == before
    message = GUARD_MESSAGE.format(deleted=deleted, total=files, limit=limit)
    assert report.message == message
    assert messages[1] == f"REFUSED {message}"
    # The first paths (at most 10) are shown, each once.
    shown = messages[2 : 2 + min(deleted, 10)]
    assert len(set(shown)) == len(shown)
    assert set(shown) <= {f"REFUSED would delete sub/f{index:02d}" for index in range(deleted)}
    more = [f"REFUSED ... and {deleted - 10} more"] if deleted > 10 else []
    assert messages[2 + min(deleted, 10) :] == [*more, summary(code=3)]


def test_an_emptied_source_like_an_unmounted_drive_is_refused(pair: Pair) -> None:
    build(pair.src, {f"album{a}": {f"IMG_{i:04d}.jpg": "jpeg" for i in range(25)} for a in range(4)})
    pair.mirror()
    for album in range(4):
        shutil.rmtree(pair.src / f"album{album}")
    before = snapshot(pair.rep)

    report = pair.mirror()

    assert report.exit_code == 3
    assert snapshot(pair.rep) == before
    messages = log_messages(pair.logs)
    refused = [message for message in messages if message.startswith("REFUSED")]
    assert refused[0] == "REFUSED " + GUARD_MESSAGE.format(deleted=100, total=100, limit="50%")
    assert len(refused) == 1 + 10 + 1
    assert all(line.startswith("REFUSED would delete album") for line in refused[1:11])
    assert refused[-1] == "REFUSED ... and 90 more"
    assert messages[-1] == summary(code=3)


def test_type_changes_are_not_counted_as_deletions(pair: Pair) -> None:
    build(pair.src, {f"f{index:02d}": "x" for index in range(12)}, mtime_ns=BASE_NS)
    pair.mirror()
    for index in range(12):  # every file becomes a folder: nothing is lost
        os.unlink(pair.src / f"f{index:02d}")
        os.mkdir(pair.src / f"f{index:02d}")

    report = pair.mirror()

    assert report.exit_code == 0
    assert len(report.overwritten) == 12
    assert report.deleted == []


# --- temporaries ------------------------------------------------------------------------------


def test_leftover_temporaries_are_removed(pair: Pair) -> None:
    build(pair.src, {"f": "data", "sub": {"g": "more"}}, mtime_ns=BASE_NS)
    pair.mirror()
    write(pair.rep / ".synchro-tmp-0123456789ab", "half a file")
    write(pair.rep / "sub" / ".synchro-tmp-ba9876543210", "")
    os.symlink("target", pair.rep / "sub" / ".synchro-tmp-aaaaaaaaaaaa")  # a link being made
    start = len(log_messages(pair.logs))

    report = pair.mirror()

    assert report.exit_code == 0
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    # Cleaning up is not a change of the mirror: nothing is logged or counted.
    assert log_messages(pair.logs)[start + 1 :] == [summary(untouched=3)]


def test_a_source_entry_with_a_temporary_name_is_skipped(pair: Pair) -> None:
    write(pair.src / ".synchro-tmp-mine", "the user's file")
    write(pair.src / "f", "f")

    report = pair.mirror()

    assert report.skipped == [(".synchro-tmp-mine", "name reserved for temporaries")]
    assert not (pair.rep / ".synchro-tmp-mine").exists()
    assert "SKIPPED .synchro-tmp-mine: name reserved for temporaries" in log_messages(pair.logs)
    # And the next run does not mistake it for its own leftover in the source.
    assert pair.mirror().skipped == [(".synchro-tmp-mine", "name reserved for temporaries")]
    assert (pair.src / ".synchro-tmp-mine").read_text() == "the user's file"


# --- a source that changes during the run ----------------------------------------------------


def _grow(path: Path) -> None:
    with open(path, "ab") as handle:
        handle.write(b" and more")


def _touch(path: Path) -> None:
    os.utime(path, ns=(BASE_NS + 7 * SECOND, BASE_NS + 7 * SECOND))


def _truncate(path: Path) -> None:
    os.truncate(path, 2)


@pytest.mark.parametrize(
    "change", [_grow, _touch, _truncate], ids=["grows", "new-mtime-same-size", "truncated"]
)
@pytest.mark.parametrize("existed", [False, True], ids=["new-file", "replacing-old-version"])
def test_a_file_changed_while_copying_is_not_installed(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, change: Callable[[Path], None], existed: bool
) -> None:
    build(pair.src, {"other": "fine"}, mtime_ns=BASE_NS)
    if existed:
        write(pair.src / "doc", "old version", BASE_NS)
        pair.mirror()
    write(pair.src / "doc", "new version!", BASE_NS + SECOND)
    opened: dict[int, str] = {}  # by descriptor: copies may run on several threads at once

    def opener(name: str, dir_fd: int) -> int:
        fd = synchro.endpoints.local.filecopy.default_opener(name, dir_fd)
        opened[fd] = name
        return fd

    real_copy = synchro.endpoints.local.filecopy._copy_data

    def copy_then_change(src: int, dst: int, on_chunk: OnChunk | None = None, size: int | None = None) -> int:
        # The bytes are in the temporary; now the source changes under us,
        # before the copy is checked against it.
        copied = real_copy(src, dst, on_chunk, size)
        if opened.get(src) == "doc":
            change(pair.src / "doc")
        return copied

    monkeypatch.setattr(synchro.endpoints.local.filecopy, "_copy_data", copy_then_change)
    start = len(log_messages(pair.logs))

    report = mirror(pair.src, pair.rep, logpath=pair.logs, hooks=Hooks(opener=opener))

    assert report.exit_code == 0
    assert report.skipped == [("doc", "changed while copying")]
    assert "SKIPPED doc: changed while copying" in log_messages(pair.logs)[start:]
    assert sorted(os.listdir(pair.rep)) == (["doc", "other"] if existed else ["other"])  # no temporary
    if existed:
        assert (pair.rep / "doc").read_text() == "old version"

    monkeypatch.undo()
    again = pair.mirror()

    assert again.exit_code == 0
    assert (again.overwritten if existed else again.added) == ["doc"]
    assert_mirror(pair.src, pair.rep)


# --- entries that vanish between the plan and the copy -----------------------------------------


def _when(op: Op, path: str, then: Callable[[], None]) -> Hooks:
    def before_action(action: Action) -> None:
        if action.op is op and action.path == path:
            then()

    return Hooks(before_action=before_action)


def test_a_file_that_vanishes_before_its_copy_is_a_warning(pair: Pair) -> None:
    build(pair.src, {"gone.txt": "g", "stays.txt": "s"})

    report = mirror(
        pair.src,
        pair.rep,
        logpath=pair.logs,
        hooks=_when(Op.COPY, "gone.txt", lambda: os.unlink(pair.src / "gone.txt")),
    )

    assert report.exit_code == 0
    assert report.vanished == ["gone.txt"]
    assert report.added == ["stays.txt"]
    assert sorted(entries(log_messages(pair.logs))) == [
        "ADDED stays.txt",
        "VANISHED gone.txt: gone from the source before it was copied",
    ]
    assert log_messages(pair.logs)[-1] == summary(added=1, vanished=1, nbytes=1)
    assert sorted(os.listdir(pair.rep)) == ["stays.txt"]


def test_a_folder_that_vanishes_before_its_copy_is_a_warning(pair: Pair) -> None:
    build(pair.src, {"d": {"a": "1", "b": "2"}, "stays.txt": "s"})

    report = mirror(
        pair.src,
        pair.rep,
        logpath=pair.logs,
        hooks=_when(Op.MKDIR, "d", lambda: shutil.rmtree(pair.src / "d")),
    )

    assert report.exit_code == 0
    # A new folder's content is listed only when it is applied (Op.TREE):
    # gone before that, it is one line, its entries never seen.
    assert report.vanished == ["d/"]
    assert report.failed == []
    assert sorted(entries(log_messages(pair.logs))) == [
        "ADDED stays.txt",
        "VANISHED d/: gone from the source before it was copied",
    ]
    # Not created empty in the replica: nothing is left for the next run to delete.
    assert sorted(os.listdir(pair.rep)) == ["stays.txt"]
    again = pair.mirror()
    assert again.changed == 0
    assert_mirror(pair.src, pair.rep)


def test_a_file_changed_into_a_fifo_before_its_copy_is_skipped(pair: Pair, no_hang: None) -> None:
    build(pair.src, {"f": "data"})

    def to_fifo() -> None:
        os.unlink(pair.src / "f")
        os.mkfifo(pair.src / "f")

    report = mirror(pair.src, pair.rep, hooks=_when(Op.COPY, "f", to_fifo))

    assert report.exit_code == 0
    assert report.skipped == [("f", "is no longer a regular file")]
    assert os.listdir(pair.rep) == []


# --- a source folder that cannot be read --------------------------------------------------------


def test_an_unreadable_source_folder_does_not_empty_its_replica(pair: Pair) -> None:
    build(
        pair.src,
        {"private": {"diary.txt": "dear diary", "sub": {"x": "x"}}, "public": {"a.txt": "a"}},
        mtime_ns=BASE_NS,
    )
    pair.mirror()
    write(pair.src / "public" / "b.txt", "b", BASE_NS)
    os.chmod(pair.src / "private", 0o700)  # root's: nobody cannot list it
    open_to_others(pair.root)
    chown_tree(pair.rep)
    before_private = snapshot(pair.rep / "private")

    child = mirror_as_nobody(pair.src, pair.rep)

    assert child.code == 1
    assert child.payload["failed"] == [["private/", "cannot read source folder: Permission denied"]]
    assert child.payload["added"] == ["public/b.txt"]
    assert child.payload["deleted"] == []
    assert snapshot(pair.rep / "private") == before_private
    assert (pair.rep / "private" / "diary.txt").read_text() == "dear diary"


def test_an_entry_that_cannot_be_examined_is_neither_copied_nor_deleted(pair: Pair) -> None:
    """A folder readable but not searchable: its names are listed, their details unknown."""
    build(pair.src, {"half": {"a": "1", "b": "2"}, "ok": "ok"}, mtime_ns=BASE_NS)
    os.chmod(pair.src / "half", 0o744)  # others may read the names, not stat them
    pair.mirror()
    write(pair.src / "ok", "changed", BASE_NS + 1)
    open_to_others(pair.root)
    chown_tree(pair.rep)

    child = mirror_as_nobody(pair.src, pair.rep)

    assert child.code == 1
    assert sorted(child.payload["failed"]) == [
        ["half/a", "Permission denied"],
        ["half/b", "Permission denied"],
    ]
    assert child.payload["overwritten"] == ["ok"]
    assert sorted(os.listdir(pair.rep / "half")) == ["a", "b"]


def test_symlinked_roots_need_no_special_care(pair: Pair) -> None:
    build(pair.src, {"f": "1", "l": Link("f")})
    os.symlink(pair.src, pair.root / "src-link")
    os.symlink(pair.rep, pair.root / "rep-link")

    report = mirror(pair.root / "src-link", pair.root / "rep-link")

    assert report.exit_code == 0
    assert os.path.islink(pair.root / "rep-link")
    assert_mirror(pair.src, pair.rep)
