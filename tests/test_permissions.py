"""Permission errors are per entry: ``FAILED path: reason``, the rest goes on, exit 1.

Root reads and writes everything, so these tests fork and run synchro as
uid/gid 65534 ("nobody") in the child (see conftest.run_as_nobody).
"""

from __future__ import annotations

import os

import pytest
from conftest import NOBODY, Pair, chown_tree, mirror_as_nobody, open_to_others, run_as_nobody
from treeutil import BASE_NS, assert_mirror, build, log_messages, summary, write

import synchro
from synchro.faces.cli import main


@pytest.fixture
def nobody_pair(pair: Pair) -> Pair:
    """The pair, reachable by nobody; ``logs`` is a log path of nobody's own
    (root's runs, ``pair.mirror()``, log beside it in ``root``)."""
    logs = pair.root / "nobody-logs"
    logs.mkdir()
    os.chown(logs, NOBODY, NOBODY)
    open_to_others(pair.root)
    return Pair(pair.root, pair.src, pair.rep, logs)


def root_mirror(pair: Pair) -> None:
    assert synchro.mirror(pair.src, pair.rep, logpath=pair.root).exit_code == 0


def test_an_unreadable_source_file_fails_alone_and_keeps_the_old_copy(nobody_pair: Pair) -> None:
    pair = nobody_pair
    build(pair.src, {"secret.txt": "old secret", "public.txt": "old", "sub": {"a": "a"}}, mtime_ns=BASE_NS)
    root_mirror(pair)
    chown_tree(pair.rep)
    write(pair.src / "secret.txt", "new secret", BASE_NS + 1, mode=0o600)  # root's, unreadable for nobody
    write(pair.src / "brand-new-secret", "s", BASE_NS, mode=0o600)
    write(pair.src / "public.txt", "new", BASE_NS + 1)
    write(pair.src / "sub" / "b", "b", BASE_NS)
    start = len(log_messages(pair.logs))

    child = mirror_as_nobody(pair.src, pair.rep, logpath=pair.logs)

    assert child.code == 1
    assert sorted(child.payload["failed"]) == [
        ["brand-new-secret", "Permission denied"],
        ["secret.txt", "Permission denied"],
    ]
    assert (pair.rep / "secret.txt").read_text() == "old secret"  # the old version is kept
    assert not (pair.rep / "brand-new-secret").exists()
    assert (pair.rep / "public.txt").read_text() == "new"  # the rest was mirrored
    assert (pair.rep / "sub" / "b").read_text() == "b"
    messages = log_messages(pair.logs)[start:]
    assert sorted(m for m in messages if m.startswith(("FAILED", "ADDED", "OVERWRITTEN"))) == [
        "ADDED sub/b",
        "FAILED brand-new-secret: Permission denied",
        "FAILED secret.txt: Permission denied",
        "OVERWRITTEN public.txt",
    ]
    assert messages[-1] == summary(added=1, overwritten=1, failed=2, untouched=2, nbytes=4, code=1)
    assert not [name for name in os.listdir(pair.rep) if name.startswith(".synchro-tmp-")]


def test_an_unwritable_replica_folder_fails_its_entries_and_the_run_goes_on(nobody_pair: Pair) -> None:
    pair = nobody_pair
    build(pair.src, {"locked": {"old.txt": "o", "keep.txt": "k"}, "open": {"x": "x"}}, mtime_ns=BASE_NS)
    root_mirror(pair)
    chown_tree(pair.rep)
    os.chown(pair.rep / "locked", 0, 0)  # root's folder: nobody cannot write in it
    os.unlink(pair.src / "locked" / "old.txt")
    write(pair.src / "locked" / "new.txt", "n", BASE_NS)
    write(pair.src / "open" / "y", "y", BASE_NS)
    write(pair.src / "top", "t", BASE_NS)
    start = len(log_messages(pair.logs))

    child = mirror_as_nobody(pair.src, pair.rep, logpath=pair.logs)

    assert child.code == 1
    messages = log_messages(pair.logs)[start:]
    assert sorted(m for m in messages if m.startswith(("FAILED", "ADDED", "DELETED"))) == [
        "ADDED open/y",
        "ADDED top",
        "FAILED locked/: Operation not permitted",  # its time cannot be set either
        "FAILED locked/new.txt: Permission denied",
        "FAILED locked/old.txt: Permission denied",
    ]
    assert sorted(os.listdir(pair.rep / "locked")) == ["keep.txt", "old.txt"]
    assert (pair.rep / "open" / "y").read_text() == "y"
    assert messages[-1].endswith(" exit=1")


def test_a_replica_file_nobody_cannot_open_gets_its_new_permissions(nobody_pair: Pair) -> None:
    """Only the mode changed, but the replica copy cannot even be opened: it is copied anew."""
    pair = nobody_pair
    build(pair.src, {"f": "same bytes"}, mtime_ns=BASE_NS)
    os.chmod(pair.src / "f", 0o000)
    os.chmod(pair.src, 0o755)
    root_mirror(pair)
    chown_tree(pair.rep)
    os.chmod(pair.src / "f", 0o644)

    child = mirror_as_nobody(pair.src, pair.rep)

    assert child.code == 0, child.payload
    assert child.payload["overwritten"] == ["f"]
    assert (pair.rep / "f").read_text() == "same bytes"
    assert_mirror(pair.src, pair.rep, owner=False)


def test_the_command_exits_1_when_an_entry_failed(nobody_pair: Pair) -> None:
    pair = nobody_pair
    write(pair.src / "secret", "s", BASE_NS, mode=0o600)
    write(pair.src / "fine", "f", BASE_NS)
    os.chown(pair.rep, NOBODY, NOBODY)

    child = run_as_nobody(
        lambda: (main([str(pair.src), str(pair.rep), "1", str(pair.logs), "--once", "-q"]), None)
    )

    assert child.code == 1
    assert sorted(os.listdir(pair.rep)) == ["fine"]
    assert "FAILED secret: Permission denied" in log_messages(pair.logs)


def test_a_replica_mirrored_by_another_user_first_is_refused_cleanly_for_root(nobody_pair: Pair) -> None:
    """The run lock of a replica is a file owned by whoever ran first, in the sticky lock
    folder. Root opens it read-only, without O_CREAT (which fs.protected_regular refuses
    there), and shares it; a lock that cannot be shared must be a clear refusal, not a
    traceback."""
    pair = nobody_pair
    write(pair.src / "f", "f", BASE_NS)
    os.chown(pair.rep, NOBODY, NOBODY)
    assert mirror_as_nobody(pair.src, pair.rep).code == 0

    report = synchro.mirror(pair.src, pair.rep, logpath=pair.root)

    if report.exit_code == 0:  # a lock that works across users is fine too
        assert_mirror(pair.src, pair.rep, owner=False)
        return
    assert report.exit_code == 2
    assert report.message.startswith(f"cannot lock replica {pair.rep}: ")
    assert log_messages(pair.root)[1] == f"ERROR {report.message}"
    assert log_messages(pair.root)[-1] == summary(code=2)
