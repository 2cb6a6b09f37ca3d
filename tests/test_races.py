"""Races: the trees change while the run reads and writes them.

Each race is hit every time through the engine's hooks: ``during_copy`` runs
in the middle of a file's copy (after its first chunk; the files here span
several chunks), ``before_action`` between the plan and each write. Whatever
the change, the replica never gets a mix of two versions, no temporary is
left, the run says what happened, and the next run converges.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Pair
from treeutil import (
    BASE_NS,
    SECOND,
    assert_mirror,
    assert_rsync_clean,
    build,
    entries,
    log_messages,
    snapshot,
    summary,
    write,
)

from synchro import Hooks, mirror
from synchro.endpoints.local.filecopy import CHUNK
from synchro.pipeline.plan import Action, Op

SIZE = 3 * CHUNK  # a copy in three chunks: the change lands in the middle
OLD = b"o" * SIZE
NEW = b"n" * SIZE


def temporaries(root: Path) -> list[bytes]:
    return [path for path in snapshot(root, content=False) if b".synchro-tmp-" in path]


def converges(pair: Pair) -> None:
    again = pair.mirror()
    assert again.exit_code == 0, again.failed
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    assert temporaries(pair.rep) == []


# --- a source file changed while it is read --------------------------------------------------------


def _grow(path: Path) -> None:
    with open(path, "ab") as handle:
        handle.write(b"more")


def _shrink(path: Path) -> None:
    os.truncate(path, 10)


def _rewrite_in_place(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.write(b"X" * 10)


def _rewrite_and_put_the_time_back(path: Path) -> None:
    """Same size, same modification time: only the change time tells."""
    st = path.stat()
    _rewrite_in_place(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _delete(path: Path) -> None:
    path.unlink()


def _replace_by_a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _replace_by_a_link(path: Path) -> None:
    path.unlink()
    path.symlink_to("/etc/passwd")


def _save_like_an_editor(path: Path) -> None:
    """A new file written beside it, renamed over it."""
    write(path.with_name("f.new"), "saved", BASE_NS + 5 * SECOND)
    os.rename(path.with_name("f.new"), path)


CHANGES = [
    pytest.param(_grow, "SKIPPED f: changed while copying", id="grows"),
    pytest.param(_shrink, "SKIPPED f: changed while copying", id="shrinks"),
    pytest.param(_rewrite_in_place, "SKIPPED f: changed while copying", id="rewritten-in-place"),
    pytest.param(
        _rewrite_and_put_the_time_back, "SKIPPED f: changed while copying", id="rewritten-time-put-back"
    ),
    pytest.param(_delete, "VANISHED f: gone from the source before it was copied", id="deleted"),
    pytest.param(_replace_by_a_folder, "SKIPPED f: replaced while copying", id="replaced-by-a-folder"),
    pytest.param(_replace_by_a_link, "SKIPPED f: replaced while copying", id="replaced-by-a-link"),
    pytest.param(_save_like_an_editor, "SKIPPED f: replaced while copying", id="replaced-by-a-rename"),
]


@pytest.mark.parametrize(("change", "said"), CHANGES)
@pytest.mark.parametrize("existed", [True, False], ids=["old-version-in-replica", "new-file"])
def test_a_file_changed_while_it_is_read_is_never_installed(
    pair: Pair, change: Callable[[Path], None], said: str, existed: bool
) -> None:
    build(pair.src, {"other": "fine"}, mtime_ns=BASE_NS)
    if existed:
        write(pair.src / "f", OLD, BASE_NS)
        pair.mirror()
    write(pair.src / "f", NEW, BASE_NS + SECOND)
    seen: list[int] = []

    def during_copy(action: Action, copied: int) -> None:
        if action.path == "f" and not seen:
            seen.append(copied)
            assert len(temporaries(pair.rep)) == 1  # the bytes so far sit in a temporary only
            change(pair.src / "f")

    start = len(log_messages(pair.logs))
    report = mirror(pair.src, pair.rep, logpath=pair.logs, hooks=Hooks(during_copy=during_copy))

    assert 0 < seen[0] < SIZE  # it did land in the middle of the copy
    assert report.exit_code == 0  # a warning, not a failure: the next run copies it
    messages = log_messages(pair.logs)[start:]
    assert said in messages
    assert messages[-1].endswith(" exit=0")
    assert temporaries(pair.rep) == []
    if existed:
        assert (pair.rep / "f").read_bytes() == OLD  # the old version stays whole
    else:
        assert not (pair.rep / "f").exists()
    converges(pair)


def test_a_file_changed_while_it_is_compared_with_checksum_is_copied_whole(pair: Pair) -> None:
    """--checksum reads both sides first; a change after that comparison is a
    normal change-while-copying."""
    write(pair.src / "f", OLD, BASE_NS)
    pair.mirror()
    write(pair.rep / "f", NEW, BASE_NS)  # same size and time, other bytes
    os.utime(pair.rep / "f", ns=(BASE_NS, BASE_NS))

    def during_copy(action: Action, copied: int) -> None:
        if action.path == "f" and copied == CHUNK:
            _grow(pair.src / "f")

    report = mirror(pair.src, pair.rep, checksum=True, hooks=Hooks(during_copy=during_copy))

    assert report.skipped == [("f", "changed while copying")]
    assert (pair.rep / "f").read_bytes() == NEW
    assert temporaries(pair.rep) == []
    again = mirror(pair.src, pair.rep, checksum=True)
    assert again.overwritten == ["f"]
    assert_mirror(pair.src, pair.rep)


# --- the trees change between the plan and the writes ------------------------------------------------


def _when(op: Op, path: str, then: Callable[[], None]) -> Hooks:
    fired: list[bool] = []

    def before_action(action: Action) -> None:
        if action.op is op and action.path == path and not fired:
            fired.append(True)
            then()

    return Hooks(before_action=before_action)


def _source_folder_replaced(pair: Pair, by: str) -> Callable[[], None]:
    def replace() -> None:
        shutil.rmtree(pair.src / "d")
        if by == "file":
            write(pair.src / "d", "now a file")
        else:
            os.symlink("/etc", pair.src / "d")

    return replace


@pytest.mark.parametrize("by", ["file", "link"])
def test_a_source_folder_replaced_before_its_copy_is_vanished_not_failed(pair: Pair, by: str) -> None:
    build(pair.src, {"d": {"a": "1", "sub": {"b": "2"}}, "stays": "s"})

    report = mirror(
        pair.src, pair.rep, logpath=pair.logs, hooks=_when(Op.MKDIR, "d", _source_folder_replaced(pair, by))
    )

    assert report.exit_code == 0
    assert report.failed == []
    assert sorted(entries(log_messages(pair.logs))) == [
        "ADDED stays",
        # Its content is listed only when it is applied (Op.TREE): never seen.
        "VANISHED d/: gone from the source before it was copied",
    ]
    assert sorted(os.listdir(pair.rep)) == ["stays"]  # nothing read through the link
    converges(pair)


def test_a_source_folder_emptied_into_a_file_under_an_existing_replica_folder(pair: Pair) -> None:
    """The folder is in both trees; its source side becomes a file before its files are copied."""
    build(pair.src, {"d": {"a": "old a"}}, mtime_ns=BASE_NS)
    pair.mirror()
    write(pair.src / "d" / "a", "new a", BASE_NS + 1)
    write(pair.src / "d" / "b", "new b", BASE_NS)

    replace = _source_folder_replaced(pair, "file")

    def before_action(action: Action) -> None:
        if action.op is Op.COPY and action.dir == "d" and (pair.src / "d").is_dir():
            replace()

    report = mirror(pair.src, pair.rep, hooks=Hooks(before_action=before_action))

    assert report.exit_code == 0
    assert sorted(report.vanished) == ["d/a", "d/b"]
    assert (pair.rep / "d" / "a").read_text() == "old a"  # kept until the next run sees the file
    converges(pair)


def test_a_folder_that_appears_in_the_source_after_the_scan_waits_for_the_next_run(pair: Pair) -> None:
    build(pair.src, {"a": "a"})

    def appear() -> None:
        build(pair.src, {"late": {"x": "x"}})

    report = mirror(pair.src, pair.rep, hooks=_when(Op.COPY, "a", appear))

    assert report.exit_code == 0
    assert report.added == ["a"]
    assert not (pair.rep / "late").exists()
    again = pair.mirror()
    assert sorted(again.added) == ["late/", "late/x"]
    assert_mirror(pair.src, pair.rep)


def test_a_file_replaced_by_a_folder_before_its_copy_is_skipped_then_mirrored(pair: Pair) -> None:
    write(pair.src / "f", "old", BASE_NS)
    pair.mirror()
    write(pair.src / "f", "new", BASE_NS + 1)

    def to_folder() -> None:
        os.unlink(pair.src / "f")
        build(pair.src, {"f": {"inner": "i"}})

    report = mirror(pair.src, pair.rep, hooks=_when(Op.COPY, "f", to_folder))

    assert report.exit_code == 0
    assert report.skipped == [("f", "is no longer a regular file")]
    assert (pair.rep / "f").read_text() == "old"
    converges(pair)
    assert (pair.rep / "f" / "inner").read_text() == "i"


def test_a_folder_that_appears_in_the_replica_before_its_creation(pair: Pair) -> None:
    """Someone else makes the folder first: synchro does not write into a folder
    it did not make (FAILED lines), and the next run takes it over."""
    build(pair.src, {"d": {"a": "a"}})

    def appear() -> None:
        build(pair.rep, {"d": {"foreign": "f"}})

    report = mirror(pair.src, pair.rep, logpath=pair.logs, hooks=_when(Op.MKDIR, "d", appear))

    assert report.exit_code == 1
    assert report.failed == [("d/", "File exists"), ("d/a", "its folder could not be created")]
    assert os.listdir(pair.rep / "d") == ["foreign"]
    converges(pair)


def test_a_replica_folder_removed_by_someone_else_during_its_deletion(pair: Pair) -> None:
    """The goal (the folder gone) is reached: no failure, exit 0."""
    build(pair.rep, {"old": {"a": "a", "b": "b", "sub": {"c": "c"}}})
    write(pair.src / "keep", "k")

    def remove() -> None:
        shutil.rmtree(pair.rep / "old")

    report = mirror(pair.src, pair.rep, max_delete="100%", hooks=_when(Op.DELETE, "old/a", remove))

    assert report.exit_code == 0, report.failed
    assert sorted(report.deleted) == ["old/", "old/a", "old/b", "old/sub/", "old/sub/c"]
    converges(pair)


def test_a_replica_folder_removed_before_files_are_copied_into_it(pair: Pair) -> None:
    build(pair.src, {"d": {"a": "a", "b": "b"}}, mtime_ns=BASE_NS)
    pair.mirror()
    write(pair.src / "d" / "a", "new a", BASE_NS + 1)

    report = mirror(pair.src, pair.rep, hooks=_when(Op.COPY, "d/a", lambda: shutil.rmtree(pair.rep / "d")))

    assert report.exit_code == 1
    assert report.failed == [("d/a", "No such file or directory"), ("d/", "No such file or directory")]
    assert temporaries(pair.rep) == []
    converges(pair)


def test_summary_of_a_run_where_everything_vanished(pair: Pair) -> None:
    build(pair.src, {"a": "a", "b": "b", "d": {"c": "c"}})

    def wipe() -> None:
        for name in ["a", "b"]:
            os.unlink(pair.src / name)
        shutil.rmtree(pair.src / "d")

    def before_action(action: Action) -> None:
        if action.op is Op.COPY and (pair.src / "d").exists():  # before the first copy
            wipe()

    report = mirror(pair.src, pair.rep, logpath=pair.logs, hooks=Hooks(before_action=before_action))

    assert report.exit_code == 0
    # a, b and d/: what is inside d/ is listed only when d/ is applied (Op.TREE).
    assert log_messages(pair.logs)[-1] == summary(vanished=3)
    assert os.listdir(pair.rep) == []
