"""One SSH connection and its SFTP channel, driven from synchronous code.

The pipeline calls the replica from its own thread (and copy jobs from a
few more) and waits for each answer; asyncssh is asynchronous. A
:class:`Session` runs an event loop in a background thread that owns the
connection, and each synchronous call submits a coroutine to it and waits
for its result. Many calls may wait at once, from several threads: their
requests are in flight together on the one channel, which is what a remote
replica needs (a run is bound by round trips, not by this machine).

Every failure of the SFTP layer comes back as an :class:`OSError` with an
``errno`` (an entry that is not there is ``ENOENT``), as a local file
system's would, so the pipeline handles both alike. A lost connection is
:class:`ConnectionLost`, with one line that names the server.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from contextlib import suppress
from typing import Any, TypeVar

from ...errors import ConfigError
from ..base import ReplicaLost
from .connect import SftpLocation, asyncssh, connect
from .wire import Requests, requests_of

MSG_IGNORE = 2  # RFC 4253

T = TypeVar("T")

# asyncssh's SFTP status codes → errno (OpenSSH's sftp-server maps errno to
# these few codes; every other failure is "Failure", a plain I/O error).
_ERRNO = {
    asyncssh.FX_NO_SUCH_FILE: errno.ENOENT,
    asyncssh.FX_PERMISSION_DENIED: errno.EACCES,
    asyncssh.FX_FILE_ALREADY_EXISTS: errno.EEXIST,
    asyncssh.FX_OP_UNSUPPORTED: errno.EOPNOTSUPP,
    asyncssh.FX_NO_SPACE_ON_FILESYSTEM: errno.ENOSPC,
    asyncssh.FX_QUOTA_EXCEEDED: errno.EDQUOT,
    asyncssh.FX_DIR_NOT_EMPTY: errno.ENOTEMPTY,
    asyncssh.FX_NOT_A_DIRECTORY: errno.ENOTDIR,
    asyncssh.FX_FILE_IS_A_DIRECTORY: errno.EISDIR,
    asyncssh.FX_INVALID_FILENAME: errno.EINVAL,
    asyncssh.FX_LINK_LOOP: errno.ELOOP,
    asyncssh.FX_WRITE_PROTECT: errno.EROFS,
}


class ConnectionLost(ReplicaLost):
    """The connection to the server was lost: every later request fails with it too."""


class Session:
    """The connection to one server, open until :meth:`close`."""

    def __init__(self, location: SftpLocation, *, timeout: float) -> None:
        self.location = location
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="synchro-sftp", daemon=True)
        self._thread.start()
        self._lost: ConnectionLost | None = None
        self._starting: list[Callable[[], Coroutine[Any, Any, None]]] = []  # see start_soon
        self._starting_lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()  # started, held until done
        self.connection: asyncssh.SSHClientConnection | None = None
        try:
            self.connection = self._wait(self.submit(connect(location, timeout=timeout)))
            self.sftp: asyncssh.SFTPClient = self._wait(self.submit(self._start_sftp()))
            self.requests: Requests = requests_of(self.sftp)
        except BaseException:
            self.close()
            raise

    async def _start_sftp(self) -> asyncssh.SFTPClient:
        assert self.connection is not None
        _coalesce_writes(self.connection)
        _no_ignore_packets(self.connection)
        try:
            sftp = await asyncio.wait_for(self.connection.start_sftp_client(), self.timeout)
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as error:
            raise ConfigError(f"{self.location}: the server offers no SFTP: {error}") from None
        _no_packet_descriptions(self.connection, sftp)
        return sftp

    def offers(self, extension: str) -> bool:
        """Whether the server offers an OpenSSH extension: ``posix_rename``, ``fsync``, ``lsetstat``...

        asyncssh keeps what the server announced as flags on its request
        handler only (it uses each where it is offered and raises otherwise).
        """
        return bool(getattr(self.sftp._handler, f"_supports_{extension}", False))

    def start_soon(self, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``start()`` as a task on the connection's loop, with no one waiting for it.

        Called from other threads, many times in a row: the loop is woken
        once for all those that come before it runs, not once each.
        """
        with self._starting_lock:
            self._starting.append(start)
            if len(self._starting) > 1:
                return  # a wake-up is on its way
        self.loop.call_soon_threadsafe(self._start_all)

    def _start_all(self) -> None:
        with self._starting_lock:
            starts, self._starting = self._starting, []
        for start in starts:
            task = self.loop.create_task(start())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start ``coro`` on the connection's loop; its future, to wait for later."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], context: str = "") -> T:
        """Run ``coro`` on the connection's loop and return its result (errors as OSError)."""
        if self._lost is not None:
            coro.close()
            raise self._lost
        return self.result(self.submit(coro), context)

    def result(self, future: Future[T], context: str = "") -> T:
        """The result of a submitted coroutine, its SFTP errors as OSError (``context``: the path)."""
        try:
            return self._wait(future)
        except asyncssh.SFTPError as error:
            raise self.os_error(error, context) from None
        except (asyncssh.Error, BrokenPipeError, ConnectionError, EOFError) as error:
            raise self._connection_lost(error) from None

    def translate(self, error: BaseException, context: str = "") -> BaseException:
        """An error of a request as :meth:`result` raises it (SFTP errors and lost connections as OSError)."""
        if isinstance(error, asyncssh.SFTPError):
            return self.os_error(error, context)
        if isinstance(error, asyncssh.Error | BrokenPipeError | ConnectionError | EOFError):
            return self._connection_lost(error)
        return error

    def _wait(self, future: Future[T]) -> T:
        try:
            return future.result()
        except BaseException:
            # Ctrl+C while waiting: the request is abandoned, not left running.
            future.cancel()
            raise

    def os_error(self, error: asyncssh.SFTPError, context: str) -> OSError:
        if error.code == asyncssh.FX_CONNECTION_LOST or error.code == asyncssh.FX_NO_CONNECTION:
            return self._connection_lost(error)
        code = _ERRNO.get(error.code, errno.EIO)
        return OSError(code, error.reason or "failed on the server", context or None)

    def _connection_lost(self, error: BaseException) -> ConnectionLost:
        if self._lost is None:
            reason = (
                getattr(error, "reason", "")
                or (error.strerror if isinstance(error, OSError) else "")
                or str(error)
                or type(error).__name__
            )
            self._lost = ConnectionLost(
                errno.ECONNRESET, f"the connection to {self.location} was lost ({reason})"
            )
        return self._lost

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def lost_error(self) -> ConnectionLost:
        """The error every request fails with once the connection is lost (only then)."""
        assert self._lost is not None
        return self._lost

    def close(self) -> None:
        """Close the connection and stop the loop (waits at most the timeout)."""
        if not self._thread.is_alive():
            return
        connection, self.connection = self.connection, None
        if connection is not None:

            async def closed() -> None:
                connection.close()
                await connection.wait_closed()

            future = self.submit(asyncio.wait_for(closed(), self.timeout))
            # Gone already, or not answering: the process ends it anyway.
            with suppress(asyncio.TimeoutError, TimeoutError, OSError, asyncssh.Error):
                future.result()
        # What still runs on the loop (the lock's refresher of a run whose
        # connection was lost) is cancelled and let finish, as asyncio.run
        # does: a task closed with its loop would be reported at exit
        # ("Task was destroyed but it is pending!") on a cron run's stderr.
        with suppress(asyncio.TimeoutError, TimeoutError):
            self.submit(_cancel_the_rest(self.timeout)).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _cancel_the_rest(timeout: float) -> None:
    """Cancel every task of the running loop but this one, and wait until they end (at most ``timeout``)."""
    this = asyncio.current_task()  # not wrapped in wait_for: its task would be one of the rest
    rest = [task for task in asyncio.all_tasks() if task is not this]
    for task in rest:
        task.cancel()
    if rest:
        await asyncio.wait_for(asyncio.gather(*rest, return_exceptions=True), timeout)


