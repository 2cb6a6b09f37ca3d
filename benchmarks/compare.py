#!/usr/bin/env python3
"""Time ``synchro --once`` against ``rsync -a --delete`` and ``cp -a`` (the performance targets).

The benchmark generates deterministic trees (seeded: same names, sizes,
bytes, modes and times on every machine), then runs each tool on the same
trees, interleaved (A B C A B C ...), several times, and reports the median
wall time, the ratio to rsync (and to ``cp -a`` where it was measured), the
median CPU time (user + system of the tool and its child processes, from
``wait4``) and its ratio to rsync's, and the peak resident memory. After every timed run the replica is checked to
be a true mirror with ``rsync -ani --delete --modify-window=-1``; any
difference stops the benchmark. For the ``sparse`` tree (a 2 GiB disk
image holding 10 MiB) it also reports the space the replica allocates,
and times ``rsync -a -S`` (which keeps holes) beside plain ``rsync -a``.

Run from the repository (see benchmarks/README.md)::

    .venv/bin/python benchmarks/compare.py                      # the performance targets, on /dev/shm
    .venv/bin/python benchmarks/compare.py --trees small --scenarios noop --runs 9
    .venv/bin/python benchmarks/compare.py --dir /var/tmp       # a real disk
    .venv/bin/python benchmarks/compare.py --variant proto=/tmp/proto   # also time a prototype

It uses only the standard library, rsync and cp; it is not part of the
test suite (it needs minutes and gigabytes).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import marshal
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB
SEED = 4  # any fixed value makes the trees reproducible
# 2025-01-01 00:00:00 UTC: file times are fixed too, with nanoseconds, so that
# a same-second rewrite cannot hide behind a whole-second comparison.
BASE_NS = 1_735_689_600 * 10**9
YEAR_NS = 365 * 86_400 * 10**9
DELTA_SHARE = 0.01  # the delta scenario rewrites, adds and deletes 1% of the files each
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class TreeSpec:
    name: str
    files: int
    folders: int  # approximate: the layout is two levels of sub-folders
    min_size: int
    max_size: int
    # A sparse tree: each file holds this many data segments of extent_size
    # bytes, spread over its size (the first at 0, a hole at the end), and
    # holes elsewhere, as a VM image or a database file does.
    extents: int = 0
    extent_size: int = 0


TREES = {
    "small": TreeSpec("small", 20_000, 1_000, 512, 8 * KIB),
    "big": TreeSpec("big", 8, 1, 64 * MIB, 64 * MIB),
    "huge": TreeSpec("huge", 200_000, 10_000, 512, 8 * KIB),
    # Not in the default selection (minutes to generate and to copy): the
    # memory bound, 1,000,000 files of 0-100 bytes in about 1,000 folders.
    "million": TreeSpec("million", 1_000_000, 1_000, 0, 100),
    "sparse": TreeSpec("sparse", 1, 1, 2048 * MIB, 2048 * MIB, extents=5, extent_size=2 * MIB),
}
SCENARIOS = ("initial", "noop", "delta")
# The combinations with a performance target: (reference tool, max ratio).
TARGETS: dict[tuple[str, str], tuple[str, float]] = {
    ("small", "noop"): ("rsync", 0.8),
    ("small", "initial"): ("rsync", 0.7),
    ("small", "delta"): ("rsync", 0.8),
    ("big", "initial"): ("cp -a", 1.15),
    ("huge", "noop"): ("rsync", 0.8),
}
# With --drop-caches on a disk (issue 17): a first copy that overlaps its reads.
COLD_TARGETS: dict[tuple[str, str], tuple[str, float]] = {("small", "initial"): ("rsync", 0.9)}
RSS_TARGETS_MIB = {("huge", "noop"): 64}
# All the processes of a run together (group PSS, sampled): the tree's size must not decide.
GROUP_PSS_TARGETS_MIB = {("million", "initial"): 64, ("million", "noop"): 64}
DEFAULT_TREES = ("small", "big", "huge", "sparse")
# Space the replica may allocate, as a multiple of the source's (holes kept).
ALLOC_TARGETS = {("sparse", "initial"): 1.05}


class BenchError(Exception):
    """A tool failed or a replica is not a mirror: the figures would be meaningless."""


# --------------------------------------------------------------------------- trees


def folder_layout(count: int) -> list[str]:
    """About ``count`` folders: ``dNNN`` at the top, ``dNNN/eNNN`` below them."""
    if count <= 1:
        return [""]
    top = max(1, round(count**0.5))
    per_top = max(0, count // top - 1)
    folders: list[str] = []
    for i in range(top):
        folders.append(f"d{i:03d}")
        folders.extend(f"d{i:03d}/e{j:03d}" for j in range(per_top))
    return folders


class Bytes:
    """Deterministic file content: slices of one random pool (fast), or fresh bytes when large."""

    POOL = 1 * MIB

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pool = rng.randbytes(self.POOL + 64 * KIB)

    def take(self, size: int) -> bytes:
        if size > 64 * KIB:
            return self.rng.randbytes(size)
        start = self.rng.randrange(self.POOL)
        return self.pool[start : start + size]


def write_file(path: Path, data: bytes, mode: int, mtime_ns: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)  # the umask must not decide the tree
    finally:
        os.close(fd)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def set_folder_times(root: Path, folders: Sequence[str], rng: random.Random) -> None:
    """Fixed folder times, deepest first (writing a child changes its parent's time)."""
    for rel in sorted(folders, key=lambda f: -f.count("/") if f else 1):
        stamp = BASE_NS + rng.randrange(YEAR_NS)
        os.utime(root / rel if rel else root, ns=(stamp, stamp))


def write_sparse(path: Path, spec: TreeSpec, rng: random.Random, mtime_ns: int) -> None:
    """A file of ``spec.max_size`` bytes with ``spec.extents`` data segments, holes elsewhere."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, spec.max_size)
        for index in range(spec.extents):
            os.pwrite(fd, rng.randbytes(spec.extent_size), index * spec.max_size // (spec.extents + 1))
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def allocated(root: Path) -> int:
    """Bytes the files of a tree occupy (``du``): holes take none."""
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def generate_tree(spec: TreeSpec, root: Path) -> None:
    """Create ``root`` with the tree ``spec`` describes, identically every time."""
    rng = random.Random(f"{SEED}:{spec.name}")
    if spec.extents:
        root.mkdir(parents=True)
        for index in range(spec.files):
            write_sparse(root / f"disk{index}.img", spec, rng, BASE_NS + rng.randrange(YEAR_NS))
        set_folder_times(root, [""], rng)
        return
    content = Bytes(rng)
    folders = folder_layout(spec.folders)
    root.mkdir(parents=True)
    for rel in folders:
        if rel:
            (root / rel).mkdir()
    for index in range(spec.files):
        rel = folders[index % len(folders)]
        size = rng.randint(spec.min_size, spec.max_size)
        mode = 0o755 if rng.random() < 0.05 else 0o644
        path = root / rel / f"f{index:06d}.dat"
        write_file(path, content.take(size), mode, BASE_NS + rng.randrange(YEAR_NS))
    set_folder_times(root, folders, rng)


def tree_files(root: Path) -> list[str]:
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        files.extend(os.path.normpath(os.path.join(rel, name)) for name in sorted(filenames))
    return files


def mutate_tree(spec: TreeSpec, root: Path) -> dict[str, int]:
    """The delta scenario's source: 1% rewritten (same size, new time), 1% added, 1% deleted."""
    rng = random.Random(f"{SEED}:{spec.name}:delta")
    content = Bytes(rng)
    files = tree_files(root)
    share = max(1, round(len(files) * DELTA_SHARE))
    chosen = rng.sample(files, min(len(files), 2 * share))
    rewritten, deleted = chosen[:share], chosen[share:]
    for rel in rewritten:
        path = root / rel
        st = path.stat()
        # A new time well away from the old one, with nanoseconds.
        write_file(path, content.take(st.st_size), st.st_mode & 0o7777, st.st_mtime_ns + 86_400 * 10**9 + 7)
    for rel in deleted:
        (root / rel).unlink()
    folders = sorted({os.path.dirname(rel) for rel in files})
    for index in range(share):
        rel = os.path.join(rng.choice(folders), f"new{index:06d}.dat")
        size = rng.randint(spec.min_size, spec.max_size)
        write_file(root / rel, content.take(size), 0o644, BASE_NS + YEAR_NS + rng.randrange(YEAR_NS))
    return {"rewritten": len(rewritten), "added": share, "deleted": len(deleted)}


def copy_tree(src: Path, dst: Path) -> None:
    """An exact copy (``cp -a``): the pristine replica the scenarios start from."""
    remove(dst)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


# --------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Tool:
    name: str
    argv: Callable[[Path, Path, Path], list[str]]  # (source, replica, log folder) -> command
    env: dict[str, str] | None = None
    initial_only: bool = False  # cp -a neither deletes nor skips: only an initial copy is meaningful
    sparse_only: bool = False  # rsync -S: the same as rsync on a tree without holes


def synchro_command() -> list[str]:
    """The installed ``synchro`` script of this interpreter (what users run), else ``-m``.

    Never a shell shim (pyenv's adds tens of milliseconds of bash to every run).
    """
    script = Path(sys.executable).with_name("synchro")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "synchro"]


