"""Restore (README: "Versions, verify and restore"): the replica, or the state as of a run, into a folder.

The runs that make the versions go through :func:`synchro.mirror` with an
injected clock; the restores through ``inv restore`` in a subprocess (the
face users have), and through :func:`synchro.faces.runner.restore`, the library
under it, where only the outcome on disk matters.
"""

from __future__ import annotations

import io
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from test_tasks import Inv, one_line_error
from treeutil import BASE_NS, Link, assert_mirror, build, diff, set_mtime, snapshot, write

import synchro
from synchro import ConfigError
from synchro.faces import runner
from synchro.faces.config import load_config
from synchro.features.restore import restore
from synchro.pipeline.lock import ReplicaLock

# Each test runs on both local endpoints: folder descriptors and paths (Windows).
pytestmark = pytest.mark.usefixtures("each_endpoint")

T1 = datetime(2026, 3, 1, 3, 0, 0)
T2 = T1 + timedelta(days=1)
T3 = T1 + timedelta(days=2)


def name(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d_%H%M%S}"


class Backups:
    """A pair ``docs`` in ``tmp_path``: its INI file, runs with a chosen clock, and ``inv``."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.src = tmp_path / "docs"
        self.rep = tmp_path / "backup" / "docs"
        self.versions = tmp_path / "backup" / "VERSIONS"
        self.src.mkdir()
        self.rep.mkdir(parents=True)
        self.ini = tmp_path / "backups.ini"
        self.ini.write_text(
            "[docs]\nsource = docs\nreplica = backup/docs\nversions = backup/VERSIONS\n", encoding="utf-8"
        )
        self.inv = Inv(tmp_path)

    def run(self, moment: datetime) -> synchro.Report:
        report = synchro.mirror(self.src, self.rep, versions=self.versions, clock=lambda: moment)
        assert report.ok, report.failed
        return report

    def restore(self, to: Path | str, **flags: object) -> runner.RestoreReport:
        """The library under ``inv restore``, in process."""
        pair = load_config(self.ini).pair("docs")
        return runner.restore(pair, to=str(to), console=io.StringIO(), **flags)  # type: ignore[arg-type]


@pytest.fixture
def backups(tmp_path: Path) -> Backups:
    """Three runs: T1 makes the replica, T2 and T3 change, delete and retype entries."""
    b = Backups(tmp_path)
    build(
        b.src,
        {
            "notes.txt": "notes, first words",
            "keep.txt": "never changes",
            "projects": {"plan.md": "plan v1", "old": {"draft.txt": "a draft", "empty": {}}},
            "link": Link("notes.txt"),
            "flip": "a file that becomes a folder",
        },
        mtime_ns=BASE_NS,
    )
    os.chmod(b.src / "projects" / "old", 0o750)
    b.run(T1)
    b.first = snapshot(b.rep)  # type: ignore[attr-defined]
    write(b.src / "notes.txt", "notes, second words", BASE_NS + 1)
    write(b.src / "projects" / "plan.md", "plan v2, longer", BASE_NS + 1)
    b.run(T2)
    b.second = snapshot(b.rep)  # type: ignore[attr-defined]
    write(b.src / "notes.txt", "notes, third", BASE_NS + 2)
    shutil.rmtree(b.src / "projects" / "old")
    os.unlink(b.src / "link")
    os.symlink("keep.txt", b.src / "link")
    os.unlink(b.src / "flip")
    build(b.src, {"flip": {"inside": "now a folder"}})
    b.run(T3)
    return b


def test_inv_restore_one_file_as_of_each_earlier_run(backups: Backups) -> None:
    inv = backups.inv
    results = {
        moment: inv(
            "restore", "--pair", "docs", "--path", "notes.txt", "--at", name(moment), "--to", f"out-{index}"
        )
        for index, moment in enumerate((T2, T3))
    }
    latest = inv("restore", "--pair", "docs", "--path", "notes.txt", "--to", "out-now")

    for index, (moment, result) in enumerate(results.items()):
        size = len(("notes, first words", "notes, second words")[index])
        assert result.returncode == 0, result.stderr
        assert result.stdout == (
            f"RESTORED notes.txt as of {name(moment)} into {backups.root / f'out-{index}'}: "
            f"1 entry, 1 file, {size} bytes (exit 0)\n"
        )
    assert (backups.root / "out-0" / "notes.txt").read_text() == "notes, first words"
    assert (backups.root / "out-1" / "notes.txt").read_text() == "notes, second words"
    assert (backups.root / "out-now" / "notes.txt").read_text() == "notes, third"
    # Only that file, with its own time and mode.
    assert sorted(os.listdir(backups.root / "out-0")) == ["notes.txt"]
    assert snapshot(backups.root / "out-0")[b"notes.txt"] == backups.first[b"notes.txt"]  # type: ignore[attr-defined]
    assert latest.returncode == 0


def test_restore_of_the_whole_pair_is_an_exact_copy_of_the_replica(backups: Backups) -> None:
    result = backups.inv("restore", "--pair", "docs", "--to", "whole", "-v")

    assert result.returncode == 0, result.stderr
    assert_mirror(backups.rep, backups.root / "whole")
    lines = result.stdout.splitlines()
    assert "RESTORED flip/inside" in lines and "RESTORED link" in lines
    assert lines[-1].startswith(f"RESTORED the whole pair from the replica into {backups.root / 'whole'}: ")


@pytest.mark.parametrize(("moment", "state"), [(T2, "first"), (T3, "second")])
def test_restore_of_the_whole_pair_as_of_a_run(backups: Backups, moment: datetime, state: str) -> None:
    target = backups.root / "then"

    report = backups.restore(target, at=name(moment))

    assert report.exit_code == 0
    expected = getattr(backups, state)
    # The root's own time is the replica's now; everything below is as it was.
    assert diff(expected, snapshot(target), ignore=["."]) == []


def test_a_sub_folder_as_of_a_run_keeps_its_path(backups: Backups) -> None:
    target = backups.root / "sub"

    report = backups.restore(target, path="projects/old", at=name(T3))

    assert (report.entries, report.files) == (3, 1)
    got = snapshot(target)
    assert sorted(got) == [
        b".",
        b"projects",
        b"projects/old",
        b"projects/old/draft.txt",
        b"projects/old/empty",
    ]
    for path in (b"projects/old", b"projects/old/draft.txt", b"projects/old/empty"):
        assert got[path] == backups.first[path], path  # type: ignore[attr-defined]


def test_restore_refuses_the_source_without_force(backups: Backups) -> None:
    before = snapshot(backups.src)

    refused = backups.inv("restore", "--pair", "docs", "--at", name(T3), "--to", "docs")
    inside = backups.inv("restore", "--pair", "docs", "--to", "docs/restored")
    forced = backups.inv(
        "restore", "--pair", "docs", "--path", "notes.txt", "--at", name(T2), "--to", "docs", "--force"
    )

    assert one_line_error(refused) == (
        f"synchro: error: --to {backups.src} is the source folder: restoring there replaces your files; "
        "add --force if that is what you want"
    )
    assert "is inside the source" in one_line_error(inside)
    assert forced.returncode == 0, forced.stderr
    after = snapshot(backups.src)
    assert after[b"notes.txt"] == backups.first[b"notes.txt"]  # type: ignore[attr-defined]
    del before[b"notes.txt"], after[b"notes.txt"]
    assert diff(before, after, ignore=["."]) == []  # nothing else touched


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "backup/docs/x"], "is inside the replica"),
        (["--to", "backup"], "contains the replica"),
        (["--to", "backup/VERSIONS/r"], "is inside the versions folder"),
        (["--at", "yesterday", "--to", "r"], "--at: expected YYYY-MM-DD_HHMMSS"),
        (["--path", "../etc/passwd", "--to", "r"], "--path: '..' is not allowed"),
        (["--path", "/etc", "--to", "r"], "--path: give a path relative to the pair"),
        (["--path", "nothing.txt", "--to", "r"], "--path nothing.txt: not found in the replica"),
        ([], "give --to FOLDER"),
    ],
)
def test_restore_refusals_are_one_line_and_write_nothing(
    backups: Backups, args: list[str], message: str
) -> None:
    before = snapshot(backups.root, content=False)

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as caught:
        flags = dict(zip(args[::2], args[1::2], strict=True))
        to = flags.pop("--to", "")
        backups.restore(
            backups.root / to if to else "", **{key.lstrip("-"): value for key, value in flags.items()}
        )

    assert "\n" not in str(caught.value)
    assert snapshot(backups.root, content=False) == before


def test_restore_never_replaces_existing_entries_without_force(backups: Backups) -> None:
    target = backups.root / "busy"
    target.mkdir()
    build(target, {"notes.txt": "mine, not the backup's", "projects": {"other.txt": "mine too"}})

    refused = backups.inv("restore", "--pair", "docs", "--to", "busy")
    forced = backups.restore(target, force=True)

    assert one_line_error(refused) == (
        f"synchro: error: --to {target}: 1 entry would be replaced (first: notes.txt); "
        "restore into a new or empty folder, or add --force"
    )
    assert forced.exit_code == 0
    assert (target / "notes.txt").read_text() == "notes, third"
    assert (target / "projects" / "other.txt").read_text() == "mine too"  # restore never deletes


def test_restore_works_when_the_source_is_gone(backups: Backups) -> None:
    shutil.rmtree(backups.src)  # the disk died: the reason to restore

    report = backups.restore(backups.root / "docs", force=True)  # back where it was: the source

    assert report.exit_code == 0
    assert_mirror(backups.rep, backups.src)


def test_restore_as_of_a_run_needs_versions(tmp_path: Path) -> None:
    b = Backups(tmp_path)
    b.ini.write_text("[docs]\nsource = docs\nreplica = backup/docs\n", encoding="utf-8")

    result = b.inv("restore", "--pair", "docs", "--at", name(T1), "--to", "r")
    listing = b.inv("versions", "--pair", "docs")

    assert one_line_error(result) == (
        "synchro: error: --at: this pair keeps no versions (give it a versions folder: versions = PATH)"
    )
    assert one_line_error(listing) == (
        "synchro: error: pair 'docs' keeps no versions; give it a versions folder (versions = PATH)"
    )


def test_a_restore_waits_for_no_run_it_is_refused(backups: Backups) -> None:
    with ReplicaLock(str(backups.rep)):
        result = backups.inv("restore", "--pair", "docs", "--to", "r")

    assert one_line_error(result, code=4).endswith("is locked by another synchro run; try again later")
    assert not (backups.root / "r").exists()


# --- what later runs added --------------------------------------------------------------------

T4 = T1 + timedelta(days=3)


@pytest.fixture
def additions(tmp_path: Path) -> Backups:
    """Four runs: T1 makes the replica; T2, T3 and T4 add, replace, delete and add back."""
    b = Backups(tmp_path)
    build(b.src, {"a.txt": "a, first", "gone.txt": "gone, first", "stays": {"s.txt": "s"}}, mtime_ns=BASE_NS)
    b.run(T1)
    b.first = snapshot(b.rep)  # type: ignore[attr-defined]
    write(b.src / "a.txt", "a, second", BASE_NS + 1)  # replaced by T2
    os.unlink(b.src / "gone.txt")  # deleted by T2, added back by T4
    build(b.src, {"new.txt": "new, first", "newdir": {"x.txt": "x, first"}}, mtime_ns=BASE_NS + 1)
    build(b.src / "stays", {"inner-new.txt": "added in an old folder"}, mtime_ns=BASE_NS + 1)
    # A folder's own times are kept only with a version inside it, as before: set back
    # here, so that the states compare whole.
    set_mtime(b.src / "stays", BASE_NS)
    b.run(T2)
    b.second = snapshot(b.rep)  # type: ignore[attr-defined]
    write(b.src / "new.txt", "new, second", BASE_NS + 2)  # added by T2, replaced by T3
    write(b.src / "newdir" / "x.txt", "x, second", BASE_NS + 2)
    write(b.src / "later.txt", "later", BASE_NS + 2)  # added by T3
    b.run(T3)
    b.third = snapshot(b.rep)  # type: ignore[attr-defined]
    write(b.src / "gone.txt", "gone, back again", BASE_NS + 3)
    b.run(T4)  # only adds: a list, no run folder
    return b


@pytest.mark.parametrize(
    ("at", "state"),
    [
        (name(T2), "first"),
        (name(T2 - timedelta(hours=5)), "first"),  # any moment: the first run from then on
        (name(T3), "second"),
        (name(T4), "third"),
    ],
)
def test_restore_as_of_a_run_leaves_out_what_that_run_and_later_ones_added(
    additions: Backups, at: str, state: str
) -> None:
    assert sorted(os.listdir(additions.versions)) == [
        f"{name(T2)}",
        f"{name(T2)}.added",
        f"{name(T3)}",
        f"{name(T3)}.added",
        f"{name(T4)}.added",
    ]
    target = additions.root / "then"

    report = additions.restore(target, at=at)

    assert report.exit_code == 0
    # Exactly the replica just before that run: nothing more, nothing less.
    assert diff(getattr(additions, state), snapshot(target), ignore=["."]) == []


def test_added_then_replaced_stays_out_and_deleted_then_added_back_comes_back(additions: Backups) -> None:
    result = additions.inv("restore", "--pair", "docs", "--at", name(T2), "--to", "then", "-v")

    assert result.returncode == 0, result.stderr
    then = additions.root / "then"
    assert (then / "gone.txt").read_text() == "gone, first"  # deleted by T2, added back by T4
    assert (then / "a.txt").read_text() == "a, first"
    for absent in ("new.txt", "newdir", "later.txt", "stays/inner-new.txt"):
        assert not os.path.lexists(then / absent), absent  # new.txt: a version of it is kept by T3
    assert "RESTORED new.txt" not in result.stdout.splitlines()
    assert (additions.versions / name(T3) / "new.txt").read_text() == "new, first"


def test_a_path_added_after_the_moment_is_refused_one_line(additions: Backups) -> None:
    before = snapshot(additions.root, content=False)

    with pytest.raises(ConfigError) as caught:
        additions.restore(additions.root / "r", path="newdir/x.txt", at=name(T2))

    assert str(caught.value) == (
        f"--path newdir/x.txt: did not exist as of {name(T2)} (a run from then on added it)"
    )
    assert snapshot(additions.root, content=False) == before  # nothing written
    found = additions.restore(additions.root / "r", path="newdir/x.txt", at=name(T3))
    assert found.entries == 1
    assert (additions.root / "r" / "newdir" / "x.txt").read_text() == "x, first"


def test_restore_ignores_a_killed_runs_temporary_list(additions: Backups) -> None:
    # What a run killed with kill -9 leaves: its list never renamed into place.
    stray = additions.versions / f".synchro-tmp-{name(T4)}.added"
    stray.write_bytes(b"a.txt\0stays\0")

    report = additions.restore(additions.root / "then", at=name(T4))

    assert report.exit_code == 0
    assert diff(additions.third, snapshot(additions.root / "then"), ignore=["."]) == []  # type: ignore[attr-defined]


def test_a_folder_deleted_then_added_again_comes_back_as_it_was(tmp_path: Path) -> None:
    b = Backups(tmp_path)
    build(b.src, {"box": {"old.txt": "old"}, "other.txt": "o"}, mtime_ns=BASE_NS)
    b.run(T1)
    before_t2 = snapshot(b.rep)
    shutil.rmtree(b.src / "box")
    b.run(T2)  # keeps box/ whole
    build(b.src, {"box": {"new.txt": "new", "sub": {"deep.txt": "deep"}}}, mtime_ns=BASE_NS + 1)
    b.run(T3)  # adds box/ anew: only "box" is listed

    report = b.restore(tmp_path / "then", at=name(T2))

    assert report.exit_code == 0
    assert diff(before_t2, snapshot(tmp_path / "then"), ignore=["."]) == []  # no new.txt, no sub/


def test_a_replica_emptied_then_filled_again_lists_one_record(tmp_path: Path) -> None:
    b = Backups(tmp_path)
    build(b.src, {"a.txt": "a, first", "box": {"in.txt": "in"}}, mtime_ns=BASE_NS)
    b.run(T1)  # the first run: nothing before it, nothing listed
    first = snapshot(b.rep)
    shutil.rmtree(b.src)
    b.src.mkdir()
    emptied = synchro.mirror(b.src, b.rep, versions=b.versions, clock=lambda: T2, max_delete="100%")
    build(b.src, {"a.txt": "a, second", "b.txt": "b", "box": {"other.txt": "other"}}, mtime_ns=BASE_NS + 1)
    b.run(T3)  # into an empty replica: everything is new, one record says so

    assert emptied.ok and sorted(os.listdir(b.versions)) == [name(T2), f"{name(T3)}.added"]
    assert (b.versions / f"{name(T3)}.added").read_bytes() == b".\0"
    b.restore(tmp_path / "at-t2", at=name(T2))
    b.restore(tmp_path / "at-t3", at=name(T3))
    assert diff(first, snapshot(tmp_path / "at-t2"), ignore=["."]) == []
    assert os.listdir(tmp_path / "at-t3") == []  # the replica was empty before T3


def test_a_restore_from_a_server_is_refused_where_folder_descriptors_are_missing(
    tmp_path: Path, each_endpoint: str
) -> None:
    if each_endpoint != "portable":
        pytest.skip("folder descriptors are there: the restore would reach the server")
    with pytest.raises(ConfigError, match=r"^restore from a replica on a server needs folder descriptors"):
        restore("sftp://backup@nas.example/srv/docs", tmp_path / "out")
    assert not (tmp_path / "out").exists()
