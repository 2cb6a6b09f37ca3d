"""The errors of an S3 request as the pipeline understands them: OSError with errno set.

The pipeline reports a failed entry from an :class:`OSError` and goes on
with the rest; a missing object is ``ENOENT`` (absent is fine for a
removal), a refusal ``EACCES``. An endpoint that cannot be reached at all
(after botocore's retries with backoff) is ``EHOSTUNREACH``: the replica
then fails every later request at once with the same reason, instead of
waiting out the retries of each of thousands of files.
"""

from __future__ import annotations

import errno

import botocore.exceptions

# Errors that say the endpoint itself is gone, not one request.
UNREACHABLE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
)

_BY_CODE = {
    "NoSuchKey": errno.ENOENT,
    "404": errno.ENOENT,
    "NotFound": errno.ENOENT,
    "NoSuchUpload": errno.ENOENT,
    "AccessDenied": errno.EACCES,
    "403": errno.EACCES,
    "KeyTooLongError": errno.ENAMETOOLONG,
    "EntityTooLarge": errno.EFBIG,
    "PreconditionFailed": errno.EEXIST,
    "412": errno.EEXIST,
}


def code_of(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def as_os_error(error: Exception, what: str) -> OSError:
    """``error`` (of botocore) as an OSError whose message says what failed, in one line."""
    if isinstance(error, botocore.exceptions.ClientError):
        code = code_of(error)
        message = error.response.get("Error", {}).get("Message") or code
        return OSError(_BY_CODE.get(code, errno.EIO), f"{what}: the server answered {code}: {message}")
    if isinstance(error, UNREACHABLE):
        return OSError(errno.EHOSTUNREACH, f"the S3 endpoint cannot be reached: {error}")
    return OSError(errno.EIO, f"{what}: {error}")
