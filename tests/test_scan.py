"""The scan's hot loop: the compiled one (``synchro.endpoints.local._scan``) gives exactly what the Python one gives.

Every run lists folders through :func:`synchro.endpoints.local.scan.list_folder`, which uses
the compiled loop when the install built it. These tests list the same real
folders with both loops and compare the results field for field: kinds,
sizes, nanosecond times (beyond 64-bit nanoseconds too), permission bits,
owners, link texts, names that are not UTF-8, and the errors of entries that
cannot be read (as an unprivileged user).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NOBODY, open_to_others, run_as_nobody
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from treeutil import BASE_NS, SECOND, Link, build, set_mtime, write

from synchro.endpoints.local import scan
from synchro.endpoints.local.scan import Kind, Meta

compiled = pytest.importorskip(
    "synchro.endpoints.local._scan", reason="the compiled scan loop is not built here"
)

KINDS = (Kind.FILE, Kind.DIR, Kind.LINK, Kind.SPECIAL)
Result = tuple[dict[str, Meta], dict[str, str]]


def both(folder: Path) -> tuple[Result, Result]:
    """The folder listed by the compiled loop and by the Python loop."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return compiled.list_entries(fd, Meta, KINDS), scan.python_list_entries(fd, Meta, KINDS)
    finally:
        os.close(fd)


def assert_same(folder: Path) -> Result:
    fast, slow = both(folder)
    assert fast == slow
    assert all(type(meta) is Meta for meta in fast[0].values())  # a real Meta: .kind, .size work
    return fast


def test_every_kind_of_entry_is_described_alike(tmp_path: Path) -> None:
    build(
        tmp_path,
        {
            "empty": b"",
            "text.txt": "hello",
            "sub": {"inner": "x"},
            "link": Link("text.txt"),
            "dangling": Link("no/such/target"),
            "long-link": Link("d/" * 2047 + "x"),  # 4095 bytes: the longest text Linux keeps
            b"caf\xe9-latin1": "not UTF-8",
            "line\nbreak": "a newline in the name",
            "-dash": "",
        },
    )
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        write(tmp_path / "setuid", "s", mode=0o4755)
        write(tmp_path / "sticky-dir-file", "t", mode=0o1600)
        os.chown(tmp_path / "text.txt", 1234, 5678)
        os.chown(tmp_path / "link", 4321, 8765, follow_symlinks=False)
        set_mtime(tmp_path / "text.txt", BASE_NS)
        set_mtime(tmp_path / "empty", -7 * SECOND - 1)  # before 1970
        set_mtime(tmp_path / "sub", 10**19 + 123)  # year 2286: beyond 64-bit nanoseconds' fast path
        entries, errors = assert_same(tmp_path)

    assert errors == {}
    assert entries["text.txt"] == Meta(Kind.FILE, 5, BASE_NS, 0o644, 1234, 5678, None)
    assert entries["link"].kind is Kind.LINK and entries["link"].target == "text.txt"
    assert entries["link"][4:6] == (4321, 8765)
    assert entries["long-link"].target == "d/" * 2047 + "x"
    assert entries["dangling"].target == "no/such/target"
    assert entries["caf\udce9-latin1"].size == len("not UTF-8")  # os.listdir's surrogateescape
    assert entries["sub"].kind is Kind.DIR and entries["sub"].mtime_ns == 10**19 + 123
    assert entries["empty"].mtime_ns == -7 * SECOND - 1
    assert entries["fifo"].kind is Kind.SPECIAL and entries["sock"].kind is Kind.SPECIAL
    assert entries["setuid"].mode == 0o4755 and entries["sticky-dir-file"].mode == 0o1600
    assert "." not in entries and ".." not in entries


def test_a_large_folder_is_listed_whole(tmp_path: Path) -> None:
    for index in range(3000):  # more than one readdir buffer, and past the signal checks
        (tmp_path / f"f{index:05d}").write_bytes(b"x" * (index % 7))
    entries, _ = assert_same(tmp_path)
    assert len(entries) == 3000


def test_listing_leaves_the_descriptor_ready_for_the_next_listing(tmp_path: Path) -> None:
    build(tmp_path, {"a": "1", "b": "2"})
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first = compiled.list_entries(fd, Meta, KINDS)
        assert compiled.list_entries(fd, Meta, KINDS) == first
        assert sorted(os.listdir(fd)) == ["a", "b"]  # the shared position is back at the start
        assert compiled.list_entries(fd, Meta, KINDS) == first
    finally:
        os.close(fd)


def test_a_folder_that_cannot_be_listed_raises_os_error() -> None:
    with pytest.raises(OSError) as error:
        compiled.list_entries(987_654, Meta, KINDS)  # not an open descriptor
    assert error.value.strerror == os.strerror(9)  # EBADF, worded as Python words it


def test_entries_that_cannot_be_read_are_errors_alike(tmp_path: Path) -> None:
    """A folder nobody may list but not search: every lstat fails with EACCES."""
    build(tmp_path, {"listable": {"a": "1", "b": "2"}})
    open_to_others(tmp_path)
    os.chmod(tmp_path / "listable", 0o744)  # r but no x for others

    def work() -> tuple[int, object]:
        fast, slow = both(tmp_path / "listable")
        return 0, {"fast": [fast[0] == {}, fast[1]], "slow": [slow[0] == {}, slow[1]]}

    child = run_as_nobody(work)
    assert child.code == 0
    assert child.payload["fast"] == child.payload["slow"]
    assert child.payload["fast"] == [True, {"a": os.strerror(13), "b": os.strerror(13)}]  # EACCES
    assert os.geteuid() != NOBODY


names = st.text(
    alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
).filter(lambda name: name not in (".", ".."))


@st.composite
def entries(draw: st.DrawFn) -> list[tuple[str, str, int, int]]:
    chosen = draw(st.lists(names, min_size=0, max_size=12, unique_by=lambda name: os.fsencode(name)))
    kinds = st.sampled_from(["file", "dir", "link", "fifo"])
    modes = st.integers(0, 0o7777)
    times = st.integers(-(2**40), 2**62)
    return [(name, draw(kinds), draw(modes), draw(times)) for name in chosen]


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "listed"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries())
def test_any_folder_is_described_alike(folder: Path, chosen: list[tuple[str, str, int, int]]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for index, (name, kind, mode, mtime_ns) in enumerate(chosen):
        path = folder / name
        if kind == "file":
            path.write_bytes(b"x" * index)
        elif kind == "dir":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            os.symlink(name * 3, path)
        if kind != "link":
            os.chmod(path, mode)
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
    listed, errors = assert_same(folder)
    assert errors == {}
    assert sorted(listed) == sorted(name for name, *_ in chosen)
    for name, kind, mode, mtime_ns in chosen:
        meta = listed[name]
        assert meta.mtime_ns == mtime_ns
        assert stat.S_IMODE(meta.mode) == (mode if kind != "link" else meta.mode)
