"""The progress bar in a real terminal: tmux runs the command and the tasks, the test reads the screen.

A terminal is where a bar left behind, a line glued to it or a count that
lies can be seen, so these tests look at the screen tmux shows
(``capture-pane``), not at the bytes written. Where the screen is read in
the middle of a run, the run is held at a known point: a ``sitecustomize``
put on the child's path makes the copy of one large file wait, after a
given number of bytes, on a FIFO that the test opens once it has read the
screen. The test waits for what it expects to appear on the screen (with a
deadline), never for a fixed time.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import child_env
from test_tasks import INV, REPO, ini
from treeutil import build, log_messages

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

MiB = 1 << 20
BIG = 16 * MiB
HOLD_AT = 4 * MiB
STAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ ")

SITECUSTOMIZE = '''\
"""Test only: redraw the bar at every step, and hold the copy of one file on a FIFO."""
import os

if os.environ.get("SYNCHRO_TEST_DELAY"):
    import synchro.faces.progress as _progress

    _progress.DELAY = float(os.environ["SYNCHRO_TEST_DELAY"])
    _progress.REFRESH = 0.0

if os.environ.get("SYNCHRO_TEST_HOLD"):
    import synchro.endpoints.local.filecopy as _filecopy

    _size, _at, _fifo = os.environ["SYNCHRO_TEST_HOLD"].split(":", 2)
    _real = _filecopy._copy_data

    def _copy_data(src, dst, on_chunk=None, *args, **kwargs):
        if os.fstat(src).st_size != int(_size):
            return _real(src, dst, on_chunk, *args, **kwargs)
        held = []

        def chunk(total):
            if on_chunk is not None:
                on_chunk(total)
            if total >= int(_at) and not held:
                held.append(total)
                with open(_fifo) as release:  # blocks until the test opens it
                    release.read()

        return _real(src, dst, chunk, *args, **kwargs)

    _filecopy._copy_data = _copy_data
'''


class Screen:
    """A tmux server of its own (its own socket) running one command in a 120x30 pane."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.socket = tmp_path / "tmux.sock"
        self.site = tmp_path / "site"
        self.site.mkdir()
        (self.site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        self.release = tmp_path / "release.fifo"
        os.mkfifo(self.release)

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    def start(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        """Run ``command`` in the pane; when it ends, the pane shows ``[exit N]`` and stays."""
        environment = {
            **child_env(),
            "PYTHONPATH": os.pathsep.join([str(self.site), str(REPO)]),
            "LANG": "C.UTF-8",
            "TERM": "tmux-256color",
            **env,
        }
        script = self.tmp_path / "run.sh"
        exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in environment.items())
        # A Ctrl+C stops the command, not this script (a trapped signal is
        # reset to its default in the command), which then says how it ended.
        script.write_text(
            f"{exports}cd {shlex.quote(str(cwd))}\ntrap 'true' INT\n{shlex.join(command)}\n"
            "printf '[exit %d]\\n' $?\nexec cat\n",
            encoding="utf-8",
        )
        self.tmux("-u", "new-session", "-d", "-x", "120", "-y", "30", f"sh {shlex.quote(str(script))}")

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-")  # wrapped lines joined, history too

    def wait_for(self, seen: Callable[[str], bool], what: str, seconds: float = 60) -> str:
        """The screen once ``seen(screen)`` holds: polled until then, or fail at the deadline."""
        deadline = time.monotonic() + seconds
        while True:
            screen = self.text()
            if seen(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"the screen never showed {what}:\n{screen}")
            time.sleep(0.05)  # between two looks at the screen, not a wait for the run

    def exit_code(self) -> tuple[int, list[str]]:
        """Wait for the command to end: its exit code and the lines above ``[exit N]``."""
        screen = self.wait_for(lambda text: re.search(r"^\[exit \d+\]$", text, re.M) is not None, "[exit N]")
        lines = screen.rstrip("\n").splitlines()
        index = max(i for i, line in enumerate(lines) if re.fullmatch(r"\[exit \d+\]", line))
        return int(lines[index][6:-1]), [line.rstrip() for line in lines[:index]]

    def let_go(self) -> None:
        """Let the held copy go on."""
        with open(self.release, "w") as fifo:
            fifo.write("go")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, check=False)


@pytest.fixture
def screen(tmp_path: Path) -> Iterator[Screen]:
    terminal = Screen(tmp_path)
    try:
        yield terminal
    finally:
        terminal.close()


def assert_no_bar_left(lines: list[str], *, allowed: tuple[str, ...] = ()) -> None:
    """Every line is a whole log line (or an allowed one): nothing of a bar is left, nothing glued."""
    for line in lines:
        if not line or line.startswith(allowed):
            continue
        assert STAMPED.match(line), f"not a log line: {line!r}\n" + "\n".join(lines)
        assert "entries" not in line and "%|" not in line, f"a bar was left: {line!r}"


