"""Time ``synchro`` to an ``sftp://`` replica against ``rsync -a --delete -e ssh`` and ``rclone sync``.

Everything runs on this machine, over loopback: a private OpenSSH server
(Debian's ``/usr/sbin/sshd`` on a free port, a temporary host key and
client key, root login with the key) serves the replicas, and each tool
reaches it the way a user's would (synchro and rclone over SFTP, rsync
through ``ssh`` to the server's ``rsync``). The trees are those of
``compare.py`` (seeded, identical on every machine):

- ``small``: 20,000 files of 0.5 to 8 KiB in 1,000 folders, ``initial``
  (empty replica), ``noop`` (replica already a mirror) and ``delta`` (1% of
  the files rewritten, 1% added, 1% deleted);
- ``gib``: one 1 GiB file, ``initial``.

Each tool runs on the same trees, interleaved, ``--runs`` times; the median
wall time, the median CPU time of the tool's processes on this side
(user + system; the server's are not counted) and the ratio of the wall
times to rsync over ssh are reported. After each timed
run the replica is checked: the same names and bytes as the source
(``rsync -rlnc --delete``), and, for synchro and rsync, the times to the
second (SFTP version 3 keeps whole seconds) and the permission bits
(rclone keeps neither permissions nor folder times: it is shown for its
speed, not as a mirror).

Run from the repository::

    .venv/bin/python benchmarks/remote.py --trees small --scenarios noop,delta --runs 3
    .venv/bin/python benchmarks/remote.py --trees gib --tools synchro,rsync

It is not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import BASE_NS, MIB, SEED, TREES, TreeSpec, generate_tree, mutate_tree, synchro_command

GIB_TREE = TreeSpec("gib", 1, 1, 1024 * MIB, 1024 * MIB)
SCENARIOS = ("initial", "noop", "delta")
# The targets of the issue: (tree, scenario) -> highest ratio to rsync over ssh.
TARGETS = {
    ("small", "noop"): 1.0,
    ("small", "delta"): 1.0,
    ("small", "initial"): 1.2,
    ("gib", "initial"): 1.2,
}


@dataclass(frozen=True)
class Server:
    port: int
    home: Path  # HOME of the clients: .ssh/{id_ed25519,known_hosts,config}
    key: Path
    known_hosts: Path
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def ssh_server(work: Path) -> Iterator[Server]:
    """A private sshd on 127.0.0.1 that lets the generated key in as root."""
    base = work / "sshd"
    (base / "home" / ".ssh").mkdir(parents=True)
    host_key, key = base / "host_key", base / "home" / ".ssh" / "id_ed25519"
    for path in (host_key, key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    port = _free_port()
    known = base / "home" / ".ssh" / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {' '.join(host_key.with_suffix('.pub').read_text().split()[:2])}\n")
    config = base / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nPidFile {base / 'pid'}\n"
        f"AuthorizedKeysFile {key}.pub\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
        "LogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(base / "log")])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"sshd did not start: {(base / 'log').read_text()}") from None
                time.sleep(0.05)
        yield Server(port, base / "home", key, known, process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()


@dataclass(frozen=True)
class Tool:
    name: str
    argv: Callable[[Server, Path, Path, Path], list[str]]  # (server, source, replica, logs)
    exact: bool  # keeps times and permissions (checked after each run)


def _ssh(server: Server) -> str:
    return (
        f"ssh -p {server.port} -i {server.key} -o UserKnownHostsFile={server.known_hosts} "
        "-o StrictHostKeyChecking=yes -o BatchMode=yes"
    )


TOOLS = {
    "synchro": Tool(
        "synchro",
        lambda s, src, rep, logs: [
            *synchro_command(),
            str(src),
            f"sftp://root@127.0.0.1:{s.port}{rep}",
            "24",
            str(logs),
            "--once",
            "-q",
            "--max-delete",
            "100%",
        ],
        exact=True,
    ),
    "rsync -e ssh": Tool(
        "rsync -e ssh",
        lambda s, src, rep, logs: [
            "rsync",
            "-a",
            "--delete",
            "-e",
            _ssh(s),
            f"{src}/",
            f"root@127.0.0.1:{rep}/",
        ],
        exact=True,
    ),
    "rclone sync": Tool(
        "rclone sync",
        lambda s, src, rep, logs: [
            "rclone",
            "sync",
            "--config",
            "/dev/null",
            f"{src}",
            f":sftp,host=127.0.0.1,port={s.port},user=root,key_file={s.key},"
            f"known_hosts_file={s.known_hosts},disable_hashcheck=true:{rep}",
        ],
        exact=False,
    ),
}


def check(tool: Tool, src: Path, rep: Path) -> None:
    """The replica holds the source's names and bytes (and, for exact tools, times to the second and modes)."""
    argv = ["rsync", "-rlnic", "--delete", f"{src}/", f"{rep}/"]
    if tool.exact:
        argv[1] = "-rlptnic"
        argv.insert(2, "--modify-window=1")
    out = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=True).stdout
    if out.strip():
        raise SystemExit(f"{tool.name}: the replica is not a mirror:\n" + "\n".join(out.splitlines()[:20]))