def synchro_tool(name: str, pythonpath: str | None, pycache: Path) -> Tool:
    """synchro as installed, or imported from ``pythonpath`` (a prototype).

    Bytecode is cached as for an installed package (pip compiles it), in
    ``pycache`` (PYTHONPYCACHEPREFIX) so that nothing is written beside the
    sources; an inherited PYTHONDONTWRITEBYTECODE would otherwise make every
    run compile every module again (20-40 ms here). The warm-up round fills it.
    """
    base = synchro_command()
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(pycache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath

    def argv(src: Path, rep: Path, logs: Path) -> list[str]:
        # INTERVAL must be given to reach LOGPATH; --once ignores it.
        return [*base, str(src), str(rep), "24", str(logs), "--once", "-q"]

    return Tool(name, argv, env)


def available_tools(variants: Sequence[str], wanted: set[str] | None, pycache: Path) -> list[Tool]:
    tools = [synchro_tool("synchro", None, pycache)]
    for variant in variants:
        label, sep, path = variant.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"--variant expects NAME=PYTHONPATH, got {variant!r}")
        tools.append(synchro_tool(f"synchro[{label}]", path, pycache))
    if shutil.which("rsync"):
        tools.append(Tool("rsync", lambda s, r, _: ["rsync", "-a", "--delete", f"{s}/", f"{r}/"]))
        # rsync fills holes unless told -S (--sparse); both are shown on the sparse tree.
        sparse = ["rsync", "-a", "-S", "--delete"]
        tools.append(Tool("rsync -S", lambda s, r, _: [*sparse, f"{s}/", f"{r}/"], sparse_only=True))
    if shutil.which("cp"):
        tools.append(Tool("cp -a", lambda s, r, _: ["cp", "-a", f"{s}/.", f"{r}/"], initial_only=True))
    if wanted is not None:
        tools = [t for t in tools if t.name in wanted]
    return tools


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Sample:
    seconds: float
    maxrss_kib: int  # wait4: the largest single process of the tool's tree
    # wait4: user + system seconds of the tool and of every descendant it
    # reaped (synchro's helper, rsync's other two processes): steadier than
    # the wall time on a shared machine, which counts the time spent waiting
    # for a core.
    cpu_seconds: float


