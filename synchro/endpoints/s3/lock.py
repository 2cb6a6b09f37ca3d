"""One run at a time on an s3:// replica: a lock object beside the prefix.

The lock is the object ``prefix.synchro/lock``, created with a conditional
write (``If-None-Match: *``: the server refuses it if the object exists,
so two runs never both create it; SeaweedFS, MinIO and AWS honour it). It
names its holder (host, process, a token) and the time it was last
refreshed; the holder rewrites it every :data:`REFRESH_SECONDS` while it
runs (``If-Match`` its own ETag). A run that finds a lock not refreshed for
:data:`STALE_SECONDS` takes it for a dead run's (at once if its holder was
a process of this machine that is gone): it removes it (``If-Match``
the ETag it read, so that a lock refreshed meanwhile is not removed) and
creates its own. A dead holder thus blocks the replica for at most a
quarter of an hour.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING

import botocore.exceptions

from ...errors import ConfigError, ReplicaLocked
from .connect import S3Location
from .failures import UNREACHABLE, code_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover - types only

REFRESH_SECONDS = 60.0
STALE_SECONDS = 15 * 60.0


def lock_key(location: S3Location) -> str:
    return f"{location.prefix}.synchro/lock"


class S3Lock:
    """The run lock of one s3:// replica, as a context manager (raises ReplicaLocked)."""

    def __init__(
        self,
        s3: S3Client,
        location: S3Location,
        say: Callable[[str], None] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        refresh_seconds: float | None = None,
        stale_seconds: float | None = None,
    ) -> None:
        self.s3 = s3
        self.location = location
        self.key = lock_key(location)
        self.say = say
        self.clock = clock
        self.refresh_seconds = REFRESH_SECONDS if refresh_seconds is None else refresh_seconds
        self.stale_seconds = STALE_SECONDS if stale_seconds is None else stale_seconds
        self.token = uuid.uuid4().hex
        self.etag = ""
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def _body(self) -> bytes:
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": self.token,
            "refreshed": self.clock(),
        }
        return json.dumps(holder).encode()

    def _fail(self, error: Exception) -> ConfigError:
        if isinstance(error, botocore.exceptions.ClientError):
            return ConfigError(f"{self.location}: cannot create the lock object {self.key}: {code_of(error)}")
        return ConfigError(f"{self.location}: cannot create the lock object {self.key}: {error}")

    def _create(self) -> bool:
        """Create the lock object; False if it exists."""
        try:
            answer = self.s3.put_object(
                Bucket=self.location.bucket, Key=self.key, Body=self._body(), IfNoneMatch="*"
            )
        except botocore.exceptions.ClientError as error:
            if code_of(error) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise self._fail(error) from None
        except (botocore.exceptions.BotoCoreError, *UNREACHABLE) as error:
            raise self._fail(error) from None
        self.etag = answer["ETag"]
        return True

    def _stale_holder(self) -> str | None:
        """The ETag of the existing lock if its holder is dead (not refreshed for long); None if alive."""
        try:
            got = self.s3.get_object(Bucket=self.location.bucket, Key=self.key)
            body = got["Body"].read()
        except botocore.exceptions.ClientError as error:
            if code_of(error) in ("NoSuchKey", "404"):
                return ""  # released meanwhile: try again
            raise self._fail(error) from None
        except (botocore.exceptions.BotoCoreError, *UNREACHABLE) as error:
            raise self._fail(error) from None
        try:
            holder = json.loads(body)
            refreshed = float(holder["refreshed"])
        except (ValueError, TypeError, KeyError):
            # Not a lock of ours (or torn): its upload time tells its age.
            holder, refreshed = {}, got["LastModified"].timestamp()
        if self.clock() - refreshed >= self.stale_seconds or _dead_here(holder):
            return str(got["ETag"])
        return None

    def holder_alive(self) -> bool:
        """Whether a live run holds the lock now (read only: for the readers of a replica)."""
        return self._stale_holder() is None

    def __enter__(self) -> S3Lock:
        for _ in range(3):
            if self._create():
                break
            etag = self._stale_holder()
            if etag is None:
                raise ReplicaLocked(str(self.location))
            if etag:
                try:
                    self.s3.delete_object(Bucket=self.location.bucket, Key=self.key, IfMatch=etag)
                except botocore.exceptions.ClientError as error:
                    if code_of(error) not in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                        raise self._fail(error) from None
                    continue  # refreshed or taken meanwhile: look again
                if self.say is not None:
                    self.say(f"WARNING the lock of {self.location} was a dead run's: taken over")
        else:
            raise ReplicaLocked(str(self.location))
        self._refresher = threading.Thread(target=self._keep_fresh, name="synchro-s3-lock", daemon=True)
        self._refresher.start()
        return self

    def refresh(self) -> bool:
        """Rewrite the lock with the time now, if it is still ours; False if it is not (or unreachable)."""
        try:
            answer = self.s3.put_object(
                Bucket=self.location.bucket, Key=self.key, Body=self._body(), IfMatch=self.etag
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            # Unreachable now: the run's own requests fail and say so; the
            # next refresh tries again.
            return False
        self.etag = answer["ETag"]
        return True

    def _keep_fresh(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
        # Unreachable or taken over: it goes stale, and the next run takes it.
        with suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            self.s3.delete_object(Bucket=self.location.bucket, Key=self.key, IfMatch=self.etag)


def _dead_here(holder: dict[str, object]) -> bool:
    """Whether the lock's holder was a process of this machine that is no longer running.

    A run that crashed (or lost the server before it could release the
    lock) is known dead at once by the next run on its machine; a holder on
    another machine is dead once its lock goes stale.
    """
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # running, as another user
    return False
