"""What macOS lacks, taken away on Linux: the copy still copies every byte.

macOS has no ``copy_file_range`` (``os.copy_file_range`` is missing) and
its ``sendfile`` sends to sockets only (``ENOTSOCK`` for a regular file):
the Python copy falls back to ``read``/``write``, and ``_copy.c`` built
without ``copy_file_range`` (what its ``#ifdef`` does on macOS) too.
"""

from __future__ import annotations

import errno
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest
from treeutil import assert_mirror

from synchro import mirror
from synchro.endpoints.local import filecopy

REPO = Path(__file__).resolve().parent.parent


def _tree(src: Path) -> None:
    (src / "sub").mkdir(parents=True)
    (src / "small.txt").write_bytes(b"small")
    (src / "empty").write_bytes(b"")
    (src / "sub" / "big.bin").write_bytes(os.urandom(3 << 20) + b"tail")  # several chunks
    with open(src / "sparse.img", "wb") as sparse:  # holes, then data at the end
        sparse.truncate(8 << 20)
        sparse.seek(6 << 20)
        sparse.write(b"data after a hole")


@pytest.fixture
def like_macos(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """os.copy_file_range gone, os.sendfile refusing files as macOS does; the calls it got."""
    monkeypatch.delattr(os, "copy_file_range")
    calls: list[int] = []

    def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        calls.append(count)
        raise OSError(errno.ENOTSOCK, "Socket operation on non-socket")

    monkeypatch.setattr(os, "sendfile", sendfile)
    monkeypatch.setenv("SYNCHRO_PROCESSES", "1")  # all of it in this process, where the patches are
    return calls


def test_the_python_copy_without_copy_file_range_and_sendfile(
    like_macos: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filecopy, "_copy_small", None)  # not compiled: Python copies every file
    src, rep = tmp_path / "src", tmp_path / "rep"
    _tree(src)
    report = mirror(src, rep, create_replica=True)
    assert report.exit_code == 0, report.failed
    assert_mirror(src, rep)
    assert like_macos, "sendfile was tried first"


def _build_without_copy_file_range(folder: Path) -> ModuleType:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    built = folder / f"_copy{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-O2",
            f"-I{sysconfig.get_paths()['include']}",
            '-DSYNCHRO_SOURCE_SHA256="test"',
            "-DSYNCHRO_NO_COPY_FILE_RANGE",
            str(REPO / "synchro" / "endpoints" / "local" / "_copy.c"),
            "-o",
            str(built),
        ],
        check=True,
    )
    symbols = subprocess.run(["nm", "-D", str(built)], capture_output=True, text=True, check=True).stdout
    assert "copy_file_range" not in symbols  # taken out at compile time, as on macOS
    loader = importlib.machinery.ExtensionFileLoader("_copy", str(built))
    spec = importlib.util.spec_from_file_location("_copy", built, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_compiled_copy_built_without_copy_file_range(
    like_macos: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = _build_without_copy_file_range(tmp_path)
    monkeypatch.setattr(filecopy, "_copy_small", compiled.copy_small)
    src, rep = tmp_path / "src", tmp_path / "rep"
    _tree(src)
    for number in range(50):
        (src / f"note-{number}.txt").write_bytes(b"n" * number * 97)
    report = mirror(src, rep, create_replica=True)
    assert report.exit_code == 0, report.failed
    assert_mirror(src, rep)