def timed(tool: Tool, server: Server, src: Path, rep: Path, logs: Path) -> tuple[float, float]:
    """Run ``tool`` once: its wall time, and the CPU time (user + system) of its processes here.

    The CPU time is that of the client's processes (synchro; rsync and its
    ssh; rclone), not of the server's: on a shared machine it is the
    steadier figure of the two.
    """
    env = dict(os.environ, HOME=str(server.home))
    env.pop("SSH_AUTH_SOCK", None)
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    # Byte code cached as a user's installation has it (an inherited
    # PYTHONDONTWRITEBYTECODE would compile synchro at every start).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(logs.parent / "pycache")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        tool.argv(server, src, rep, logs), env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(
            f"{tool.name} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def write_big(path: Path, size: int) -> None:
    """One file of ``size`` seeded random bytes (random.randbytes refuses a gibibyte at once)."""
    rng = random.Random(f"{SEED}:gib")
    path.parent.mkdir(parents=True)
    with path.open("wb") as out:
        for _ in range(size // (64 * MIB)):
            out.write(rng.randbytes(64 * MIB))
    os.utime(path, ns=(BASE_NS, BASE_NS))


def run(args: argparse.Namespace, work: Path) -> None:
    tools = [TOOLS[name] for name in TOOLS if name.split()[0] in args.tools]
    with ssh_server(work) as server:
        print(f"# {len(tools)} tools, {args.runs} runs each, on {work}, sshd on port {server.port}")
        print(
            f"{'tree':6} {'scenario':8} {'tool':14} {'median s':>9} {'cpu s':>6} "
            f"{'runs':>24} {'ratio':>6} target"
        )
        for tree in args.trees:
            spec = GIB_TREE if tree == "gib" else TREES[tree]
            original = work / f"{tree}-src"
            if not original.exists() and tree == "gib":
                write_big(original / "big.bin", spec.max_size)
            elif not original.exists():
                generate_tree(spec, original)
            mutated = work / f"{tree}-delta"
            for scenario in args.scenarios:
                if tree == "gib" and scenario != "initial":
                    continue
                if scenario == "delta" and not mutated.exists():
                    subprocess.run(["cp", "-a", str(original), str(mutated)], check=True)
                    mutate_tree(spec, mutated)
                src = mutated if scenario == "delta" else original
                times: dict[str, list[float]] = {tool.name: [] for tool in tools}
                cpus: dict[str, list[float]] = {tool.name: [] for tool in tools}
                for _ in range(args.runs):
                    for tool in tools:
                        rep = work / "rep"
                        shutil.rmtree(rep, ignore_errors=True)
                        if scenario == "initial":
                            rep.mkdir()
                        else:
                            # A mirror of the original made by the tool itself (untimed).
                            rep.mkdir()
                            timed(tool, server, original, rep, work / "logs")
                        seconds, cpu = timed(tool, server, src, rep, work / "logs")
                        times[tool.name].append(seconds)
                        cpus[tool.name].append(cpu)
                        check(tool, src, rep)
                reference = statistics.median(times["rsync -e ssh"]) if "rsync -e ssh" in times else None
                for tool in tools:
                    median = statistics.median(times[tool.name])
                    cpu = statistics.median(cpus[tool.name])
                    ratio = f"{median / reference:.2f}" if reference else "-"
                    target = TARGETS.get((tree, scenario)) if tool.name == "synchro" else None
                    runs = " ".join(f"{t:.2f}" for t in times[tool.name])
                    shown = f"<= {target}" if target else ""
                    print(
                        f"{tree:6} {scenario:8} {tool.name:14} {median:9.2f} {cpu:6.2f} "
                        f"{runs:>24} {ratio:>6} {shown}"
                    )
                    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", default="small", help="comma-separated: small,gib")
    parser.add_argument(
        "--scenarios", default="initial,noop,delta", help="comma-separated: initial,noop,delta"
    )
    parser.add_argument(
        "--tools", default="synchro,rsync,rclone", help="comma-separated: synchro,rsync,rclone"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each tool (default 3)")
    parser.add_argument(
        "--dir", default="/dev/shm", help="where the trees and replicas go (default /dev/shm)"
    )
    args = parser.parse_args()
    args.trees = args.trees.split(",")
    args.scenarios = args.scenarios.split(",")
    args.tools = args.tools.split(",")
    work = Path(tempfile.mkdtemp(prefix="synchro-remote-", dir=args.dir))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
