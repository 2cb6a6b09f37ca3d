"""The progress bar: drawn on a terminal only, log lines kept whole, tqdm loaded only when drawn."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from conftest import Pair
from treeutil import build

import synchro.faces.progress
from synchro import Synchro
from synchro.faces.progress import BarConsole, wanted

REPO = Path(__file__).resolve().parents[1]
BAR = re.compile(r"\d+/\d+ entries: +\d+%\|")  # "12/40 entries:  30%|###"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_wanted_on_a_terminal_unless_quiet() -> None:
    assert wanted(Terminal(), quiet=False)
    assert not wanted(Terminal(), quiet=True)
    assert not wanted(io.StringIO(), quiet=False)


def test_log_lines_are_printed_above_the_bar() -> None:
    stream = io.StringIO()
    console = BarConsole(stream, delay=0, refresh=0)
    console.write("before\n")
    bar = console(3, 3000)
    bar.advance(1, 1000)  # drawn now
    console.write("2026-03-01 03:00:00 ADDED a\n")
    for _ in range(2):
        bar.advance(1, 1000)
    assert bar.done == (3, 3000)
    bar.close()
    console.write("after\n")
    text = stream.getvalue()
    # Redrawn at each step (refresh=0), in binary units as the result lines say them.
    assert "1/3 entries:  33%|" in text
    assert "| 1000 B/2.9 KiB [" in text
    assert "3/3 entries: 100%|" in text
    assert "| 2.9 KiB/2.9 KiB [" in text
    lines = text.replace("\r", "\n").splitlines()
    assert "2026-03-01 03:00:00 ADDED a" in lines  # whole, on a line of its own
    assert text.startswith("before\n")
    # Cleared at the end: blanks, back to the start of the line, then the next line.
    assert re.search(r"\r +\rafter\n$", text)
    assert console.bar is None


def test_a_run_without_bytes_counts_entries() -> None:
    stream = io.StringIO()
    bar = BarConsole(stream, delay=0, refresh=0)(2, 0)
    bar.advance(1, 0)
    bar.advance(1, 0)
    assert bar.done == (2, 0)
    bar.close()
    assert "1/2 entries:  50%|" in stream.getvalue()
    assert "2/2 entries: 100%|" in stream.getvalue()


def test_log_lines_before_the_delay_never_draw_the_bar() -> None:
    """A short run's lines are printed plainly: no bar appears, so none is left behind."""
    stream = io.StringIO()
    console = BarConsole(stream, delay=3600)
    bar = console(2, 2000)
    console.write("2026-03-01 03:00:00 ADDED a\n")
    bar.advance(1, 1000)
    console.write("2026-03-01 03:00:00 ADDED b\n")
    bar.advance(1, 1000)
    bar.close()
    console.write("2026-03-01 03:00:00 SUMMARY\n")
    assert not bar.drawn
    assert stream.getvalue() == (
        "2026-03-01 03:00:00 ADDED a\n2026-03-01 03:00:00 ADDED b\n2026-03-01 03:00:00 SUMMARY\n"
    )


