"""What a mirror run does to the replica (README: "What a run does").

Every test checks the replica the way a user would: the tree itself (types,
bytes, permission bits, nanosecond times, link targets), rsync as an outside
oracle (``rsync -ani --delete --modify-window=-1`` prints nothing), and the
exact lines of the daily log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import Pair
from treeutil import (
    BASE_NS,
    SECOND,
    Link,
    Tree,
    assert_mirror,
    assert_rsync_clean,
    b,
    build,
    clear,
    entries,
    join,
    log_messages,
    set_mtime,
    snapshot,
    summary,
    write,
)

from synchro import Report, mirror

# Each test runs on both local endpoints: folder descriptors and paths (Windows).
pytestmark = pytest.mark.usefixtures("each_endpoint")


def run_again_changes_nothing(pair: Pair, **options: Any) -> Report:
    """A second run finds nothing to do and logs no entry."""
    before = len(log_messages(pair.logs))
    report = pair.mirror(**options)
    assert report.exit_code == 0
    assert (report.added, report.overwritten, report.deleted) == ([], [], [])
    assert entries(log_messages(pair.logs)[before:]) == []
    return report


# --- copy, overwrite, delete ------------------------------------------------------


def test_new_files_folders_empty_folders_and_hidden_entries_are_copied(pair: Pair) -> None:
    build(
        pair.src,
        {
            "a.txt": "alpha",
            "empty.txt": "",
            ".hidden": "dot file",
            ".config": {".inner": "x"},
            "sub": {"b.txt": "beta", "deeper": {"c.txt": "gamma"}},
            "empty-folder": {},
        },
        mtime_ns=BASE_NS,
    )

    report = pair.mirror()

    assert report.exit_code == 0
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    messages = log_messages(pair.logs)
    assert messages[0] == f"START source={pair.src} replica={pair.rep} mode=single"
    assert sorted(messages[1:-1]) == sorted(
        [
            "ADDED a.txt",
            "ADDED empty.txt",
            "ADDED .hidden",
            "ADDED .config/",
            "ADDED .config/.inner",
            "ADDED sub/",
            "ADDED sub/b.txt",
            "ADDED sub/deeper/",
            "ADDED sub/deeper/c.txt",
            "ADDED empty-folder/",
        ]
    )
    assert messages[-1] == summary(added=10, nbytes=5 + 8 + 1 + 4 + 5)
    assert report.counts == {
        "added": 10,
        "overwritten": 0,
        "deleted": 0,
        "untouched": 0,
        "failed": 0,
        "skipped": 0,
        "vanished": 0,
    }
    assert report.bytes_copied == 23

    again = run_again_changes_nothing(pair)
    assert again.untouched_count == 10
    assert log_messages(pair.logs)[-1] == summary(untouched=10)


@pytest.mark.parametrize(
    ("new_data", "new_mtime"),
    [
        pytest.param(b"longer content", BASE_NS + SECOND, id="size-changed"),
        pytest.param(b"OLD", BASE_NS + 1, id="same-size-1ns-later"),  # rsync's default misses this
        pytest.param(b"OLD", BASE_NS - 5 * SECOND, id="same-size-older-time"),
        pytest.param(b"", BASE_NS, id="emptied-same-time"),
    ],
)
def test_a_changed_file_is_overwritten(pair: Pair, new_data: bytes, new_mtime: int) -> None:
    build(pair.src, {"f": "old", "other": "same"}, mtime_ns=BASE_NS)
    pair.mirror()
    other_inode = os.stat(pair.rep / "other").st_ino
    write(pair.src / "f", new_data, new_mtime)
    set_mtime(pair.src, BASE_NS)

    report = pair.mirror()

    assert (pair.rep / "f").read_bytes() == new_data
    assert os.stat(pair.rep / "other").st_ino == other_inode  # untouched means not rewritten
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    assert report.overwritten == ["f"]
    assert log_messages(pair.logs)[-2:] == [
        "OVERWRITTEN f",
        summary(overwritten=1, untouched=1, nbytes=len(new_data)),
    ]


def test_entries_gone_from_the_source_are_deleted_recursively(pair: Pair) -> None:
    tree: Tree = {
        "keep.txt": "k",
        "gone.txt": "g",
        "old": {"a": "1", "deep": {"b": "2", "deeper": {}}, "link": Link("a")},
        "sub": {"stale": "s", "fresh": "f"},
    }
    build(pair.src, tree, mtime_ns=BASE_NS)
    pair.mirror()
    for path in ("gone.txt", "old/deep/b", "old/a", "old/link", "sub/stale"):
        os.unlink(pair.src / path)
    for path in ("old/deep/deeper", "old/deep", "old"):
        os.rmdir(pair.src / path)
    set_mtime(pair.src, BASE_NS + 1)
    set_mtime(pair.src / "sub", BASE_NS + 1)

    report = pair.mirror()

    assert report.exit_code == 0
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    lines = entries(log_messages(pair.logs))[-8:]
    assert sorted(lines) == sorted(
        [
            "DELETED gone.txt",
            "DELETED old/a",
            "DELETED old/link",
            "DELETED old/deep/b",
            "DELETED old/deep/deeper/",
            "DELETED old/deep/",
            "DELETED old/",
            "DELETED sub/stale",
        ]
    )
    # A folder's content goes before the folder itself.
    assert lines.index("DELETED old/deep/b") < lines.index("DELETED old/deep/") < lines.index("DELETED old/")
    assert lines.index("DELETED old/deep/deeper/") < lines.index("DELETED old/deep/")
    assert log_messages(pair.logs)[-1] == summary(deleted=8, untouched=3)


def test_a_permission_change_alone_is_fixed_without_copying(pair: Pair) -> None:
    build(pair.src, {"script": "#!/bin/sh\n"}, mtime_ns=BASE_NS)
    pair.mirror()
    inode = os.stat(pair.rep / "script").st_ino
    os.chmod(pair.src / "script", 0o750)

    report = pair.mirror()

    assert os.stat(pair.rep / "script").st_ino == inode
    assert stat.S_IMODE(os.stat(pair.rep / "script").st_mode) == 0o750
    assert_mirror(pair.src, pair.rep)
    assert report.overwritten == ["script"]
    assert log_messages(pair.logs)[-2:] == ["OVERWRITTEN script (attributes)", summary(overwritten=1)]


# --- metadata -------------------------------------------------------------------------


def test_permissions_owner_and_nanosecond_times_are_kept(pair: Pair) -> None:
    build(
        pair.src,
        {
            "private": "p",
            "exec": "e",
            "readonly": "r",
            "setuid": "s",
            "owned": "o",
            "ro-folder": {"inside": "i"},
            "private-folder": {"x": "x"},
            "sticky": {},
            "link": Link("exec"),
        },
    )
    modes = {
        "private": 0o600,
        "exec": 0o755,
        "readonly": 0o444,
        "setuid": 0o4755,
        "owned": 0o640,
        "ro-folder": 0o555,
        "private-folder": 0o700,
        "sticky": 0o1777,
    }
    os.chown(pair.src / "owned", 1234, 5678)
    for offset, (name, mode) in enumerate(modes.items()):
        os.chmod(pair.src / name, mode)
        set_mtime(pair.src / name, BASE_NS + offset * 1_111_111_111 + 7)
    set_mtime(pair.src / "link", BASE_NS + 999)
    set_mtime(pair.src, BASE_NS + 3)

    report = pair.mirror()

    assert report.exit_code == 0
    rep = snapshot(pair.rep)
    for offset, (name, mode) in enumerate(modes.items()):
        assert rep[b(name)].mode == mode, name
        assert rep[b(name)].mtime_ns == BASE_NS + offset * 1_111_111_111 + 7, name
    assert (rep[b"owned"].uid, rep[b"owned"].gid) == (1234, 5678)
    assert rep[b"link"].mtime_ns == BASE_NS + 999
    assert rep[b"."].mtime_ns == BASE_NS + 3
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    run_again_changes_nothing(pair)


def test_folder_times_are_set_after_their_content(pair: Pair) -> None:
    """Writing a folder's content changes its time: the time must be set last."""
    build(pair.src, {"a": {"b": {"c": {"f": "1"}}, "g": "2"}})
    times = {"a": BASE_NS + 1, "a/b": BASE_NS + 2, "a/b/c": BASE_NS + 3, ".": BASE_NS + 4}
    for path, ns in times.items():
        set_mtime(pair.src / path, ns)

    pair.mirror()
    assert {path: os.stat(pair.rep / path).st_mtime_ns for path in times} == times

    # A change deep inside rewrites that folder; every folder time is right again.
    write(pair.src / "a/b/c/new", "3", BASE_NS)
    os.unlink(pair.src / "a/g")
    for path, ns in times.items():
        set_mtime(pair.src / path, ns + 10)
    pair.mirror()

    assert {path: os.stat(pair.rep / path).st_mtime_ns for path in times} == {
        path: ns + 10 for path, ns in times.items()
    }
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)


