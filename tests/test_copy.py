"""The copy of one file: the compiled path (``synchro.endpoints.local._copy``) ends exactly as the Python one.

:func:`synchro.endpoints.local.filecopy.copy_file` copies a small file in one call into C
when the install built it, and otherwise (or for a large file, or with a
test hook) step by step in Python. Each test here makes the same copy both
ways, from the same source into two replica folders, and compares what a
user would check: the bytes, permission bits, owner, nanosecond times, the
outcome (SKIPPED reason, VANISHED, the error), and that no temporary is left.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import NOBODY, open_to_others, run_as_nobody
from treeutil import BASE_NS, SECOND, snapshot, write

import synchro.endpoints.local.filecopy as filecopy
from synchro.endpoints.local.filecopy import SMALL_FILE, SourceChanged, SourceVanished, copy_file

compiled = pytest.importorskip("synchro.endpoints.local._copy", reason="the compiled copy is not built here")

Outcome = tuple[str, object]  # ("copied", bytes) or (exception name, its text or errno)


def copy_both(
    monkeypatch: pytest.MonkeyPatch, src: Path, reps: tuple[Path, Path], name: str, *, keep_owner: bool = True
) -> tuple[Outcome, Outcome]:
    """Copy ``src/name`` into ``reps[0]`` the compiled way and into ``reps[1]`` the Python way."""
    path = src / name
    # The first copy's read moves the source's access time: put it back.
    st = os.lstat(path) if os.path.lexists(path) else None
    times = (st.st_atime_ns, st.st_mtime_ns) if st is not None and stat.S_ISREG(st.st_mode) else None
    outcomes = []
    for rep, fast in zip(reps, (compiled.copy_small, None), strict=True):
        if times is not None:
            os.utime(path, ns=times)
        monkeypatch.setattr(filecopy, "_copy_small", fast)
        outcomes.append(attempt(lambda rep=rep: copy_into(src, rep, name, keep_owner)))
    return outcomes[0], outcomes[1]


def copy_into(src: Path, rep: Path, name: str, keep_owner: bool) -> int:
    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    rep_fd = os.open(rep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return copy_file(src_fd, rep_fd, name, keep_owner=keep_owner)
    finally:
        os.close(src_fd)
        os.close(rep_fd)


def attempt(work: Callable[[], int]) -> Outcome:
    try:
        return ("copied", work())
    except (SourceChanged, SourceVanished) as error:
        return (type(error).__name__, str(error))
    except OSError as error:
        return ("OSError", errno.errorcode.get(error.errno or 0, error.errno))


def content(rep: Path) -> dict[bytes, object]:
    """What a replica folder holds (its own times are the run's)."""
    return {path: entry for path, entry in snapshot(rep).items() if path != b"."}


@pytest.fixture
def reps(tmp_path: Path) -> tuple[Path, Path]:
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.mkdir()
    slow.mkdir()
    return fast, slow


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


@pytest.mark.parametrize("size", [0, 1, 4096, 65_537, SMALL_FILE])
@pytest.mark.parametrize("mode", [0o644, 0o600, 0o4755, 0o2750, 0o1777, 0o000])
def test_a_file_is_copied_alike(
    monkeypatch: pytest.MonkeyPatch, src: Path, reps: tuple[Path, Path], size: int, mode: int
) -> None:
    write(src / "f", bytes(index % 251 for index in range(size)), mode=mode)
    os.chown(src / "f", 1234, 5678)
    os.chmod(src / "f", mode)  # chown cleared the set-id bits
    os.utime(src / "f", ns=(BASE_NS - SECOND, BASE_NS + 123))

    fast, slow = copy_both(monkeypatch, src, reps, "f")

    assert fast == slow == ("copied", size)
    for rep in reps:  # before anything reads the copies (a read moves their access time)
        st = os.stat(rep / "f")
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 1234, 5678)
        assert (st.st_atime_ns, st.st_mtime_ns) == (BASE_NS - SECOND, BASE_NS + 123)
    assert content(reps[0]) == content(reps[1])
    assert sorted(os.listdir(reps[0])) == ["f"]  # no temporary left


def test_without_keeping_owners_the_copy_is_the_runners(
    monkeypatch: pytest.MonkeyPatch, src: Path, reps: tuple[Path, Path]
) -> None:
    write(src / "f", "x", BASE_NS)
    os.chown(src / "f", 1234, 5678)
    fast, slow = copy_both(monkeypatch, src, reps, "f", keep_owner=False)
    assert fast == slow == ("copied", 1)
    assert os.stat(reps[0] / "f").st_uid == os.stat(reps[1] / "f").st_uid == os.geteuid()


