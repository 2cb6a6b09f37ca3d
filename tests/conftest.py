"""Fixtures shared by the test modules: a source/replica pair, runs, other users.

Tests run as root, for whom permissions do not bite. Where they must, the
test forks: the child drops to uid/gid 65534 ("nobody") and runs synchro in
process (the interpreter lives under /root, unreadable for other users, so
it cannot be started again as nobody), then reports back through a pipe.
"""

from __future__ import annotations

import contextlib
import ctypes  # noqa: F401 - imported before forking: nobody cannot import from /root
import encodings.ascii
import encodings.latin_1  # noqa: F401
import json
import os
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

# Real exFAT, FAT32 and case-folding ext4 replicas (session-wide images).
from fsfixtures import (  # noqa: F401
    casefold,
    casefold_volume,
    exfat,
    exfat_volume,
    exfat_volume_for_nobody,
    tmpfs,
    vfat,
    vfat_volume,
)
from servers import own_weed, s3_server, sshd  # noqa: F401 - the real servers' fixtures, for every test module

import synchro
from synchro import Report
from synchro.pipeline.helper import ENV, Helper
from synchro.pipeline.plan import Step
from synchro.pipeline.walk import Walk

NOBODY = 65534


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_delivered() -> Iterator[None]:
    """Ctrl+C reaches the commands the tests start, as a terminal delivers it.

    A test run started in the background by a script (``pytest &``, nohup)
    inherits SIGINT ignored, and so would every command it starts: the
    tests that press Ctrl+C would then wait for a run that never hears it.
    A handler (not "ignored") becomes the default again in a started command.
    """
    before = signal.getsignal(signal.SIGINT)
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, before)


@dataclass(frozen=True)
class Pair:
    """A source and a replica folder in ``tmp_path``, and a log path beside them."""

    root: Path
    src: Path
    rep: Path
    logs: Path  # the log path: the log itself is logs/LOGS/LOG-YYYY-MM-DD.txt

    def mirror(self, **options: Any) -> Report:
        return synchro.mirror(self.src, self.rep, logpath=self.logs, **options)


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.mkdir()
    rep.mkdir()
    return Pair(tmp_path, src, rep, tmp_path)


requires_rsync = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")


# --- running as another user ---------------------------------------------------


def open_to_others(path: Path) -> None:
    """Let uid 65534 reach ``path``: add o+rx to it and every ancestor up to /tmp
    (pytest makes /tmp/pytest-of-root 0700)."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        os.chmod(folder, mode | 0o005)
        if folder == Path("/tmp") or folder == Path(folder.anchor):
            break


@dataclass
class ChildResult:
    code: int
    payload: Any


def report_payload(report: Report) -> dict[str, Any]:
    return {
        "counts": report.counts,
        "added": report.added,
        "overwritten": report.overwritten,
        "deleted": report.deleted,
        "failed": report.failed,
        "message": report.message,
    }


def run_as_nobody(work: Callable[[], tuple[int, Any]]) -> ChildResult:
    """Run ``work`` in a forked child as uid/gid 65534; return its exit code and payload.

    ``work`` returns (exit code, JSON-able payload). A crash in the child fails
    the test with the child's traceback.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 99
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code, payload = work()
            message = json.dumps({"payload": payload})
        except BaseException:
            message = json.dumps({"traceback": traceback.format_exc()})
            code = 99
        finally:
            with contextlib.suppress(BaseException), os.fdopen(write_end, "w") as pipe:
                pipe.write(message)
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        answer = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if "traceback" in answer:
        pytest.fail("the child running as nobody crashed:\n" + answer["traceback"])
    return ChildResult(code, answer.get("payload"))


def mirror_as_nobody(src: Path, rep: Path, **options: Any) -> ChildResult:
    def work() -> tuple[int, Any]:
        report = synchro.mirror(src, rep, **options)
        return int(report.exit_code), report_payload(report)

    return run_as_nobody(work)


def chown_tree(path: Path, uid: int = NOBODY) -> None:
    os.chown(path, uid, uid, follow_symlinks=False)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, uid, follow_symlinks=False)