# --- type changes ----------------------------------------------------------------------

KINDS: dict[str, Any] = {
    "file": "file content",
    "folder": {"inner": "i", "nested": {"y": "y"}},
    "link": Link("somewhere/else"),
}


def _nest(depth: int, node: Any) -> Tree:
    tree: Tree = {"x": node}
    for level in reversed(range(depth)):
        tree = {f"d{level}": tree}
    return tree


def _added_lines(kind: str, path: str) -> list[str]:
    if kind != "folder":
        return [f"OVERWRITTEN {path}"]
    return [f"OVERWRITTEN {path}/", f"ADDED {path}/inner", f"ADDED {path}/nested/", f"ADDED {path}/nested/y"]


def _removed_lines(kind: str, path: str) -> list[str]:
    if kind != "folder":
        return []  # the name is simply replaced
    return [f"DELETED {path}/inner", f"DELETED {path}/nested/y", f"DELETED {path}/nested/"]


@pytest.mark.parametrize("depth", [0, 3], ids=["top", "3-deep"])
@pytest.mark.parametrize(
    ("before", "after"),
    [(a, z) for a in KINDS for z in KINDS if a != z],
    ids=[f"{a}-to-{z}" for a in KINDS for z in KINDS if a != z],
)
def test_a_name_that_changes_type_is_replaced(pair: Pair, before: str, after: str, depth: int) -> None:
    build(pair.src, _nest(depth, KINDS[before]), mtime_ns=BASE_NS)
    pair.mirror()
    clear(pair.src)
    build(pair.src, _nest(depth, KINDS[after]), mtime_ns=BASE_NS + SECOND)
    start = len(log_messages(pair.logs))

    report = pair.mirror()

    assert report.exit_code == 0
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    path = "/".join([*(f"d{level}" for level in range(depth)), "x"])
    lines = entries(log_messages(pair.logs)[start:])
    removed, added = _removed_lines(before, path), _added_lines(after, path)
    assert sorted(lines) == sorted(removed + added)
    # The old entry is gone before the new one takes its name.
    assert lines[: len(removed)] == [line for line in lines if line in removed]
    run_again_changes_nothing(pair)