def small_tree(root: Path) -> None:
    root.mkdir()
    build(root, {f"doc{index:02}.txt": "x" * 100 for index in range(30)})


def backups_ini(tmp_path: Path, **extra: str) -> Path:
    keys = "".join(f"{key} = {value}\n" for key, value in extra.items())
    return ini(
        tmp_path / "backups.ini",
        f"[docs]\nsource = src\nreplica = rep\ncreate_replica = yes\n{keys}",
    )


# --- a short run: the bar never stays ---------------------------------------------------------------


@pytest.mark.parametrize("face", ["command", "inv backup", "inv watch"])
def test_a_short_run_leaves_no_bar_on_the_screen(screen: Screen, tmp_path: Path, face: str) -> None:
    small_tree(tmp_path / "src")
    backups_ini(tmp_path)
    command = {
        "command": [*map(str, _synchro()), "src", "rep", "--once", "--create-replica"],
        "inv backup": [str(INV), "-r", str(REPO), "backup", "-p", "docs"],
        "inv watch": [str(INV), "-r", str(REPO), "watch", "--max", "1"],
    }[face]

    screen.start(command, {}, tmp_path)  # the bar's own delay: a run this short draws none
    code, lines = screen.exit_code()

    assert code == 0, "\n".join(lines)
    assert_no_bar_left(lines, allowed=("docs: ok: ",))
    assert sum(" ADDED doc" in line for line in lines) == 30
    assert any(" SUMMARY added=30 " in line for line in lines)


def _synchro() -> list[str]:
    from conftest import synchro_command

    return synchro_command()


# --- held in the middle of a large file --------------------------------------------------------------


def test_the_bar_counts_bytes_as_they_are_written_in_binary_units(screen: Screen, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    build(tmp_path / "src", {**{f"doc{index}.txt": "x" * 100 for index in range(5)}, "big.bin": "b" * BIG})

    screen.start(
        [*map(str, _synchro()), "src", "rep", "--once", "--create-replica"],
        {
            "SYNCHRO_TEST_DELAY": "0",
            "SYNCHRO_TEST_HOLD": f"{BIG}:{HOLD_AT}:{screen.release}",
            # One process: the copy is held in this process's own copy thread.
            "SYNCHRO_PROCESSES": "1",
        },
        tmp_path,
    )
    held = screen.wait_for(lambda text: "4.0 MiB/16.0 MiB" in text, "4.0 MiB of 16.0 MiB written")

    [bar] = [line for line in held.splitlines() if "4.0 MiB/16.0 MiB" in line]
    match = re.match(
        r"^(\d+)/(\d+) entries: +(\d+)%\|.*\| 4\.0 MiB/16\.0 MiB \[.*, [\d.]+ [KMG]?i?B/s\]$", bar
    )
    assert match, bar
    done, total, percent = map(int, match.groups())
    # The five small files and the folder are done; the large file is not yet.
    assert (done, total, percent) == (5, 7, 25), bar
    assert "GB" not in held and "MB" not in held.replace("MiB", "")

    screen.let_go()
    code, lines = screen.exit_code()

    assert code == 0, "\n".join(lines)
    assert_no_bar_left(lines)
    assert " ADDED big.bin" in "\n".join(lines)
    assert log_messages(tmp_path)[-1].startswith("SUMMARY added=6 ")


def test_ctrl_c_in_backup_all_leaves_no_bar(screen: Screen, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    build(tmp_path / "src", {**{f"doc{index}.txt": "x" * 100 for index in range(5)}, "big.bin": "b" * BIG})
    (tmp_path / "kept").mkdir()
    # Keeping versions copies each file in this thread, where the hold (a
    # blocking open of the FIFO) is also where Ctrl+C lands.
    backups_ini(tmp_path, versions="kept/docs")

    screen.start(
        [str(INV), "-r", str(REPO), "backup-all"],
        {"SYNCHRO_TEST_DELAY": "0", "SYNCHRO_TEST_HOLD": f"{BIG}:{HOLD_AT}:{screen.release}"},
        tmp_path,
    )
    screen.wait_for(lambda text: "4.0 MiB/16.0 MiB" in text, "the bar of the held copy")
    screen.tmux("send-keys", "C-c")
    code, lines = screen.exit_code()

    assert code == 130, "\n".join(lines)
    assert lines[-1] == "synchro: interrupted"
    # The terminal itself echoes ^C where the cursor was; nothing else may be left.
    assert_no_bar_left([line.replace("^C", "") for line in lines[:-1]])
    assert any("INTERRUPTED the run was stopped by Ctrl+C" in line for line in lines)
    assert not (tmp_path / "rep" / "big.bin").exists()