def test_an_existing_copy_is_replaced_whole(
    monkeypatch: pytest.MonkeyPatch, src: Path, reps: tuple[Path, Path]
) -> None:
    write(src / "f", "new bytes", BASE_NS)
    inodes = []
    for rep in reps:
        write(rep / "f", "the old version, longer", BASE_NS - SECOND)
        inodes.append(os.stat(rep / "f").st_ino)
    fast, slow = copy_both(monkeypatch, src, reps, "f")
    assert fast == slow == ("copied", 9)
    for rep, inode in zip(reps, inodes, strict=True):
        assert (rep / "f").read_text() == "new bytes"
        assert os.stat(rep / "f").st_ino != inode  # a new file renamed over it, not rewritten in place


def test_a_source_gone_is_vanished(
    monkeypatch: pytest.MonkeyPatch, src: Path, reps: tuple[Path, Path]
) -> None:
    fast, slow = copy_both(monkeypatch, src, reps, "gone")
    assert fast == slow == ("SourceVanished", "gone")
    assert os.listdir(reps[0]) == os.listdir(reps[1]) == []


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: os.symlink("elsewhere", path), filecopy.BECAME_LINK),
        (os.mkfifo, filecopy.NOT_REGULAR),
        (os.mkdir, filecopy.NOT_REGULAR),
    ],
    ids=["link", "fifo", "folder"],
)
def test_a_source_that_is_no_longer_a_file_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
    src: Path,
    reps: tuple[Path, Path],
    make: Callable[[Path], None],
    reason: str,
) -> None:
    make(src / "f")
    fast, slow = copy_both(monkeypatch, src, reps, "f")
    assert fast == slow == ("SourceChanged", reason)
    assert os.listdir(reps[0]) == os.listdir(reps[1]) == []  # nothing followed, nothing left


def test_a_source_whose_size_lies_is_changed_while_copying(
    monkeypatch: pytest.MonkeyPatch, reps: tuple[Path, Path]
) -> None:
    """A /proc file says size 0 and has bytes: the copy does not match what fstat said."""
    fast, slow = copy_both(monkeypatch, Path("/proc/self"), reps, "status")
    assert fast == slow == ("SourceChanged", filecopy.CHANGED_WHILE_COPYING)
    assert os.listdir(reps[0]) == os.listdir(reps[1]) == []  # the temporary was removed


def test_a_temporary_name_taken_is_an_error_that_leaves_it_alone(
    monkeypatch: pytest.MonkeyPatch, src: Path, reps: tuple[Path, Path]
) -> None:
    write(src / "f", "x", BASE_NS)
    monkeypatch.setattr(filecopy, "temp_name", lambda: ".synchro-tmp-taken")
    for rep in reps:
        write(rep / ".synchro-tmp-taken", "someone's")
    fast, slow = copy_both(monkeypatch, src, reps, "f")
    assert fast == slow == ("OSError", "EEXIST")
    for rep in reps:
        assert os.listdir(rep) == [".synchro-tmp-taken"]
        assert (rep / ".synchro-tmp-taken").read_text() == "someone's"


def test_a_replica_folder_that_cannot_be_written_is_an_error_alike(
    src: Path, reps: tuple[Path, Path], tmp_path: Path
) -> None:
    write(src / "f", "x", BASE_NS)
    open_to_others(tmp_path)

    def work() -> tuple[int, object]:
        outcomes = []
        for rep, fast in zip(reps, (compiled.copy_small, None), strict=True):
            filecopy._copy_small = fast  # a child process: nothing to restore
            outcomes.append(attempt(lambda rep=rep: copy_into(src, rep, "f", False)))
        return 0, outcomes

    child = run_as_nobody(work)  # root's folders: nobody may not write there
    assert child.payload == [["OSError", "EACCES"], ["OSError", "EACCES"]]
    assert os.geteuid() != NOBODY and os.listdir(reps[0]) == os.listdir(reps[1]) == []


def test_a_large_file_is_left_to_the_python_copy(
    monkeypatch: pytest.MonkeyPatch, src: Path, reps: tuple[Path, Path]
) -> None:
    write(src / "big", b"b" * (SMALL_FILE + 1), BASE_NS)
    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    rep_fd = os.open(reps[0], os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert compiled.copy_small(src_fd, rep_fd, "big", ".synchro-tmp-x", True, SMALL_FILE) == (6, 0)
        assert os.listdir(reps[0]) == []  # nothing done: not even the temporary
    finally:
        os.close(src_fd)
        os.close(rep_fd)
    fast, slow = copy_both(monkeypatch, src, reps, "big")
    assert fast == slow == ("copied", SMALL_FILE + 1)
    assert content(reps[0]) == content(reps[1])
