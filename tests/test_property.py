"""Property: whatever the trees, a run makes an exact mirror and a second run changes nothing.

Hypothesis draws a source tree (files, empty files, folders, symlinks,
hidden and non-ASCII names, permission bits, times), a replica that already
holds something else, and a mutation of the source (deletions, new entries,
rewrites, new times and modes, type changes at any depth). After each run
``rsync -ani --delete --modify-window=-1`` must print nothing.

``SYNCHRO_HYPOTHESIS_EXAMPLES`` raises the number of examples (default 25).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import requires_rsync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from treeutil import BASE_NS, assert_mirror, assert_rsync_clean, clear, set_mtime

from synchro import Report, mirror

# Each test runs on both local endpoints: folder descriptors and paths (Windows).
pytestmark = [requires_rsync, pytest.mark.usefixtures("each_endpoint")]

EXAMPLES = int(os.environ.get("SYNCHRO_HYPOTHESIS_EXAMPLES", "25"))

# A small pool, so that the source, the replica and the mutation share names
# (which is what makes type changes and overwrites happen).
NAMES = st.sampled_from(["a", "b", "c", ".hidden", ".h dir", "sp ace", "-dash", "é", "e\u0301", "日本", "😀"])


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int
    touch: int  # nanoseconds added to the time derived from the content


@dataclass(frozen=True)
class Folder:
    children: dict[str, Node]
    mode: int
    mtime: int


@dataclass(frozen=True)
class Symlink:
    target: str
    mtime: int


Node = File | Folder | Symlink
Tree = dict[str, Node]

files = st.builds(
    File,
    data=st.one_of(st.just(b""), st.binary(max_size=40)),
    mode=st.sampled_from([0o644, 0o600, 0o755, 0o444, 0o640]),
    touch=st.integers(0, 2),
)
links = st.builds(
    Symlink,
    target=st.sampled_from(["a", "../b", "/etc", "nowhere", "日本", "..", "."]),
    mtime=st.integers(0, 3),
)


def folders(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Folder]:
    return st.builds(
        Folder,
        children=st.dictionaries(NAMES, children, max_size=4),
        mode=st.sampled_from([0o755, 0o700, 0o750, 0o555]),
        mtime=st.integers(0, 3),
    )


nodes: st.SearchStrategy[Node] = st.recursive(
    st.one_of(
        files, links, st.builds(Folder, children=st.just({}), mode=st.just(0o755), mtime=st.integers(0, 3))
    ),
    folders,
    max_leaves=12,
)
trees = st.dictionaries(NAMES, nodes, max_size=6)


@st.composite
def changed(draw: st.DrawFn, node: Node) -> Node:
    """The same kind of entry, changed: new bytes, time or mode; a folder's content mutated."""
    if isinstance(node, File):
        return draw(
            st.sampled_from(
                [
                    File(node.data + b"+", node.mode, node.touch),
                    File(node.data, node.mode, node.touch + 1),  # same bytes, new time
                    File(node.data, 0o600 if node.mode != 0o600 else 0o644, node.touch),  # mode only
                ]
            )
        )
    if isinstance(node, Symlink):
        return draw(
            st.sampled_from([Symlink(node.target + "2", node.mtime), Symlink(node.target, node.mtime + 1)])
        )
    return Folder(
        draw(mutated(node.children)), node.mode, draw(st.sampled_from([node.mtime, node.mtime + 1]))
    )


@st.composite
def mutated(draw: st.DrawFn, tree: Tree) -> Tree:
    result: Tree = {}
    for name, node in tree.items():
        what = draw(st.sampled_from(["keep", "keep", "delete", "replace", "change", "change"]))
        if what == "keep":
            result[name] = node
        elif what == "replace":  # usually another type
            result[name] = draw(nodes)
        elif what == "change":
            result[name] = draw(changed(node))
    for name, node in draw(st.dictionaries(NAMES, nodes, max_size=2)).items():
        result.setdefault(name, node)
    return result


def make(folder: Path, tree: Tree, mtime: int = 0) -> None:
    """Build ``tree`` in the existing ``folder`` with every time and mode set explicitly."""
    for name, node in tree.items():
        path = folder / name
        if isinstance(node, File):
            path.write_bytes(node.data)
            os.chmod(path, node.mode)
            # Other bytes, other time: the quick check (size and time) sees every rewrite.
            digest = int.from_bytes(hashlib.sha256(node.data).digest()[:4], "big")
            set_mtime(path, BASE_NS + digest * 1000 + node.touch)
        elif isinstance(node, Symlink):
            os.symlink(node.target, path)
            set_mtime(path, BASE_NS + node.mtime)
        else:
            path.mkdir()
            make(path, node.children, node.mtime)
            os.chmod(path, node.mode)
    set_mtime(folder, BASE_NS + mtime)


def check(source: Path, replica: Path, report: Report) -> None:
    assert report.exit_code == 0, (report.failed, report.message)
    assert_rsync_clean(source, replica)
    assert_mirror(source, replica)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=trees, replica=trees, data=st.data())
def test_a_run_makes_an_exact_mirror_and_a_second_run_changes_nothing(
    tmp_path: Path, first: Tree, replica: Tree, data: st.DataObject
) -> None:
    second = data.draw(mutated(first), label="mutated source")
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    source, backup = base / "src", base / "rep"
    source.mkdir()
    backup.mkdir()
    make(source, first)
    make(backup, replica)  # whatever was there before

    check(source, backup, mirror(source, backup, max_delete="100%"))

    clear(source)
    make(source, second)
    check(source, backup, mirror(source, backup, max_delete="100%"))

    again = mirror(source, backup)
    check(source, backup, again)
    assert (again.added, again.overwritten, again.deleted) == ([], [], [])