# The timed runs are started by this small separate interpreter, not by the
# benchmark itself. Linux records, at exec, the high-water RSS of the memory
# the new program replaces: for a child spawned by vfork (posix_spawn,
# subprocess) that is the *parent's* memory, so a child's ru_maxrss is never
# below its parent's peak (measured: /bin/true reports 313 MiB from a parent
# that once touched 300 MiB). The benchmark grows while it makes the trees;
# this spawner stays at a few MiB, which becomes the floor of every reading
# (measured with /bin/true and reported). It reads (argv, env, stderr path)
# as length-prefixed marshal records and answers (seconds, ru_maxrss KiB,
# exit code, user + system seconds): marshal is built in, so the spawner imports next to nothing.
SPAWNER = r"""
import marshal, os, sys, time
inp, out = sys.stdin.buffer, sys.stdout.buffer
while True:
    head = inp.read(8)
    if len(head) < 8:
        break
    argv, env, err = marshal.loads(inp.read(int.from_bytes(head, "little")))
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    cpu = usage.ru_utime + usage.ru_stime
    reply = marshal.dumps((elapsed, usage.ru_maxrss, os.waitstatus_to_exitcode(status), cpu))
    out.write(len(reply).to_bytes(8, "little") + reply)
    out.flush()
"""


class Spawner:
    """Times commands from a lean helper process, so their ru_maxrss is not the benchmark's."""

    def __init__(self, cwd: Path) -> None:
        # The work folder as current folder: ``python -m synchro`` (the fallback
        # when no script is installed) must not import a synchro/ from where
        # the benchmark was started instead of the one under test.
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", SPAWNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=cwd,
        )
        self._errors = Path(tempfile.mkstemp(prefix="synchro-bench-stderr-")[1])
        self.floor_kib = self.run(["true"], None).maxrss_kib

    def run(self, argv: list[str], env: dict[str, str] | None) -> Sample:
        """Run one command: its wall time (spawn to reaped) and ru_maxrss from wait4.

        wait4 reports the child's own peak, or that of a descendant it reaped if
        larger: the *largest* process, not the sum of processes that ran at once.
        synchro is one process, so that is its whole peak; rsync runs three
        (sender, generator, receiver) at once: see :func:`run_sampled`.
        """
        program = shutil.which(argv[0])
        if program is None:
            raise BenchError(f"{argv[0]}: not found")
        record = marshal.dumps(([program, *argv[1:]], dict(env or os.environ), str(self._errors)))
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(len(record).to_bytes(8, "little") + record)
        self._proc.stdin.flush()
        head = self._proc.stdout.read(8)
        if len(head) < 8:
            raise BenchError("the spawner helper died")
        seconds, maxrss, code, cpu = marshal.loads(self._proc.stdout.read(int.from_bytes(head, "little")))
        if code != 0:
            tail = self._errors.read_text(errors="replace")[-2000:]
            where = f" (PYTHONPATH={env['PYTHONPATH']})" if env and "PYTHONPATH" in env else ""
            raise BenchError(f"{shlex.join(argv)}{where} exited {code}:\n{tail}")
        return Sample(seconds, maxrss, cpu)

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait()
        self._errors.unlink(missing_ok=True)


