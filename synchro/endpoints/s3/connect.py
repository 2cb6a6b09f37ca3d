"""Reach an S3-compatible object store the way the AWS CLI would, or refuse in one line.

A replica ``s3://bucket/prefix`` is reached with the standard AWS settings
that boto3 and the AWS CLI read, and nothing of synchro's own: the endpoint
from ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for MinIO, Ceph,
SeaweedFS, B2, R2 or Wasabi; credentials from ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` or a profile of ``~/.aws/credentials`` and
``~/.aws/config`` (``AWS_PROFILE``, or the pair's ``s3_profile`` key); the
region from ``AWS_DEFAULT_REGION`` or the profile. No secret is ever read
from ``backups.ini`` or written to a log line.

The bucket must exist: synchro never creates one (a typo would otherwise
make a new, empty, billed bucket). A prefix is needed, since the objects a
run keeps for itself (its lock) live beside the mirrored prefix, never in
it. Every way the start can fail is a :class:`~synchro.errors.ConfigError`
(exit 2, nothing written) with one line, within a minute.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from urllib.parse import urlsplit

from ...errors import ConfigError

if TYPE_CHECKING:
    from botocore.session import Session  # pragma: no cover - types only
    from mypy_boto3_s3 import S3Client  # pragma: no cover - types only

CONNECT_SECONDS = 10.0  # to open a connection to the endpoint
READ_SECONDS = 60.0  # for an answer to a request already sent
ATTEMPTS = 5  # per request, with botocore's standard backoff (throttling, 5xx, timeouts)
START_ATTEMPTS = 2  # the first request, so a wrong endpoint is refused well within a minute


class S3Location(NamedTuple):
    bucket: str
    prefix: str  # without a trailing "/": the mirror is every key under f"{prefix}/"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, path: str) -> str:
        """The key of a path relative to the replica's root ("" is the root)."""
        return f"{self.prefix}/{path}" if path else f"{self.prefix}/"


def parse_s3_url(url: str) -> S3Location:
    """``s3://bucket/prefix`` → :class:`S3Location`; ConfigError if malformed."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ConfigError(f"not an s3:// URL: {url}")
    bucket = parts.netloc
    if not bucket or "@" in bucket or ":" in bucket:
        raise ConfigError(f"{url}: write s3://bucket/prefix (credentials never go in the URL)")
    if parts.query or parts.fragment:
        raise ConfigError(f"{url}: an s3:// URL has no '?' or '#' part")
    prefix = parts.path.strip("/")
    if not prefix:
        raise ConfigError(
            f"{url}: name a prefix in the bucket (s3://{bucket}/backup): the mirror lives under it, "
            "and what synchro keeps for itself beside it"
        )
    if any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ConfigError(f"{url}: the prefix may not hold empty, '.' or '..' parts")
    return S3Location(bucket, prefix)


def session(profile: str | None = None) -> Session:
    """A session from the standard AWS settings, as boto3's (ConfigError: no such profile).

    botocore's own session, which boto3's wraps: the same settings, files
    and credential chain, without importing boto3 and its transfer manager
    (s3transfer), a tenth of a second of a daily run that uses neither.
    Its clients share the service's description, loaded once (about half a
    second each time otherwise), and parse the times of a listing with the
    standard library's ISO parser instead of dateutil's, which took most of
    the time of listing 20,000 objects.
    """
    import botocore.exceptions
    import botocore.session

    made = botocore.session.Session(profile=profile)
    try:
        made.get_scoped_config()  # the profile's section: a missing one is refused here
    except botocore.exceptions.ProfileNotFound:
        raise ConfigError(f"AWS profile {profile!r} is not in ~/.aws/config or ~/.aws/credentials") from None
    made.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)
    return made


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text else _http_date(text)
    except ValueError:
        from botocore.utils import parse_timestamp

        return parse_timestamp(text)


def _http_date(text: str) -> datetime:
    # "Mon, 07 Dec 2026 03:12:30 GMT" (headers such as Last-Modified)
    from email.utils import parsedate_to_datetime

    return parsedate_to_datetime(text)


def client(
    *,
    profile: str | None = None,
    attempts: int = ATTEMPTS,
    connections: int = 32,
    using: Session | None = None,
) -> S3Client:
    """An S3 client from the standard AWS settings, with bounded timeouts and retries.

    Clients are thread-safe: one is shared by every upload in flight,
    through a pool of ``connections``. ``using``: a session of :func:`session`.
    """
    import botocore.config
    import botocore.exceptions

    config = botocore.config.Config(
        connect_timeout=CONNECT_SECONDS,
        read_timeout=READ_SECONDS,
        retries={"max_attempts": attempts, "mode": "standard"},
        # Many uploads in flight share the client's connection pool.
        max_pool_connections=connections,
        # Signature V4 for presigned requests too (the listing's, see snapshot.PageReader).
        signature_version="s3v4",
        # Uploads carry their Content-MD5 (the server checks it): no second
        # checksum computed per request, nor a chunked body to carry it.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    try:
        # botocore's clients are typed by name in boto3's stubs only: this is an S3 one.
        made = cast("S3Client", (using or session(profile)).create_client("s3", config=config))
    except botocore.exceptions.BotoCoreError as error:
        raise ConfigError(f"cannot set up the S3 client: {error}") from None
    made.meta.events.register_last("before-call.s3", _no_continue_for_small_bodies)
    return made


# Below this, a body goes with its headers in one write, without waiting for
# the server's "100 Continue" first (the Go SDK under rclone does the same).
CONTINUE_MIN_BYTES = 2 << 20


def _no_continue_for_small_bodies(params: dict[str, Any], **_: object) -> None:
    """Drop the ``Expect: 100-continue`` botocore adds to every PUT with a body, for small bodies.

    It makes each request wait a round trip for the server's go-ahead
    before sending its bytes: for a file of a few KiB, as long again as
    the upload itself. Large parts keep it (a refused one is not sent).
    """
    from botocore.utils import determine_content_length

    headers = params.get("headers", {})
    if headers.get("Expect") != "100-continue":
        return
    length = determine_content_length(params.get("body"))
    if length is not None and length < CONTINUE_MIN_BYTES:
        del headers["Expect"]


def check_bucket(location: S3Location, *, profile: str | None = None, using: Session | None = None) -> None:
    """Refuse (ConfigError, one line) unless the bucket exists and these credentials may list it."""
    import botocore.exceptions

    s3 = client(profile=profile, attempts=START_ATTEMPTS, using=using)
    endpoint = s3.meta.endpoint_url
    try:
        s3.list_objects_v2(Bucket=location.bucket, Prefix=location.key(""), MaxKeys=1)
    except botocore.exceptions.NoCredentialsError:
        raise ConfigError(
            f"{location}: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or name a profile of ~/.aws/credentials with AWS_PROFILE"
        ) from None
    except botocore.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise ConfigError(
                f"{location}: bucket {location.bucket!r} does not exist at {endpoint} "
                "(synchro never creates buckets: create it first)"
            ) from None
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "InvalidToken"):
            raise ConfigError(
                f"{location}: {endpoint} refused these credentials ({code}): check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY or the profile"
            ) from None
        raise ConfigError(f"{location}: {endpoint} answered {code or 'an error'}: {error}") from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError) as error:
        raise ConfigError(f"{location}: cannot reach {endpoint}: {error}") from None
    except botocore.exceptions.ReadTimeoutError:
        raise ConfigError(f"{location}: no answer from {endpoint} within {READ_SECONDS:g} s") from None
    except botocore.exceptions.BotoCoreError as error:
        raise ConfigError(f"{location}: cannot talk to {endpoint}: {error}") from None