def test_several_type_changes_at_different_depths_at_once(pair: Pair) -> None:
    build(
        pair.src,
        {"a": {"b": {"c": "file", "d": {"e": "deep"}}, "f": Link("b")}, "g": "top file", "h": {"i": {}}},
        mtime_ns=BASE_NS,
    )
    pair.mirror()
    clear(pair.src)
    build(
        pair.src,
        {
            "a": {"b": {"c": {"now": "a folder"}, "d": Link("../f")}, "f": {"real": "folder"}},
            "g": {},
            "h": "x",
        },
        mtime_ns=BASE_NS + SECOND,
    )

    report = pair.mirror()

    assert report.exit_code == 0
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    run_again_changes_nothing(pair)


# --- symlinks ----------------------------------------------------------------------------


def test_symlinks_are_copied_as_links_and_never_followed(pair: Pair, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside / "secret", "outside data")
    build(
        pair.src,
        {
            "sub": {"f": "in"},
            "relative": Link("sub/f"),
            "absolute": Link("/etc/passwd"),
            "dangling": Link("does/not/exist"),
            "to-outside-folder": Link(str(outside)),
            "to-own-folder": Link("sub"),
            "loop": Link("loop"),
            "up": Link(".."),
        },
    )
    outside_before = snapshot(outside)

    report = pair.mirror()

    assert report.exit_code == 0
    rep = snapshot(pair.rep)
    for name, target in [
        ("relative", "sub/f"),
        ("absolute", "/etc/passwd"),
        ("dangling", "does/not/exist"),
        ("to-outside-folder", str(outside)),
        ("to-own-folder", "sub"),
        ("loop", "loop"),
        ("up", ".."),
    ]:
        assert rep[b(name)].kind == "link"
        assert rep[b(name)].data == b(target)
    # Nothing was read through a link: only the links themselves are there.
    assert not any(path.startswith((b"to-outside-folder/", b"to-own-folder/", b"up/")) for path in rep)
    assert snapshot(outside) == outside_before
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    run_again_changes_nothing(pair)