def _group_pss_kib(pgid: int) -> int:
    """Proportional set size summed over the processes of a group (shared pages split, not double-counted)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                fields = stat_file.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat, the process group
                continue
            with open(f"/proc/{entry.name}/smaps_rollup", "rb") as rollup:
                for line in rollup:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1])
                        break
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or a kernel thread
    return total


def run_sampled(argv: list[str], env: dict[str, str] | None, every: float = 0.005) -> int:
    """Peak of the tool's whole process group's memory (PSS, KiB), by polling /proc.

    An extra, untimed run: polling costs CPU that would skew the timing on
    two cores, and a peak shorter than the polling period can be missed.
    """
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        process_group=0,
    )
    peak = 0
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        peak = max(peak, _group_pss_kib(proc.pid))
        time.sleep(every)
    if proc.returncode != 0:
        raise BenchError(f"{shlex.join(argv)} exited {proc.returncode} (sampled run)")
    return peak


def check_mirror(src: Path, rep: Path, context: str) -> None:
    """Fail loudly unless ``rep`` is an exact mirror of ``src`` (nanosecond times)."""
    result = subprocess.run(
        ["rsync", "-ani", "--delete", "--modify-window=-1", f"{src}/", f"{rep}/"],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    if result.returncode != 0 or result.stdout.strip():
        lines = result.stdout.splitlines()
        shown = "\n".join(lines[:20]) + (f"\n... {len(lines) - 20} more" if len(lines) > 20 else "")
        raise BenchError(f"{context}: the replica is not a mirror of the source:\n{shown}{result.stderr}")


# --------------------------------------------------------------------------- work folder


def filesystem_of(path: Path) -> str:
    """The type of the file system holding ``path`` (longest mount point prefix)."""
    best, fstype = "", "unknown"
    resolved = str(path.resolve())
    with open("/proc/mounts", encoding="utf-8", errors="replace") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) < 3:
                continue
            point = parts[1].replace("\\040", " ")
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, fstype = point, parts[2]
    return fstype


def default_base() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def drop_caches(enabled: bool, fstype: str) -> str:
    """Drop the page cache before a timed run where it means something; say what happened."""
    if not enabled:
        return "not dropped (warm cache: every tool reads files that are in memory)"
    if fstype in ("tmpfs", "ramfs"):
        return f"cannot be dropped on {fstype}: the files live in the page cache"
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as control:
            control.write("3\n")
    except OSError as error:
        raise BenchError(f"--drop-caches: cannot drop the page cache ({error.strerror})") from None
    return "dropped before every timed run (sync; echo 3 > /proc/sys/vm/drop_caches)"


@contextlib.contextmanager
def work_folder(base: Path, keep: bool) -> Iterator[Path]:
    """``BASE/synchro-bench``, locked against a concurrent benchmark; trees removed at the end unless ``keep``."""
    work = (base / "synchro-bench").resolve()
    if work == REPO or REPO in work.parents:
        raise SystemExit(f"the work folder {work} must be outside the repository {REPO}")
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w", encoding="ascii") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another benchmark is using {work}; pass another --dir") from None
        try:
            yield work
        finally:
            if not keep:
                for name in ("trees", "logs", "pycache"):
                    remove(work / name)


# --------------------------------------------------------------------------- scenarios


@dataclass
class Result:
    tree: str
    scenario: str
    tool: str
    seconds: list[float] = field(default_factory=list)
    maxrss_kib: list[int] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    group_pss_kib: int | None = None
    # Sparse trees: the replica's allocated bytes after each timed run, and the source's.
    allocated: list[int] = field(default_factory=list)
    source_allocated: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu_seconds)

    @property
    def peak_rss_mib(self) -> float:
        return max(self.maxrss_kib) / 1024


class Trees:
    """The generated trees of one work folder; reused by a later ``--keep`` run when they match."""

    def __init__(self, work: Path) -> None:
        self.root = work / "trees"
        self.root.mkdir(exist_ok=True)

    def _stamp(self, name: str, spec: TreeSpec) -> dict[str, object]:
        return {"name": name, "spec": asdict(spec), "seed": SEED, "version": 1}

    def _ready(self, name: str, spec: TreeSpec, make: Callable[[Path], None]) -> Path:
        path = self.root / name
        stamp_file = self.root / f"{name}.stamp.json"
        wanted = self._stamp(name, spec)
        if path.is_dir() and stamp_file.is_file() and json.loads(stamp_file.read_text()) == wanted:
            return path
        remove(stamp_file)
        remove(path)
        started = time.perf_counter()
        make(path)
        os.sync()
        stamp_file.write_text(json.dumps(wanted))
        print(f"  prepared {name} in {time.perf_counter() - started:.1f} s", flush=True)
        return path

    def source(self, spec: TreeSpec) -> Path:
        return self._ready(f"{spec.name}-src", spec, lambda p: generate_tree(spec, p))

    def pristine(self, spec: TreeSpec) -> Path:
        src = self.source(spec)
        return self._ready(f"{spec.name}-mirror", spec, lambda p: copy_tree(src, p))

    def delta_source(self, spec: TreeSpec) -> Path:
        src = self.source(spec)

        def make(path: Path) -> None:
            copy_tree(src, path)
            print(f"  delta: {mutate_tree(spec, path)}", flush=True)

        return self._ready(f"{spec.name}-src-delta", spec, make)


@dataclass
class Bench:
    trees: Trees
    work: Path
    runs: int
    warmup: int
    drop: bool
    fstype: str
    sample: bool
    spawner: Spawner

    @property
    def replica(self) -> Path:
        return self.work / "trees" / "replica"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def source_for(self, spec: TreeSpec, scenario: str) -> Path:
        return self.trees.delta_source(spec) if scenario == "delta" else self.trees.source(spec)

    def prepare(self, spec: TreeSpec, scenario: str, first: bool) -> None:
        """Bring the replica to the scenario's starting state (never timed)."""
        rep = self.replica
        if scenario == "initial":
            remove(rep)
            rep.mkdir()
        elif scenario == "delta" or first:
            # noop: once (every run leaves a mirror, which the check confirms);
            # delta: before each run, from the pristine mirror of the unchanged source.
            copy_tree(self.trees.pristine(spec), rep)
        remove(self.logs)  # every synchro run starts with the same (empty) log
        self.logs.mkdir()
        os.sync()
        drop_caches(self.drop, self.fstype)

    def measure(self, spec: TreeSpec, scenario: str, tools: Sequence[Tool]) -> list[Result]:
        tools = [t for t in tools if scenario == "initial" or not t.initial_only]
        tools = [t for t in tools if spec.extents or not t.sparse_only]
        src = self.source_for(spec, scenario)
        if scenario != "initial":
            self.trees.pristine(spec)
        results = {t.name: Result(spec.name, scenario, t.name) for t in tools}
        if spec.extents:
            held = allocated(src)
            print(
                f"  {spec.name}: {spec.files} x {spec.max_size / MIB:.0f} MiB, {held / MIB:.1f} MiB allocated"
            )
            for result in results.values():
                result.source_allocated = held
        for round_ in range(self.warmup + self.runs):
            timed = round_ >= self.warmup
            for tool in tools:  # interleaved: A B C A B C ...
                self.prepare(spec, scenario, first=round_ == 0 and tool is tools[0])
                sample = self.spawner.run(tool.argv(src, self.replica, self.logs), tool.env)
                check_mirror(src, self.replica, f"{spec.name}/{scenario}/{tool.name} run {round_ + 1}")
                if timed:
                    results[tool.name].seconds.append(sample.seconds)
                    results[tool.name].maxrss_kib.append(sample.maxrss_kib)
                    results[tool.name].cpu_seconds.append(sample.cpu_seconds)
                    if spec.extents:
                        results[tool.name].allocated.append(allocated(self.replica))
            label = "warm-up" if not timed else f"run {round_ - self.warmup + 1}/{self.runs}"
            print(f"  {spec.name} {scenario} {label} done", flush=True)
        if self.sample:
            for tool in tools:
                self.prepare(spec, scenario, first=False)
                peak = run_sampled(tool.argv(src, self.replica, self.logs), tool.env)
                check_mirror(src, self.replica, f"{spec.name}/{scenario}/{tool.name} sampled run")
                results[tool.name].group_pss_kib = peak
        return list(results.values())


