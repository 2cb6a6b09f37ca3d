"""Reaching the SSH server of an sftp:// replica: URLs, the user's ~/.ssh set-up, one-line refusals."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from servers import SshServer, free_port

from synchro.endpoints.sftp.connect import SftpLocation, connect, parse_sftp_url
from synchro.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sftp://nas/backups/photos", SftpLocation("nas", None, None, "/backups/photos")),
        ("sftp://ana@nas:2222/backups/photos/", SftpLocation("nas", "ana", 2222, "/backups/photos")),
        ("sftp://nas/with%20space/%23x", SftpLocation("nas", None, None, "/with space/#x")),
    ],
    ids=["alias", "user-port-trailing-slash", "quoted"],
)
def test_urls_are_read(url: str, expected: SftpLocation) -> None:
    assert parse_sftp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sftp://ana:secret@nas/b", "a password never goes in a URL"),
        ("sftp://nas", "must be absolute"),
        ("sftp://nas/", "must be absolute"),
        ("sftp://nas:99999/b", "the port must be a number"),
        ("sftp:///b", "no host"),
        ("sftp://nas/a/../b", "'.' or '..'"),
        ("sftp://nas/a?x", "no '?' or '#'"),
    ],
    ids=["password", "no-path", "root", "port", "no-host", "dotdot", "query"],
)
def test_bad_urls_are_one_line_refusals(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        parse_sftp_url(url)
    assert "\n" not in str(caught.value)


def _connect(url: str, timeout: float = 10) -> list[str]:
    async def go() -> list[str]:
        conn = await connect(parse_sftp_url(url), timeout=timeout)
        async with conn, conn.start_sftp_client() as sftp:
            return sorted(set(await sftp.listdir(parse_sftp_url(url).path)) - {".", ".."})

    return asyncio.run(go())


@pytest.fixture
def home(sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the server's client home as HOME, so a test may change it."""
    home = tmp_path / "home"
    shutil.copytree(sshd.home, home)
    config = (home / ".ssh" / "config").read_text().replace(str(sshd.home), str(home))
    (home / ".ssh" / "config").write_text(config)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def test_a_url_and_a_host_alias_reach_the_same_folder(sshd: SshServer, home: Path, tmp_path: Path) -> None:
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "a.txt").write_text("a")
    assert _connect(sshd.url(tmp_path / "rep")) == ["a.txt"]
    assert _connect(sshd.url(tmp_path / "rep", alias=True)) == ["a.txt"]


def test_an_unknown_host_key_is_refused_with_what_to_do(sshd: SshServer, home: Path, tmp_path: Path) -> None:
    (home / ".ssh" / "known_hosts").write_text("")
    with pytest.raises(ConfigError) as caught:
        _connect(sshd.url(tmp_path))
    message = str(caught.value)
    assert f"the host key of [127.0.0.1]:{sshd.port} is not in" in message
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1" in message
    assert "\n" not in message


def test_a_changed_host_key_is_refused_and_said_so(sshd: SshServer, home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key = other.with_suffix(".pub").read_text().split()[:2]
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {' '.join(key)}\n")
    with pytest.raises(ConfigError, match=r"has CHANGED since it was recorded"):
        _connect(sshd.url(tmp_path, alias=True))


def test_a_refused_login_is_one_line(sshd: SshServer, home: Path, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    shutil.copyfile(tmp_path / "k", home / ".ssh" / "id_ed25519")
    shutil.copyfile(tmp_path / "k.pub", home / ".ssh" / "id_ed25519.pub")
    with pytest.raises(ConfigError, match="the server refused the login"):
        _connect(sshd.url(tmp_path))


def test_a_server_that_is_not_there_is_one_line(home: Path, tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(ConfigError, match=rf"cannot reach 127.0.0.1:{port}: .*[Cc]onnect"):
        _connect(f"sftp://root@127.0.0.1:{port}{tmp_path}")
