"""Property: through any sequence of edits, every run mirrors and the next one has nothing to do.

Hypothesis draws a source tree, a replica that holds something else, and a
sequence of edits of the source (mutations: deletions, new entries, new
bytes, times and modes; and type changes at any depth: a file becomes a
folder or a link, a folder a file or a link, a link a file or a folder).
After every run ``rsync -ani --delete --modify-window=-1`` must print
nothing, the trees must be equal entry by entry, and a second run must log
no change at all.

``SYNCHRO_HYPOTHESIS_EXAMPLES`` raises the number of examples (default 12
here, each a sequence of up to four edits).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from conftest import requires_rsync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_property import (
    File,
    Folder,
    Node,
    Symlink,
    Tree,
    check,
    files,
    folders,
    links,
    make,
    mutated,
    nodes,
    trees,
)
from treeutil import clear, entries, log_messages

from synchro import mirror

# Each test runs on both local endpoints: folder descriptors and paths (Windows).
pytestmark = [requires_rsync, pytest.mark.usefixtures("each_endpoint")]

EXAMPLES = int(os.environ.get("SYNCHRO_HYPOTHESIS_EXAMPLES", "12"))


def other_type(node: Node) -> st.SearchStrategy[Node]:
    if isinstance(node, File):
        return st.one_of(links, folders(nodes))
    if isinstance(node, Symlink):
        return st.one_of(files, folders(nodes))
    return st.one_of(files, links)


@st.composite
def retyped(draw: st.DrawFn, tree: Tree) -> Tree:
    """Some entries, at any depth, become another type; the rest stays."""
    result: Tree = {}
    for name, node in tree.items():
        if draw(st.booleans()):
            result[name] = draw(other_type(node))
        elif isinstance(node, Folder):
            result[name] = Folder(draw(retyped(node.children)), node.mode, node.mtime)
        else:
            result[name] = node
    return result


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=trees, replica=trees, data=st.data())
def test_every_run_of_a_sequence_of_edits_mirrors_and_the_next_logs_no_change(
    tmp_path: Path, first: Tree, replica: Tree, data: st.DataObject
) -> None:
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    source, backup, logs = base / "src", base / "rep", base / "logs"
    source.mkdir()
    backup.mkdir()
    make(source, first)
    make(backup, replica)  # whatever was there before
    current = first
    check(source, backup, mirror(source, backup, max_delete="100%"))

    for step in range(data.draw(st.integers(1, 4), label="edits")):
        edit = data.draw(st.sampled_from([mutated, retyped]), label=f"edit {step}")
        current = data.draw(edit(current), label=f"source after edit {step}")
        clear(source)
        make(source, current)

        check(source, backup, mirror(source, backup, max_delete="100%"))

        start = len(log_messages(logs))
        again = mirror(source, backup, logpath=logs)
        check(source, backup, again)
        messages = log_messages(logs)[start:]
        assert entries(messages) == [], messages
        assert messages[-1].startswith("SUMMARY added=0 overwritten=0 deleted=0 ")