def test_a_changed_link_target_is_replaced(pair: Pair) -> None:
    build(pair.src, {"l": Link("first")}, mtime_ns=BASE_NS)
    pair.mirror()
    os.unlink(pair.src / "l")
    os.symlink("second", pair.src / "l")
    set_mtime(pair.src / "l", BASE_NS)  # same time: the target text alone must be noticed
    set_mtime(pair.src, BASE_NS)

    pair.mirror()

    assert os.readlink(pair.rep / "l") == "second"
    assert log_messages(pair.logs)[-2:] == ["OVERWRITTEN l", summary(overwritten=1)]


def test_links_in_the_replica_are_replaced_never_written_through(pair: Pair, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside / "f", "outside file")
    write(outside / "keep", "keep me")
    # The replica holds links to the outside where the source has real entries.
    os.symlink(outside, pair.rep / "d")
    os.symlink(outside / "f", pair.rep / "f")
    os.symlink(outside, pair.rep / "gone")
    build(pair.src, {"d": {"new.txt": "inside", "keep": "not the outside one"}, "f": "inside"})
    outside_before = snapshot(outside)

    report = pair.mirror()

    assert report.exit_code == 0
    assert snapshot(outside) == outside_before
    assert not os.path.islink(pair.rep / "d") and os.path.isdir(pair.rep / "d")
    assert (pair.rep / "f").read_text() == "inside"
    assert not os.path.lexists(pair.rep / "gone")
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    assert sorted(entries(log_messages(pair.logs))) == sorted(
        ["OVERWRITTEN d/", "ADDED d/new.txt", "ADDED d/keep", "OVERWRITTEN f", "DELETED gone"]
    )


# --- special files and hard links ------------------------------------------------------


def _make_special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        os.mknod(path, stat.S_IFSOCK | 0o600)
    else:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null


@pytest.mark.usefixtures("no_hang")
@pytest.mark.parametrize("kind", ["fifo", "socket", "char-device"])
def test_special_files_are_skipped_never_opened(pair: Pair, kind: str) -> None:
    build(pair.src, {"a.txt": "a", "sub": {"b.txt": "b"}})
    _make_special(pair.src / "special", kind)
    _make_special(pair.src / "sub" / "special", kind)
    write(pair.rep / "special", "the replica's own file")  # left alone

    report = pair.mirror()

    assert report.exit_code == 0
    assert report.skipped == [
        ("special", "not a file, folder or link"),
        ("sub/special", "not a file, folder or link"),
    ]
    assert (pair.rep / "special").read_text() == "the replica's own file"
    assert not os.path.lexists(pair.rep / "sub" / "special")
    assert sorted(entries(log_messages(pair.logs))) == sorted(
        [
            "ADDED a.txt",
            "ADDED sub/",
            "ADDED sub/b.txt",
            "SKIPPED special: not a file, folder or link",
            "SKIPPED sub/special: not a file, folder or link",
        ]
    )
    assert log_messages(pair.logs)[-1] == summary(added=3, skipped=2, nbytes=2)
    assert_mirror(pair.src, pair.rep, ignore=["special", "sub/special"])
    assert_rsync_clean(pair.src, pair.rep, "--exclude=special")


