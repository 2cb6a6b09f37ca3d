"""Reach an SSH server the way the user's own ``ssh`` would, or refuse in one line.

A replica ``sftp://[user@]host[:port]/absolute/path`` is reached with the
user's normal SSH set-up and nothing else: ``host`` may be a ``Host`` alias
of ``~/.ssh/config`` (its ``HostName``, ``Port``, ``User`` and
``IdentityFile`` apply; asyncssh reads that file as OpenSSH does), keys come
from ``~/.ssh/`` or the ssh agent, and the server's host key must already be
in ``~/.ssh/known_hosts``. No password is ever asked for or accepted.

Every way the start can fail is a :class:`~synchro.errors.ConfigError` (exit
2, nothing written) with one line that says what to do: an unknown or
changed host key, a refused login, a server that cannot be reached or does
not answer in time. A server that stops answering later is noticed by SSH
keepalives, so a cron run never hangs on it forever.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import warnings
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from cryptography.utils import CryptographyDeprecationWarning

from ...errors import ConfigError

# asyncssh's import warns about DSA keys on standard error (a deprecation in
# the cryptography package): every quiet cron run would become a mail.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import asyncssh
    from asyncssh.config import SSHClientConfig

__all__ = ["DEFAULT_TIMEOUT", "SftpLocation", "asyncssh", "connect", "parse_sftp_url", "resolve_location"]

DEFAULT_TIMEOUT = 30.0  # seconds to connect and log in; also how long a silent server is waited for
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)


class SftpLocation(NamedTuple):
    """Where a replica is: what the URL says, before ``~/.ssh/config`` is applied."""

    host: str  # a host name, an address, or a Host alias of ~/.ssh/config
    user: str | None  # None: the config's User, else the local user name
    port: int | None  # None: the config's Port, else 22
    path: str  # absolute, on the server

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"sftp://{user}{self.host}{port}{self.path}"


def parse_sftp_url(url: str) -> SftpLocation:
    """``sftp://[user@]host[:port]/absolute/path`` → :class:`SftpLocation`; ConfigError if malformed."""
    parts = urlsplit(url)
    if parts.scheme != "sftp":
        raise ConfigError(f"not an sftp:// URL: {url}")
    if parts.password is not None:
        raise ConfigError(f"{url}: a password never goes in a URL; use a key in ~/.ssh or the ssh agent")
    if parts.query or parts.fragment:
        raise ConfigError(f"{url}: an sftp:// URL has no '?' or '#' part (write them as %3F and %23)")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{url}: the port must be a number from 1 to 65535") from None
    host = parts.hostname
    if not host:
        raise ConfigError(f"{url}: no host: write sftp://[user@]host[:port]/absolute/path")
    path = unquote(parts.path)
    if not path.startswith("/") or path == "/":
        raise ConfigError(
            f"{url}: the replica's path must be absolute and not the server's root: sftp://{host}/path"
        )
    path = path.rstrip("/")
    if any(part in (".", "..") for part in path.split("/")):
        raise ConfigError(f"{url}: the replica's path may not hold '.' or '..'")
    return SftpLocation(host, unquote(parts.username) if parts.username else None, port, path)


def _known_hosts_path() -> str:
    return os.path.join(os.path.expanduser("~"), ".ssh", "known_hosts")


def resolve_location(location: SftpLocation) -> SftpLocation:
    """``location`` as the connection reaches it: the ``HostName``, ``Port`` and ``User`` of
    ``~/.ssh/config`` applied (a ``Host`` alias resolved), as asyncssh applies them; nothing is connected.

    What the URL says wins over the config, as with ``ssh``; the user is
    otherwise the local one, the port 22.
    """
    host, user, port = location.host, location.user, location.port
    try:
        local_user = getpass.getuser()
    except (KeyError, OSError):
        local_user = ""
    path = os.path.join(os.path.expanduser("~"), ".ssh", "config")
    if os.path.exists(path):
        try:
            config = SSHClientConfig.load(
                None, [path], False, False, False, local_user, user or (), location.host, port or ()
            )
        except (OSError, ValueError):
            pass  # the connection says what is wrong with it
        else:
            host = str(config.get("Hostname", host))
            user = str(config.get("User", "")) or user
            port = int(str(config.get("Port", port or 22)))
    return SftpLocation(host.lower(), user or local_user, port or 22, location.path)