# --------------------------------------------------------------------------- report


def first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return "not installed"
    return out.splitlines()[0].strip() if out else "unknown"


def machine() -> dict[str, object]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as info:
        mem_kib = int(info.readline().split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / MIB, 1),
        "python": platform.python_version(),
        "rsync": first_line(["rsync", "--version"]),
        "cp": first_line(["cp", "--version"]),
    }


def ratio(result: Result, by_tool: dict[str, Result], reference: str) -> float | None:
    ref = by_tool.get(reference)
    if ref is None:
        return None
    return result.median / ref.median


def cpu_ratio(result: Result, by_tool: dict[str, Result], reference: str) -> float | None:
    ref = by_tool.get(reference)
    if ref is None or not ref.median_cpu:
        return None
    return result.median_cpu / ref.median_cpu


def verdict(result: Result, by_tool: dict[str, Result], cold: bool) -> str:
    """The performance target of this row (synchro rows of targeted combinations only)."""
    if not result.tool.startswith("synchro"):
        return ""
    key = (result.tree, result.scenario)
    parts: list[str] = []
    targets = COLD_TARGETS if cold else TARGETS
    if key in targets:
        reference, limit = targets[key]
        got = ratio(result, by_tool, reference)
        if got is not None:
            parts.append(f"<={limit:g}x {reference}: {'ok' if got <= limit else 'MISS'}")
    if key in ALLOC_TARGETS and result.allocated and result.source_allocated is not None:
        limit = ALLOC_TARGETS[key]
        worst = max(result.allocated)
        ok = worst <= limit * result.source_allocated
        parts.append(f"alloc<={limit:g}x source: {'ok' if ok else 'MISS'}")
    if key in RSS_TARGETS_MIB:
        limit_mib = RSS_TARGETS_MIB[key]
        parts.append(f"RSS<={limit_mib}: {'ok' if result.peak_rss_mib <= limit_mib else 'MISS'}")
    if key in GROUP_PSS_TARGETS_MIB and result.group_pss_kib is not None:
        limit_mib = GROUP_PSS_TARGETS_MIB[key]
        ok = result.group_pss_kib <= limit_mib * 1024
        parts.append(f"group PSS<={limit_mib}: {'ok' if ok else 'MISS'}")
    return "; ".join(parts)