def _coalesce_writes(connection: asyncssh.SSHClientConnection) -> None:
    """Send what one turn of the loop writes to the connection's socket in one system call.

    asyncssh writes each SSH packet to the socket as soon as it is made, and
    a remote replica makes many small ones at once (a file's write,
    attributes, sync and close; dozens of files in flight): one ``send``
    each, and a wake-up of the server for each. Joined at the end of the
    loop's turn, they go out together, in the same order.
    """
    # The only way to the socket's writes; an asyncssh without it just runs slower.
    transport = getattr(connection, "_transport", None)
    if transport is None:
        return
    loop = asyncio.get_running_loop()
    pending: list[bytes] = []
    write, close, abort = transport.write, transport.close, transport.abort

    def flush() -> None:
        if pending:
            data = b"".join(pending)
            pending.clear()
            if not transport.is_closing():
                write(data)

    def coalesced(data: bytes | bytearray | memoryview) -> None:
        if not pending:
            loop.call_soon(flush)
        pending.append(bytes(data))

    def closing() -> None:
        flush()
        close()

    def aborting() -> None:
        pending.clear()
        abort()

    transport.write = coalesced
    transport.close = closing
    transport.abort = aborting


def _no_ignore_packets(connection: asyncssh.SSHClientConnection) -> None:
    """Send no empty ``SSH_MSG_IGNORE`` packet before each packet of data.

    asyncssh puts one before every packet once the connection is encrypted:
    a defence of CBC ciphers (whose next IV an observer knows) that no
    cipher this connection may use needs (:data:`~.connect.CIPHERS`: GCM,
    ChaCha20-Poly1305, CTR), and OpenSSH sends none. It doubled the packets
    sealed and sent (and opened by the server): about a fifth of the CPU of
    each SFTP request, measured. Other IGNORE packets go out as before.
    """
    send = getattr(connection, "send_packet", None)
    if send is None:  # an asyncssh built otherwise: its packets go out as it makes them
        return
    empty = bytes(4)  # an SSH string of no bytes: its length, 0

    def send_packet(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == (empty,):
            return
        send(pkttype, *args, handler=handler)

    connection.send_packet = send_packet  # type: ignore[method-assign]


def _no_packet_descriptions(connection: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient) -> None:
    """Skip the description of each packet that asyncssh makes for its log, unless it logs packets.

    Each packet sent or received, on the connection, the channel and the
    SFTP session, is named and its size spelled out before the logger finds
    that packets are logged at debug level 3 only (``asyncssh.set_debug_level``).
    """
    # asyncssh's internals named below are not its public API: where one is
    # missing (another release), the descriptions are made as before.
    if getattr(connection.logger, "_debug_level", 3) >= 3:
        return

    def nothing(*args: object, **kwargs: object) -> None:
        return None

    handler = getattr(sftp, "_handler", None)
    writer = getattr(handler, "_writer", None)
    channel = getattr(writer, "channel", None)
    for logger in (connection, channel, handler):
        if (
            logger is not None
            and hasattr(logger, "log_sent_packet")
            and hasattr(logger, "log_received_packet")
        ):
            logger.log_sent_packet = nothing  # type: ignore[method-assign]
            logger.log_received_packet = nothing  # type: ignore[method-assign]