# --- other helpers ---------------------------------------------------------------


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """``immutable(path)``: ``chattr +i`` (even root cannot change it), undone afterwards."""
    marked: list[Path] = []

    def mark(path: Path) -> None:
        if shutil.which("chattr") is None:
            pytest.skip("chattr is not installed")
        result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {result.stderr.strip()}")
        marked.append(path)

    yield mark
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], check=False)


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail (instead of hanging the suite) if the test blocks for 30 seconds."""

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError("the test blocked")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Shared runs divide their work the same way every time (see tests/holds.py)."""
    from holds import hold_shared_runs

    close = hold_shared_runs(monkeypatch.setattr)
    yield
    close()


def synchro_command() -> list[str]:
    return [sys.executable, "-m", "synchro"]


def child_env() -> dict[str, str]:
    """Environment for child Pythons: import the synchro this process imported, UTF-8 output."""
    env = dict(os.environ)
    root = str(Path(synchro.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("PYTHONWARNINGS", None)
    return env


def start_python(code: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """``python -c code args...`` in the background: all three streams piped, as text,
    with :func:`child_env` unless ``env`` is given."""
    popen.setdefault("env", child_env())
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run_synchro(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The ``synchro`` command in a child process, output captured as text."""
    return subprocess.run(
        [*synchro_command(), *map(str, args)],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=cwd,
        timeout=60,
        check=False,
    )


# --- bind mounts ---------------------------------------------------------------


@pytest.fixture
def bind_mount() -> Iterator[Callable[[Path, Path], Path]]:
    """``bind_mount(folder, alias)``: show ``folder`` at ``alias`` too (``mount --bind``),
    unmounted afterwards (before ``tmp_path`` is ever cleaned: a clean-up through a
    bind mount would delete the folder it shows)."""
    mounted: list[Path] = []

    def bind(folder: Path, alias: Path) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a bind mount needs root and mount(8)")
        alias.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "--bind", str(folder), str(alias)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {result.stderr.strip()}")
        mounted.append(alias)
        return alias

    yield bind
    for alias in reversed(mounted):
        subprocess.run(["umount", "-l", str(alias)], capture_output=True, check=True)


# --- a run shared with the helper process --------------------------------------------------


@pytest.fixture
def helper_keeps_a_part(monkeypatch: pytest.MonkeyPatch, no_hang: None) -> Iterator[list[bool]]:
    """Runs in this process share their work with a forked helper that surely applies a part.

    The helper, once it holds its first sub-tree, says so and waits until
    this process has taken back all it could: that sub-tree stays the
    helper's to apply, whatever the speed of either process. The list it
    yields says, for each run, whether the helper was left a part.
    """
    monkeypatch.setenv(ENV, "2")  # share the run even on one core
    claimed_r, claimed_w = os.pipe()
    release_r, release_w = os.pipe()
    main = os.getpid()
    real_run, real_take_back = Walk.run, Helper.take_back
    kept: list[bool] = []
    waiting: list[Helper] = []  # the helper whose first claim this process has not waited for

    def walk_run(self: Walk, steps: list[Step]) -> None:
        if os.getpid() != main and not self.plan.actions:  # in the helper, its first sub-tree
            os.write(claimed_w, b".")
            os.read(release_r, 1)
        real_run(self, steps)

    def take_back(self: Helper) -> list[Step] | None:
        if self not in waiting:
            waiting.append(self)
            os.read(claimed_r, 1)
        steps = real_take_back(self)
        if steps is None:
            kept.append(len(self.left()) > 0)
            os.write(release_w, b".")
        return steps

    monkeypatch.setattr(Walk, "run", walk_run)
    monkeypatch.setattr(Helper, "take_back", take_back)
    try:
        yield kept
    finally:
        for fd in (claimed_r, claimed_w, release_r, release_w):
            os.close(fd)


# tests/windows/ runs under Windows CPython (tests/test_windows_lane.py runs
# it under Wine): never entered elsewhere, so that its conftest.py does not
# take this one's place as the module ``conftest``.
collect_ignore = [] if os.name == "nt" else ["windows"]


@pytest.fixture(params=["local", "portable"])
def each_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per local endpoint: folder descriptors, and paths
    (``SYNCHRO_ENDPOINT=portable``, what Windows uses). Subprocesses inherit it."""
    previous = os.environ.get("SYNCHRO_ENDPOINT")
    os.environ["SYNCHRO_ENDPOINT"] = request.param
    try:
        yield request.param
    finally:
        if previous is None:
            del os.environ["SYNCHRO_ENDPOINT"]
        else:
            os.environ["SYNCHRO_ENDPOINT"] = previous