class Hangup(io.StringIO):
    """A terminal that went away after some output (an ssh session closed)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, text: str) -> int:
        if self.tell() + len(text) > self.room:
            raise OSError(5, "Input/output error")
        return super().write(text)


def test_a_terminal_that_goes_away_stops_the_bar_not_the_run() -> None:
    stream = Hangup(room=200)
    console = BarConsole(stream, delay=0, refresh=0)
    bar = console(1000, 0)
    try:
        for _ in range(1000):
            bar.advance(1, 0)  # never raises
        assert bar.done == (1000, 0)
    finally:
        bar.close()
    # The log's next line meets the error itself (and drops its console, see DailyLog).
    with pytest.raises(OSError):
        console.write("2026-03-01 03:00:00 SUMMARY\n")


def make_tree(root: Path, count: int) -> None:
    root.mkdir()
    for index in range(count):
        (root / f"f{index}").write_text("x" * 100, encoding="utf-8")


def test_synchro_draws_a_bar_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synchro.faces.progress, "DELAY", 0)
    make_tree(tmp_path / "src", 5)
    (tmp_path / "rep").mkdir()
    stream = io.StringIO()
    with Synchro(tmp_path, console=stream, progress=True) as s:
        s.configure(tmp_path / "src", tmp_path / "rep")
        assert s.run().exit_code == 0
    text = stream.getvalue()
    assert BAR.search(text)
    assert text.rstrip("\n").splitlines()[-1].split(" ", 2)[2].startswith("SUMMARY added=5 ")


FRAME = re.compile(r"(\d+)/(\d+) entries: +(\d+)%\|[^|]*\| ([\d.]+ [KMG]?i?B)/([\d.]+ [KMG]?i?B) \[")


def test_the_bar_counts_every_entry_and_byte_of_both_processes(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, helper_keeps_a_part: list[bool]
) -> None:
    """Shared with the helper, with large files copied in chunks: the bar ends at its totals."""
    monkeypatch.setattr(synchro.faces.progress, "DELAY", 0)
    monkeypatch.setattr(synchro.faces.progress, "REFRESH", 0)  # every step drawn
    build(
        pair.src,
        {
            f"d{folder}": {"big.bin": "b" * (3 << 20), **{f"f{file}": "x" for file in range(20)}}
            for folder in range(6)
        },
    )
    stream = Terminal()
    with Synchro(pair.logs, console=stream, progress=True) as api:
        api.configure(pair.src, pair.rep)
        report = api.run()

    assert helper_keeps_a_part == [True]
    assert report.counts["added"] == 6 * 22
    frames = FRAME.findall(stream.getvalue())
    entries = [int(done) for done, *_ in frames]
    assert entries == sorted(entries)  # never backwards
    done, total, percent, written, size = frames[-1]
    assert (done, percent, written) == (total, "100", size)  # the last frame drawn: everything
    assert size == "18.0 MiB"
    # Bytes shown while a large file was being written: not only whole files.
    shown = {frame[3] for frame in frames}
    assert len(shown) > 6 * 2


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "not-asked"])
def test_no_bar_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet: bool) -> None:
    monkeypatch.setattr(synchro.faces.progress, "DELAY", 0)
    make_tree(tmp_path / "src", 5)
    (tmp_path / "rep").mkdir()
    stream = io.StringIO()
    with Synchro(tmp_path, console=stream, quiet=quiet, progress=quiet) as s:
        s.configure(tmp_path / "src", tmp_path / "rep")
        s.run()
    assert "entries" not in stream.getvalue()


PROBE = """
import struct
import sys
import termios
from synchro.faces.cli import main
code = main(sys.argv[1:])
print("LOADED", *[name for name in ("tqdm", "schedule", "invoke") if name in sys.modules], file=sys.stderr)
sys.exit(code)
"""


def run_in_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run a Python child with its standard output on a pseudo-terminal."""
    leader, follower = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, where tqdm draws nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-c", PROBE, *args], stdout=follower, stderr=subprocess.PIPE, env=env, text=True
    )
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    _, err = child.communicate(timeout=30)
    return child.returncode, output.decode("utf-8", "replace"), err


@pytest.fixture
def child_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    # Draw at once, so that a run of milliseconds shows its bar.
    (site / "sitecustomize.py").write_text(
        "import synchro.faces.progress\nsynchro.faces.progress.DELAY = 0\n", encoding="utf-8"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    return env


def test_the_command_draws_a_bar_on_a_terminal(tmp_path: Path, child_env: dict[str, str]) -> None:
    make_tree(tmp_path / "src", 20)
    code, output, err = run_in_terminal(
        [str(tmp_path / "src"), str(tmp_path / "rep"), "24", str(tmp_path), "--once", "--create-replica"],
        child_env,
    )
    assert code == 0, err
    assert BAR.search(output)
    assert err.split() == ["LOADED", "tqdm"]
    lines = output.replace("\r", "\n").splitlines()
    assert sum(" ADDED f" in line and line.endswith(("ADDED f0", "ADDED f19")) for line in lines) == 2


@pytest.mark.parametrize(
    ("terminal", "flags", "files"),
    [(True, ["-q"], 5), (True, [], 0), (False, [], 5)],
    ids=["terminal-quiet", "terminal-nothing-to-do", "pipe"],
)
def test_the_command_stays_lean_without_a_bar(
    tmp_path: Path, child_env: dict[str, str], terminal: bool, flags: list[str], files: int
) -> None:
    make_tree(tmp_path / "src", files)
    (tmp_path / "rep").mkdir()
    # Equal folder times, so that "nothing to do" really has nothing to do
    # (a differing time would be one action, and a bar for it).
    mtime = (tmp_path / "src").stat().st_mtime_ns
    os.utime(tmp_path / "rep", ns=(mtime, mtime))
    args = [str(tmp_path / "src"), str(tmp_path / "rep"), "24", str(tmp_path), "--once", *flags]
    if terminal:
        code, output, err = run_in_terminal(args, child_env)
    else:
        result = subprocess.run(
            [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=child_env, timeout=30
        )
        code, output, err = result.returncode, result.stdout, result.stderr
    assert code == 0, err
    assert "entries" not in output
    assert err.split() == ["LOADED"]  # no tqdm, schedule or invoke for one cycle
