"""The Windows lane's helpers: these tests run under Windows CPython (tests/test_windows_lane.py
runs them under Wine, with ``--confcutdir`` here: tests/conftest.py is for POSIX);
elsewhere tests/conftest.py keeps pytest out of this folder."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
OPEN_EXISTING = 3
INVALID_HANDLE = ctypes.c_void_p(-1).value


def long_path(path: Path | str) -> str:
    """``path`` with the ``\\\\?\\`` prefix: past 260 characters, and names Windows would rewrite."""
    return "\\\\?\\" + os.path.abspath(path)


@contextmanager
def held_open(path: Path | str) -> Iterator[None]:
    """``path`` opened as another program does that shares it with nobody (share mode 0)."""
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateFileW.restype = ctypes.c_void_p
    handle = kernel32.CreateFileW(
        long_path(path), GENERIC_READ | GENERIC_WRITE, 0, None, OPEN_EXISTING, 0x80, None
    )
    if handle in (None, INVALID_HANDLE):
        raise OSError(ctypes.get_last_error(), "CreateFileW failed", str(path))
    try:
        yield
    finally:
        kernel32.CloseHandle(ctypes.c_void_p(handle))


def attributes(path: Path | str) -> int:
    return os.lstat(path).st_file_attributes


def set_attributes(path: Path | str, value: int) -> None:
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    if not kernel32.SetFileAttributesW(str(path), value):
        raise OSError(ctypes.get_last_error(), "SetFileAttributesW failed", str(path))


def python(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """This Windows Python in another process, with synchro importable."""
    env = dict(os.environ, PYTHONUTF8="1")
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); " + args[0]
    return subprocess.Popen(
        [sys.executable, "-c", code, *args[1:]],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def log_lines(folder: Path) -> list[str]:
    return [
        line
        for log in sorted((folder / "LOGS").glob("LOG-*.txt"))
        for line in log.read_text("utf-8").splitlines()
    ]
