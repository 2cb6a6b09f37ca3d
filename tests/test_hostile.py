"""Hostile trees: nothing is read through a link, nothing written outside the replica.

The races use the engine's ``before_action`` hook, which runs between the
plan and each write, so every swap happens at exactly the worst moment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from synchro import ExitCode, Hooks, mirror
from synchro.pipeline.plan import Action, Op

OUTSIDE_SECRET = b"secret outside the source\n"


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str | None, int, int]]:
    """Every entry below ``root`` with type, content or link text, mode and mtime."""
    result: dict[str, tuple[str, bytes | str | None, int, int]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                result[rel] = ("link", os.readlink(path), st.st_mode, st.st_mtime_ns)
            elif path.is_dir():
                result[rel] = ("dir", None, st.st_mode, st.st_mtime_ns)
            else:
                result[rel] = ("file", path.read_bytes(), st.st_mode, st.st_mtime_ns)
    return result


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder outside both trees that nothing may touch."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "precious.txt").write_bytes(OUTSIDE_SECRET)
    (folder / "old.txt").write_bytes(b"victim's own old.txt\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.txt").write_bytes(b"deep\n")
    os.chmod(folder / "precious.txt", 0o640)
    return folder


def swap_for_link(path: Path, target: Path) -> None:
    """Replace ``path`` (file or folder) by a symlink to ``target``."""
    path.rename(path.with_name(path.name + ".moved"))
    path.symlink_to(target)


class Once:
    """A before_action hook that fires the first time ``hook`` returns True."""

    def __init__(self, hook: Callable[[Action], bool]) -> None:
        self.hook = hook
        self.fired = False

    def __call__(self, action: Action) -> None:
        if not self.fired and self.hook(action):
            self.fired = True


def test_source_links_pointing_outside_are_copied_as_links_never_read(tmp_path: Path, victim: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.mkdir()
    rep.mkdir()
    (src / "abs").symlink_to(victim / "precious.txt")
    (src / "rel").symlink_to("../../victim/precious.txt")
    (src / "etc").symlink_to("/etc")
    (src / "dir").mkdir()
    (src / "dir" / "up").symlink_to("../..")

    report = mirror(src, rep)

    assert report.exit_code == ExitCode.OK
    for name, target in [
        ("abs", str(victim / "precious.txt")),
        ("rel", "../../victim/precious.txt"),
        ("etc", "/etc"),
        ("dir/up", "../.."),
    ]:
        assert (rep / name).is_symlink()
        assert os.readlink(rep / name) == target
    # Nothing outside was copied in as data.
    copied = [p for p in rep.rglob("*") if p.is_file() and not p.is_symlink()]
    assert copied == []


def test_replica_folder_swapped_for_link_before_writes_touches_nothing_outside(
    tmp_path: Path, victim: Path
) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    (src / "d").mkdir(parents=True)
    (rep / "d").mkdir(parents=True)
    (src / "d" / "new.txt").write_bytes(b"new\n")
    (src / "d" / "old.txt").write_bytes(b"changed content\n")
    (rep / "d" / "old.txt").write_bytes(b"old\n")
    (rep / "d" / "gone.txt").write_bytes(b"deleted from source\n")
    before = snapshot(victim)

    def swap(action: Action) -> bool:
        if action.dir == "d" or action.path == "d":
            swap_for_link(rep / "d", victim)
            return True
        return False

    race = Once(swap)
    report = mirror(src, rep, hooks=Hooks(before_action=race))
    assert race.fired

    assert snapshot(victim) == before
    assert report.exit_code == ExitCode.FAILED
    assert report.failed
    # The next run replaces the link by a real folder and converges.
    report = mirror(src, rep)
    assert report.exit_code == ExitCode.OK
    assert not (rep / "d").is_symlink()
    assert (rep / "d" / "new.txt").read_bytes() == b"new\n"
    assert snapshot(victim) == before


def test_replica_file_swapped_for_link_is_replaced_not_written_through(tmp_path: Path, victim: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.mkdir()
    rep.mkdir()
    (src / "f.txt").write_bytes(b"new version\n")
    (rep / "f.txt").write_bytes(b"old\n")
    before = snapshot(victim)

    def swap(action: Action) -> bool:
        if action.name == "f.txt":
            (rep / "f.txt").unlink()
            (rep / "f.txt").symlink_to(victim / "precious.txt")
            return True
        return False

    race = Once(swap)
    report = mirror(src, rep, hooks=Hooks(before_action=race))
    assert race.fired

    assert report.exit_code == ExitCode.OK
    assert snapshot(victim) == before
    assert not (rep / "f.txt").is_symlink()
    assert (rep / "f.txt").read_bytes() == b"new version\n"


def test_permission_fix_never_follows_a_swapped_link(tmp_path: Path, victim: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.mkdir()
    rep.mkdir()
    (src / "f.txt").write_bytes(b"same\n")
    (rep / "f.txt").write_bytes(b"same\n")
    os.utime(rep / "f.txt", ns=(10**18, 10**18))
    os.utime(src / "f.txt", ns=(10**18, 10**18))
    os.chmod(src / "f.txt", 0o600)
    os.chmod(rep / "f.txt", 0o644)
    before = snapshot(victim)

    def swap(action: Action) -> bool:
        if action.op is Op.ATTRS:
            (rep / "f.txt").unlink()
            (rep / "f.txt").symlink_to(victim / "precious.txt")
            return True
        return False

    race = Once(swap)
    report = mirror(src, rep, hooks=Hooks(before_action=race))
    assert race.fired

    assert snapshot(victim) == before
    assert report.exit_code == ExitCode.FAILED


def test_folder_times_never_set_through_a_swapped_link(tmp_path: Path, victim: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    (src / "d").mkdir(parents=True)
    (rep / "d").mkdir(parents=True)
    os.chmod(src / "d", 0o700)
    os.utime(src / "d", ns=(123, 123))
    before = snapshot(victim)
    victim_stat = victim.stat()

    def swap(action: Action) -> bool:
        if action.op is Op.DIRMETA and action.path == "d":
            swap_for_link(rep / "d", victim)
            return True
        return False

    race = Once(swap)
    mirror(src, rep, hooks=Hooks(before_action=race))
    assert race.fired

    assert snapshot(victim) == before
    after = victim.stat()
    assert (after.st_mode, after.st_mtime_ns) == (victim_stat.st_mode, victim_stat.st_mtime_ns)


def test_deleting_a_folder_swapped_for_link_deletes_nothing_outside(tmp_path: Path, victim: Path) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.mkdir()
    (rep / "old" / "sub").mkdir(parents=True)
    (rep / "old" / "old.txt").write_bytes(b"x")
    (rep / "old" / "sub" / "deep.txt").write_bytes(b"x")
    before = snapshot(victim)

    def swap(action: Action) -> bool:
        if action.op is Op.DELETE and action.dir.startswith("old"):
            swap_for_link(rep / "old", victim)
            return True
        return False

    race = Once(swap)
    mirror(src, rep, max_delete="100%", hooks=Hooks(before_action=race))
    assert race.fired

    assert snapshot(victim) == before


def test_symlinked_roots_are_resolved_once(tmp_path: Path) -> None:
    real_src, real_rep = tmp_path / "real-src", tmp_path / "real-rep"
    real_src.mkdir()
    real_rep.mkdir()
    (real_src / "a.txt").write_bytes(b"a")
    (tmp_path / "src-link").symlink_to(real_src)
    (tmp_path / "rep-link").symlink_to(real_rep)

    report = mirror(tmp_path / "src-link", tmp_path / "rep-link")

    assert report.exit_code == ExitCode.OK
    assert (tmp_path / "rep-link").is_symlink()  # the link itself is kept
    assert (real_rep / "a.txt").read_bytes() == b"a"


HOSTILE_NAMES = [
    b"new\nline",
    b"carriage\rreturn",
    b"\x1b[31mred\x1b[0m",
    b"\x1b]0;title\x07",
    b"bad-\xff\xfe-utf8",
    b"x" * 255,
    "bidi-\u202eevil".encode(),
]


def test_hostile_names_are_one_escaped_line_each_and_reach_no_terminal(tmp_path: Path) -> None:
    src, rep, logs = tmp_path / "src", tmp_path / "rep", tmp_path / "logs"
    src.mkdir()
    rep.mkdir()
    logs.mkdir()
    for name in HOSTILE_NAMES:
        with open(os.path.join(os.fsencode(src), name), "wb") as handle:
            handle.write(b"data")

    result = subprocess.run(
        [sys.executable, "-m", "synchro", str(src), str(rep), "24", str(logs), "--once"],
        capture_output=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    added = [line for line in result.stdout.split(b"\n") if b" ADDED " in line]
    assert len(added) == len(HOSTILE_NAMES)
    assert b"\x1b" not in result.stdout and b"\r" not in result.stdout and b"\x07" not in result.stdout
    assert "\u202e".encode() not in result.stdout
    log_text = next((logs / "LOGS").glob("LOG-*.txt")).read_bytes()
    assert log_text.count(b" ADDED ") == len(HOSTILE_NAMES)
    assert b"\x1b" not in log_text and b"\r" not in log_text
    assert b"ADDED new\\x0aline" in log_text
    assert b"ADDED bad-\\xff\\xfe-utf8" in log_text
    for name in HOSTILE_NAMES:
        assert os.path.exists(os.path.join(os.fsencode(rep), name))


def test_empty_source_like_an_unmounted_drive_is_refused_with_numbers(tmp_path: Path) -> None:
    src, rep = tmp_path / "mnt-point", tmp_path / "rep"
    src.mkdir()  # an unmounted mount point is an empty folder
    rep.mkdir()
    for index in range(20):
        (rep / f"photo{index}.jpg").write_bytes(b"x")
    before = snapshot(rep)

    report = mirror(src, rep)

    assert report.exit_code == ExitCode.GUARD
    assert "delete 20 of the replica's 20 files" in report.message
    assert snapshot(rep) == before