def test_hard_links_become_separate_files(pair: Pair) -> None:
    write(pair.src / "one", "shared content", BASE_NS)
    os.link(pair.src / "one", pair.src / "two")
    os.mkdir(pair.src / "sub")
    os.link(pair.src / "one", pair.src / "sub" / "three")

    pair.mirror()

    inodes = {os.stat(pair.rep / name).st_ino for name in ("one", "two", "sub/three")}
    assert len(inodes) == 3
    assert all(os.stat(pair.rep / name).st_nlink == 1 for name in ("one", "two", "sub/three"))
    assert all((pair.rep / name).read_text() == "shared content" for name in ("one", "two", "sub/three"))
    assert_rsync_clean(pair.src, pair.rep)
    # Separate: changing one replica file does not change the others.
    write(pair.rep / "two", "changed", BASE_NS)
    assert (pair.rep / "one").read_text() == "shared content"


# --- odd names and deep trees --------------------------------------------------------------

ODD_NAMES = [
    (b"with space", "with space"),
    (b"-leading-dash", "-leading-dash"),
    (b"--help", "--help"),
    (b"new\nline", "new\\x0aline"),
    (b"esc\x1b[31mred", "esc\\x1b[31mred"),
    (b"tab\there", "tab\\x09here"),
    (b"caf\xe9", "caf\\xe9"),  # Latin-1: not UTF-8
    (b"back\\slash", "back\\\\slash"),
    ("ünïcødé 日本".encode(), "ünïcødé 日本"),
    (b"zero\xe2\x80\x8bwidth", "zero\\u200bwidth"),
]


def test_odd_names_are_mirrored_and_logged_on_one_line_each(pair: Pair) -> None:
    tree: dict[str | bytes, Any] = {raw: raw for raw, _ in ODD_NAMES}
    tree[b"dir\nwith\x1b\xff"] = {b"in\nside": b"x"}
    build(pair.src, tree, mtime_ns=BASE_NS)

    report = pair.mirror()

    assert report.exit_code == 0
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    lines = log_messages(pair.logs)
    expected = [f"ADDED {shown}" for _, shown in ODD_NAMES]
    expected += ["ADDED dir\\x0awith\\x1b\\xff/", "ADDED dir\\x0awith\\x1b\\xff/in\\x0aside"]
    assert sorted(lines[1:-1]) == sorted(expected)  # one line per entry: nothing split
    assert lines[-1].startswith("SUMMARY added=12 ")
    assert os.listdir(b(pair.rep)).count(b"caf\xe9") == 1
    run_again_changes_nothing(pair)

    for raw, _ in ODD_NAMES:
        os.unlink(join(pair.src, raw))
    report = pair.mirror(max_delete="100%")  # 10 of 11 files: past the default guard
    assert sorted(report.deleted) == sorted(shown for _, shown in ODD_NAMES)
    assert_mirror(pair.src, pair.rep)