def rows(results: Sequence[Result], floor_mib: float, cold: bool) -> list[dict[str, object]]:
    table: list[dict[str, object]] = []
    groups: dict[tuple[str, str], dict[str, Result]] = {}
    for result in results:
        groups.setdefault((result.tree, result.scenario), {})[result.tool] = result
    for result in results:
        by_tool = groups[(result.tree, result.scenario)]
        to_rsync = ratio(result, by_tool, "rsync")
        to_cp = ratio(result, by_tool, "cp -a")
        cpu_to_rsync = cpu_ratio(result, by_tool, "rsync")
        table.append(
            {
                "tree": result.tree,
                "scenario": result.scenario,
                "tool": result.tool,
                "median_s": round(result.median, 4),
                "min_s": round(min(result.seconds), 4),
                "max_s": round(max(result.seconds), 4),
                "ratio_rsync": None if to_rsync is None else round(to_rsync, 3),
                "ratio_cp": None if to_cp is None else round(to_cp, 3),
                "median_cpu_s": round(result.median_cpu, 4),
                "cpu_ratio_rsync": None if cpu_to_rsync is None else round(cpu_to_rsync, 3),
                "peak_rss_mib": round(result.peak_rss_mib, 1),
                # At the floor, the tool's own peak is the floor or less.
                "rss_at_floor": result.peak_rss_mib <= floor_mib + 0.5,
                "group_pss_mib": None
                if result.group_pss_kib is None
                else round(result.group_pss_kib / 1024, 1),
                "runs": len(result.seconds),
                "replica_alloc_mib": round(max(result.allocated) / MIB, 1) if result.allocated else None,
                "source_alloc_mib": None
                if result.source_allocated is None
                else round(result.source_allocated / MIB, 1),
                "target": verdict(result, by_tool, cold),
                "seconds": [round(s, 4) for s in result.seconds],
                "cpu_seconds": [round(s, 4) for s in result.cpu_seconds],
            }
        )
    return table


