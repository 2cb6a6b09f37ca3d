"""The requests of a copy, sent as asyncssh sends them, without describing each for its log.

asyncssh's request methods describe every request for the debug log (the
attributes spelled out, the paths decoded, the sizes in words) before its
logger finds debug logging off: about a tenth of the CPU of the
connection's thread on a first copy of many small files (measured). These
send the same packets through the same request machinery
(``_make_request``: one waiter per request, errors raised as
:class:`asyncssh.SFTPError`), for SFTP version 3, which OpenSSH speaks; a
server of another version gets asyncssh's own methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

from .connect import asyncssh

__all__ = ["Requests", "requests_of"]

# SFTP version 3 (draft-ietf-secsh-filexfer-02): the request types.
FXP_OPEN, FXP_CLOSE, FXP_WRITE = 3, 4, 6
FXP_SETSTAT, FXP_FSETSTAT, FXP_OPENDIR, FXP_READDIR, FXP_REMOVE = 9, 10, 11, 12, 13
POSIX_RENAME = b"posix-rename@openssh.com"


class Requests(Protocol):
    """What a copy asks of the server (the signatures of asyncssh's request handler)."""

    async def open(self, filename: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> bytes: ...

    async def write(self, handle: bytes, offset: int, data: bytes) -> int: ...

    async def fsetstat(self, handle: bytes, attrs: asyncssh.SFTPAttrs) -> None: ...

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None: ...

    async def close(self, handle: bytes) -> None: ...

    async def remove(self, path: bytes) -> None: ...

    async def opendir(self, path: bytes) -> bytes: ...

    async def readdir(self, handle: bytes) -> tuple[Sequence[asyncssh.SFTPName], bool]:
        """The next entries, and whether they are the last (SFTPEOFError: no more)."""
        ...

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None: ...


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


class _Version3:
    """:class:`Requests` of SFTP version 3, encoded here."""

    def __init__(self, handler: Any) -> None:
        self._request = handler._make_request

    async def open(self, filename: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> bytes:
        return cast(
            bytes,
            await self._request(FXP_OPEN, _string(filename), pflags.to_bytes(4, "big"), attrs.encode(3)),
        )

    async def write(self, handle: bytes, offset: int, data: bytes) -> int:
        return cast(
            int, await self._request(FXP_WRITE, _string(handle), offset.to_bytes(8, "big"), _string(data))
        )

    async def fsetstat(self, handle: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await self._request(FXP_FSETSTAT, _string(handle), attrs.encode(3))

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await self._request(FXP_SETSTAT, _string(path), attrs.encode(3))

    async def close(self, handle: bytes) -> None:
        await self._request(FXP_CLOSE, _string(handle))

    async def remove(self, path: bytes) -> None:
        await self._request(FXP_REMOVE, _string(path))

    async def opendir(self, path: bytes) -> bytes:
        return cast(bytes, await self._request(FXP_OPENDIR, _string(path)))

    async def readdir(self, handle: bytes) -> tuple[Sequence[asyncssh.SFTPName], bool]:
        return cast(
            tuple[Sequence[asyncssh.SFTPName], bool], await self._request(FXP_READDIR, _string(handle))
        )

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._request(POSIX_RENAME, _string(oldpath), _string(newpath))


def requests_of(sftp: asyncssh.SFTPClient) -> Requests:
    """The requests of ``sftp``'s session: encoded here for version 3, else asyncssh's own."""
    handler = sftp._handler
    # ``_make_request`` is asyncssh's own request machinery, not its public
    # API: an asyncssh without it gets its own (slower) methods.
    if handler.version == 3 and callable(getattr(handler, "_make_request", None)):
        return _Version3(handler)
    return cast(Requests, handler)