def _resolved(location: SftpLocation) -> tuple[str, int]:
    """The host name and port a Host alias stands for in ~/.ssh/config (what known_hosts records)."""
    resolved = resolve_location(location)
    assert resolved.port is not None
    return resolved.host, resolved.port


def _host_key_refusal(location: SftpLocation, port: int, host: str) -> str:
    """The one line for a host key that is not trusted: unknown, or changed (say which)."""
    shown = f"[{host}]:{port}" if port != 22 else host
    known = _known_hosts_path()
    changed = False
    if os.path.exists(known):
        try:
            trusted = asyncssh.read_known_hosts(known).match(host, "", port)[0]
        except (OSError, ValueError):  # an unreadable file: say "unknown", the fix is the same
            trusted = []
        changed = bool(trusted)
    port_flag = f"-p {port} " if port != 22 else ""
    if changed:
        return (
            f"{location}: the host key of {shown} has CHANGED since it was recorded in {known}; "
            f"if the server was really reinstalled, remove the old key (ssh-keygen -R '{shown}') "
            f"and connect once with ssh {port_flag}{host} to check and record the new one"
        )
    return (
        f"{location}: the host key of {shown} is not in {known}; connect once with "
        f"ssh {port_flag}{host} to check and record it (or: ssh-keyscan {port_flag}{host} >> {known})"
    )


async def connect(
    location: SftpLocation, *, timeout: float = DEFAULT_TIMEOUT
) -> asyncssh.SSHClientConnection:
    """Open the SSH connection, or raise ConfigError with one line."""
    options: dict[str, object] = {
        "connect_timeout": timeout,
        "login_timeout": timeout,
        # A server that stops answering (a NAS gone to sleep, a cable pulled)
        # closes the connection after about `timeout` seconds, so every
        # request waiting on it fails instead of hanging a cron run.
        "keepalive_interval": max(1.0, timeout / 3),
        "keepalive_count_max": 3,
        "password_auth": False,
        "kbdint_auth": False,
        # AES-GCM first (the server picks the first one it has): asyncssh
        # seals each ChaCha20-Poly1305 packet with two cipher objects and a
        # Poly1305 of its own, which costs twice the CPU per request (measured
        # on loopback: ~150 µs against ~300 µs a request), and a remote replica
        # sends a few requests per file. The rest is asyncssh's default order.
        "encryption_algs": CIPHERS,
    }
    if location.user is not None:
        options["username"] = location.user
    if location.port is not None:
        options["port"] = location.port
    shown = f"{location.host}:{location.port}" if location.port else location.host
    try:
        return await asyncssh.connect(location.host, **options)
    except asyncssh.HostKeyNotVerifiable:
        host, port = _resolved(location)
        raise ConfigError(_host_key_refusal(location, port, host)) from None
    except asyncssh.PermissionDenied:
        raise ConfigError(
            f"{location}: the server refused the login: no key in ~/.ssh (or IdentityFile), "
            "nor one of the ssh agent, is authorized there for this user"
        ) from None
    except asyncssh.DisconnectError as error:
        raise ConfigError(f"{location}: the server closed the connection: {error.reason}") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise ConfigError(f"{location}: no answer from {shown} within {timeout:g} s") from None
    except OSError as error:
        raise ConfigError(f"{location}: cannot reach {shown}: {error.strerror or error}") from None
    except (ValueError, asyncssh.Error) as error:  # e.g. a malformed ~/.ssh/config or key file
        raise ConfigError(f"{location}: cannot start SSH: {error}") from None