def render(table: Sequence[dict[str, object]]) -> str:
    """A Markdown table (pastes into the README as it is)."""

    def fmt(value: object, spec: str) -> str:
        return "" if value is None else format(value, spec)

    head = [
        "tree",
        "scenario",
        "tool",
        "median s",
        "min-max s",
        "x rsync",
        "x cp -a",
        "cpu s",
        "cpu x rsync",
        "peak RSS MiB",
        "group PSS MiB",
        "replica alloc MiB",
        "runs",
        "target",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        cells = [
            str(row["tree"]),
            str(row["scenario"]),
            str(row["tool"]),
            fmt(row["median_s"], ".3f"),
            f"{row['min_s']:.3f}-{row['max_s']:.3f}",
            fmt(row["ratio_rsync"], ".2f"),
            fmt(row["ratio_cp"], ".2f"),
            fmt(row["median_cpu_s"], ".3f"),
            fmt(row["cpu_ratio_rsync"], ".2f"),
            ("<=" if row["rss_at_floor"] else "") + fmt(row["peak_rss_mib"], ".1f"),
            fmt(row["group_pss_mib"], ".1f"),
            fmt(row["replica_alloc_mib"], ".1f"),
            str(row["runs"]),
            str(row["target"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each tool (default 5)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed (but checked) rounds first (default 1)"
    )
    parser.add_argument(
        "--trees",
        default=",".join(DEFAULT_TREES),
        help="comma-separated: " + ",".join(TREES) + " (default: all but million)",
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated: initial,noop,delta"
    )
    parser.add_argument(
        "--all-combinations",
        action="store_true",
        help="every selected tree x scenario (default: only the combinations with a performance target)",
    )
    parser.add_argument(
        "--tools",
        help="comma-separated subset: synchro,rsync,rsync -S,cp -a (default: all installed)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=PYTHONPATH",
        help="also time synchro imported from PYTHONPATH (a prototype), as tool synchro[NAME]",
    )
    parser.add_argument(
        "--dir", type=Path, help="base folder of the work folder (default /dev/shm, else the temp folder)"
    )
    parser.add_argument("--json", type=Path, help="results file (default WORK/results.json)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated trees (a later run reuses them)"
    )
    parser.add_argument(
        "--drop-caches",
        action="store_true",
        help="drop the page cache before each timed run (root, real disk)",
    )
    parser.add_argument(
        "--no-sample",
        action="store_true",
        help="skip the extra untimed run that samples each tool's total memory",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    return args


def selection(args: argparse.Namespace) -> list[tuple[str, str]]:
    trees = [t for t in args.trees.split(",") if t]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for name in trees:
        if name not in TREES:
            raise SystemExit(f"unknown tree {name!r}; choose from {', '.join(TREES)}")
    for name in scenarios:
        if name not in SCENARIOS:
            raise SystemExit(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    combos = [(t, s) for t in trees for s in scenarios]
    targeted = {*TARGETS, *ALLOC_TARGETS, *GROUP_PSS_TARGETS_MIB}
    return combos if args.all_combinations else [c for c in combos if c in targeted]


def run_all(args: argparse.Namespace, work: Path) -> int:
    wanted = set(args.tools.split(",")) if args.tools else None
    tools = available_tools(args.variant, wanted, work / "pycache")
    if not tools:
        raise SystemExit("no tool selected (see --tools)")
    fstype = filesystem_of(work)
    cache = drop_caches(args.drop_caches, fstype)
    info = machine()
    print(f"work folder {work} ({fstype}); page cache {cache}", flush=True)
    print(f"machine: {info}", flush=True)
    spawner = Spawner(work)
    floor_mib = spawner.floor_kib / 1024
    print(f"RSS floor of a spawned command (/bin/true): {floor_mib:.1f} MiB", flush=True)
    bench = Bench(
        Trees(work), work, args.runs, args.warmup, args.drop_caches, fstype, not args.no_sample, spawner
    )
    results: list[Result] = []
    try:
        for tree, scenario in selection(args):
            print(f"{tree} / {scenario}: {', '.join(t.name for t in tools)}", flush=True)
            results.extend(bench.measure(TREES[tree], scenario, tools))
    except BenchError as error:
        print(f"compare.py: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        spawner.close()
    table = rows(results, floor_mib, args.drop_caches)
    print()
    print(render(table))
    out = args.json or work / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": info,
        "work_folder": str(work),
        "filesystem": fstype,
        "page_cache": cache,
        "seed": SEED,
        "runs": args.runs,
        "warmup": args.warmup,
        "rss_floor_mib": round(floor_mib, 1),
        "memory": "peak_rss_mib: wait4 ru_maxrss over the timed runs, the largest single process of the "
        "tool, never below rss_floor_mib (the spawner's own); group_pss_mib: peak of the summed PSS of "
        "all the tool's processes, sampled every 5 ms in one extra untimed run",
        "results": table,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults written to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("rsync"):
        raise SystemExit("rsync is needed, at least to check that every replica is a mirror")
    if not selection(args):
        raise SystemExit("nothing selected (add --all-combinations for combinations without a target)")
    with work_folder(args.dir or default_base(), args.keep) as work:
        return run_all(args, work)


if __name__ == "__main__":
    sys.exit(main())