def _deep_chain(root: Path, names: list[str], leaf: bytes) -> None:
    """Make root/n1/n2/.../leaf relative to descriptors (works beyond PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        file_fd = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(file_fd, leaf)
        os.close(file_fd)
    finally:
        os.close(fd)


def test_a_tree_hundreds_of_levels_deep(pair: Pair) -> None:
    _deep_chain(pair.src, ["d"] * 320, b"bottom")

    report = pair.mirror()

    assert report.exit_code == 0
    assert report.counts["added"] == 321
    assert report.added[-1] == "d/" * 320 + "leaf"
    assert_mirror(pair.src, pair.rep)
    assert_rsync_clean(pair.src, pair.rep)
    run_again_changes_nothing(pair)


def test_a_tree_deeper_than_path_max(pair: Pair, each_endpoint: str) -> None:
    if each_endpoint == "portable":
        pytest.skip(
            "paths past Linux' PATH_MAX need folder descriptors (Windows' own limit is 32,767 characters)"
        )
    names = [f"level-{index:03d}-" + "x" * 14 for index in range(300)]  # 24 bytes each: 7200 > 4096
    _deep_chain(pair.src, names, b"very deep")

    report = pair.mirror()

    assert report.exit_code == 0, report.failed
    assert report.counts["added"] == 301
    assert_mirror(pair.src, pair.rep)
    again = run_again_changes_nothing(pair)
    assert again.untouched_count == 301


# --- change detection options ------------------------------------------------------------


@pytest.mark.parametrize("checksum", [False, True], ids=["quick-check", "checksum"])
def test_checksum_catches_a_rewrite_with_same_size_and_time(pair: Pair, checksum: bool) -> None:
    write(pair.src / "f", "version 1", BASE_NS)
    write(pair.src / "same", "identical", BASE_NS)
    pair.mirror()
    inode = os.stat(pair.rep / "same").st_ino
    write(pair.src / "f", "version 2", BASE_NS)  # same size, same time, new bytes
    set_mtime(pair.src, os.stat(pair.rep).st_mtime_ns)

    report = pair.mirror(checksum=checksum)

    if checksum:
        assert (pair.rep / "f").read_text() == "version 2"
        assert log_messages(pair.logs)[-2:] == [
            "OVERWRITTEN f",
            summary(overwritten=1, untouched=1, nbytes=9),
        ]
    else:  # the documented limit of comparing size and time only
        assert (pair.rep / "f").read_text() == "version 1"
        assert log_messages(pair.logs)[-1] == summary(untouched=2)
    assert os.stat(pair.rep / "same").st_ino == inode  # equal bytes are never copied
    assert report.exit_code == 0


@pytest.mark.parametrize(
    ("window", "skew_ns", "copied"),
    [
        pytest.param(None, 1, True, id="default-1ns"),
        pytest.param(0, 1_500_000_000, True, id="0s-window-1.5s"),
        pytest.param(1, 1_500_000_000, True, id="1s-window-1.5s"),
        pytest.param(2, 1_500_000_000, False, id="2s-window-1.5s"),
        pytest.param(2, -2 * SECOND, False, id="2s-window-minus-2s"),
        pytest.param(2, 2 * SECOND + 1, True, id="2s-window-2s+1ns"),
    ],
)
def test_modify_window_tolerates_coarse_clocks(
    pair: Pair, window: int | None, skew_ns: int, copied: bool
) -> None:
    write(pair.src / "f", "same bytes", BASE_NS)
    pair.mirror()
    set_mtime(pair.rep / "f", BASE_NS + skew_ns)  # e.g. a FAT drive rounded the time

    report = pair.mirror(modify_window=window)

    assert report.overwritten == (["f"] if copied else [])
    expected = BASE_NS if copied else BASE_NS + skew_ns
    assert os.stat(pair.rep / "f").st_mtime_ns == expected


def test_a_size_change_is_copied_whatever_the_window(pair: Pair) -> None:
    write(pair.src / "f", "short", BASE_NS)
    pair.mirror()
    write(pair.src / "f", "much longer", BASE_NS + 1)

    assert pair.mirror(modify_window=2).overwritten == ["f"]


# --- exclude --------------------------------------------------------------------------------

EXCLUDE = ["*.tmp", "build/"]


def _exclude_trees(pair: Pair) -> None:
    build(
        pair.src,
        {
            "keep.txt": "k",
            "a.tmp": "temporary",
            "both.tmp": "in source and replica",
            "sub": {"b.tmp": "b", "c.txt": "c", "build": {"o": "o"}},
            "build": {"out.o": "object"},
            "build.txt": "a file, not a build/ folder",
        },
        mtime_ns=BASE_NS,
    )
    build(
        pair.rep,
        {"old.tmp": "replica only", "both.tmp": "replica's own", "build": {"stale.o": "s"}},
        mtime_ns=BASE_NS,
    )


def test_excluded_entries_are_neither_copied_nor_deleted(pair: Pair) -> None:
    _exclude_trees(pair)

    report = pair.mirror(exclude=EXCLUDE)

    assert report.exit_code == 0
    assert sorted(entries(log_messages(pair.logs))) == sorted(
        ["ADDED keep.txt", "ADDED sub/", "ADDED sub/c.txt", "ADDED build.txt"]
    )
    assert (pair.rep / "old.tmp").read_text() == "replica only"
    assert (pair.rep / "both.tmp").read_text() == "replica's own"
    assert (pair.rep / "build" / "stale.o").exists()
    assert not (pair.rep / "a.tmp").exists() and not (pair.rep / "sub" / "build").exists()
    assert_rsync_clean(pair.src, pair.rep, *(f"--exclude={pattern}" for pattern in EXCLUDE))
    run_again_changes_nothing(pair, exclude=EXCLUDE)


def test_delete_excluded_removes_excluded_entries_from_the_replica(pair: Pair) -> None:
    _exclude_trees(pair)

    report = pair.mirror(exclude=EXCLUDE, delete_excluded=True)

    assert report.exit_code == 0
    assert sorted(os.listdir(pair.rep)) == ["build.txt", "keep.txt", "sub"]
    assert sorted(os.listdir(pair.rep / "sub")) == ["c.txt"]
    assert sorted(entries(log_messages(pair.logs))) == sorted(
        [
            "ADDED keep.txt",
            "ADDED sub/",
            "ADDED sub/c.txt",
            "ADDED build.txt",
            "DELETED old.tmp",
            "DELETED both.tmp",
            "DELETED build/stale.o",
            "DELETED build/",
        ]
    )
    assert_rsync_clean(
        pair.src, pair.rep, "--delete-excluded", *(f"--exclude={pattern}" for pattern in EXCLUDE)
    )
    run_again_changes_nothing(pair, exclude=EXCLUDE, delete_excluded=True)


def test_exclude_patterns_follow_gitignore(pair: Pair) -> None:
    build(
        pair.src,
        {
            "a.log": "1",
            "important.log": "2",
            "docs": {"x.log": "3", "readme": "4"},
            "top-only": "5",
            "sub": {"top-only": "6"},
        },
    )

    pair.mirror(exclude=["*.log", "!important.log", "/top-only", "docs/*.log"])

    assert sorted(os.listdir(pair.rep)) == ["docs", "important.log", "sub"]
    assert sorted(os.listdir(pair.rep / "docs")) == ["readme"]
    assert os.listdir(pair.rep / "sub") == ["top-only"]


# --- dry run -----------------------------------------------------------------------------------


def test_dry_run_logs_everything_and_changes_nothing(pair: Pair) -> None:
    build(
        pair.src,
        {"same": "s", "changed": "old", "mode": "m", "gone": "g", "dir": {"x": "x"}},
        mtime_ns=BASE_NS,
    )
    pair.mirror()
    write(pair.src / "changed", "new content", BASE_NS + 1)
    os.chmod(pair.src / "mode", 0o600)
    os.unlink(pair.src / "gone")
    build(pair.src, {"new": "n", "newdir": {"y": "y"}, "l": Link("same")})
    os.rename(pair.src / "dir", pair.src / "moved")
    before = snapshot(pair.rep)
    start = len(log_messages(pair.logs))

    dry = pair.mirror(dry_run=True)

    assert snapshot(pair.rep) == before
    dry_messages = log_messages(pair.logs)[start:]
    assert dry_messages[0] == f"START source={pair.src} replica={pair.rep} mode=single dry-run"
    assert dry_messages[-1].endswith(" (dry run: nothing changed)")

    real = pair.mirror()

    real_messages = log_messages(pair.logs)[start + len(dry_messages) :]
    assert sorted(entries(dry_messages)) == sorted(entries(real_messages))
    assert dry.counts == real.counts
    assert dry.bytes_copied == real.bytes_copied
    assert dry_messages[-1] == real_messages[-1] + " (dry run: nothing changed)"
    assert_mirror(pair.src, pair.rep)


def test_dry_run_does_not_create_a_missing_replica(pair: Pair) -> None:
    build(pair.src, {"f": "f", "d": {"g": "g"}})
    missing = pair.root / "new-replica"

    report = mirror(pair.src, missing, logpath=pair.logs, dry_run=True, create_replica=True)

    assert report.exit_code == 0
    assert not os.path.lexists(missing)
    assert sorted(report.added) == ["d/", "d/g", "f"]
