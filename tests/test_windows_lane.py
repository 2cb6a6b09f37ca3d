"""The Windows lane: tests/windows/ run under Windows CPython 3.11 in Wine.

No Windows machine is needed: the official embeddable CPython runs under
Wine (``/usr/lib/wine/wine64``), with Windows wheels of the dependencies
(see tests/winenv.py, cached between sessions). Wine maps ``/`` to ``Z:``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from winenv import WINE, WindowsPython, windows_path, windows_python

from synchro import mirror

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not WINE.exists(), reason="Wine is not installed (apt-get install wine wine64)"
)


@pytest.fixture(scope="session")
def winpy() -> WindowsPython:
    return windows_python()


def test_the_windows_suite_passes_under_windows_python(winpy: WindowsPython, tmp_path: Path) -> None:
    base = tmp_path / "base"
    result = winpy.run(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-rs",
        f"--confcutdir={windows_path(REPO / 'tests' / 'windows')}",
        f"--rootdir={windows_path(REPO / 'tests' / 'windows')}",
        f"--basetemp={windows_path(base)}",
        windows_path(REPO / "tests" / "windows"),
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout, result.stdout


def _tree(root: Path) -> dict[str, tuple[str, bytes | None, int, bool]]:
    """Every entry: kind, bytes, modification time, read-only."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        found[rel] = (kind, data, st.st_mtime_ns, not st.st_mode & stat.S_IWUSR)
    return found


def test_the_same_tree_mirrored_by_linux_and_by_windows_gives_the_same_replica(
    winpy: WindowsPython, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "Photos" / "2024").mkdir(parents=True)
    (src / "empty").mkdir()
    files = {
        "notes.txt": b"alpha\n",
        "Photos/2024/img 001.jpg": bytes(range(256)) * 40,
        "Photos/readme": b"",
        "caf\u00e9 \u00e0 la cr\u00e8me.txt": b"unicode",
        "big.bin": os.urandom(3 << 20),  # goes through the copies in flight
    }
    for index, (rel, data) in enumerate(sorted(files.items())):
        path = src / rel
        path.write_bytes(data)
        os.utime(path, ns=(1_700_000_000_000_000_000 + index * 10**9 + 123_456_700,) * 2)
    (src / "notes.txt").chmod(0o444)  # read-only on both systems
    for folder in (src / "Photos" / "2024", src / "Photos", src / "empty"):
        os.utime(folder, ns=(1_600_000_000_000_000_000,) * 2)

    linux = tmp_path / "linux"
    report = mirror(src, linux, create_replica=True)
    assert report.exit_code == 0, report.failed

    windows = tmp_path / "windows"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from synchro import mirror;"
        "r = mirror(sys.argv[2], sys.argv[3], create_replica=True);"
        "print(r.exit_code, r.failed); sys.exit(int(r.exit_code))"
    )
    result = winpy.run(
        "-c", script, windows_path(REPO), windows_path(src), windows_path(windows), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr

    def comparable(tree: dict[str, tuple[str, bytes | None, int, bool]]) -> dict[str, object]:
        # Windows keeps times to 100 ns; folders' read-only bits mean nothing there.
        return {
            rel: (kind, data, mtime // 100, readonly if kind == "file" else None)
            for rel, (kind, data, mtime, readonly) in tree.items()
        }

    assert comparable(_tree(windows)) == comparable(_tree(linux))
    assert set(_tree(windows)) == {
        "Photos",
        "Photos/2024",
        "Photos/2024/img 001.jpg",
        "Photos/readme",
        "big.bin",
        "caf\u00e9 \u00e0 la cr\u00e8me.txt",
        "empty",
        "notes.txt",
    }
