"""Small PUTs without boto3's request pipeline: signed by botocore, sent by urllib3.

A first copy of 20,000 small files is 20,000 PUTs, each built and sent by
the interpreter under one GIL, on cores the server shares. Through the boto3
client a PUT costs about 1.3 ms of CPU on a 2-core machine (py-spy, cProfile:
its event hooks, the endpoint rules resolved per request, header objects,
the signing, and ``Expect: 100-continue``, a round trip of its own); most of
that goes to generality a PUT of a few KiB does not use. Here the request is
made once per object with what the client itself decided:

- the URL: the bucket's as botocore addresses it (path or virtual-host
  style, read once from a presigned URL) followed by the key quoted as
  botocore quotes it (``/`` and ``~`` kept);
- the signature: botocore's own SigV4 signer (:class:`botocore.auth.S3SigV4Auth`),
  with the session's credentials and the region the client signs with;
- the bytes: one request through urllib3 (the library botocore sends with).

About half the CPU per PUT (``benchmarks/README.md``). Only plain success is
handled here: any other outcome (an error answer, a connection refused or
timed out) sends the same PUT again through the client, with its retries and
backoff, its redirects, and its errors as the rest of the replica knows them.
An answer that says the direct request itself is wrong (a redirect or a
refusal: another region, other addressing, a policy) turns the direct path
off for the rest of the run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from .connect import CONNECT_SECONDS, READ_SECONDS

if TYPE_CHECKING:
    import urllib3
    from botocore.credentials import Credentials
    from mypy_boto3_s3 import S3Client  # pragma: no cover - types only

PROBE_KEY = "k"  # the key whose presigned URL tells the bucket's URL


def http_pool(connections: int) -> urllib3.PoolManager:
    """A urllib3 pool with the certificate settings a boto3 client would use, and no retries of its own."""
    import urllib3

    return urllib3.PoolManager(maxsize=connections, ca_certs=_ca_bundle(), retries=False)


def _ca_bundle() -> str | None:
    from botocore.httpsession import get_cert_path

    verify = os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True)
    return verify if isinstance(verify, str) else None


class DirectPut:
    """PUTs of whole objects to one bucket (see the module's docstring); thread-safe."""

    def __init__(
        self, s3: S3Client, credentials: Credentials | None, bucket: str, *, connections: int
    ) -> None:
        import urllib3
        from botocore.utils import get_environ_proxies

        self.s3, self.bucket = s3, bucket
        self.credentials = credentials
        probe = urlsplit(s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": PROBE_KEY}))
        scope = parse_qs(probe.query).get("X-Amz-Credential", [""])[0].split("/")
        # KEY/DATE/REGION/s3/aws4_request: the region the client signs with.
        self.region = scope[2] if len(scope) == 5 else ""
        path = probe.path[: -len(PROBE_KEY)] if probe.path.endswith("/" + PROBE_KEY) else ""
        self.origin = f"{probe.scheme}://{probe.netloc}"
        self.path = path  # the bucket's, "/bucket/" or "/": a key's URL is this, then the key quoted
        # Off without credentials (the client says why), an address it could not
        # read, or a proxy (which botocore would go through).
        self.usable = bool(path and self.region and credentials is not None) and not get_environ_proxies(
            self.origin
        )
        # All of a bucket's objects are on one host: one pool of connections to it.
        tls = {"ca_certs": _ca_bundle()} if probe.scheme == "https" else {}
        self.http = urllib3.connection_from_url(self.origin, maxsize=connections, retries=False, **tls)
        self.timeout = urllib3.Timeout(connect=CONNECT_SECONDS, read=READ_SECONDS)
        self.fallbacks = 0  # PUTs that went through the client (tests and benchmarks read it)

    def put(self, key: str, body: bytes, *, md5: str, metadata: dict[str, str], content_type: str) -> str:
        """PUT ``body`` under ``key``; its ETag, without quotes. ``md5``: base64, sent as Content-MD5.

        Failures are botocore's exceptions, raised by the client's request.
        """
        if self.usable:
            etag = self._direct(key, body, md5, metadata, content_type)
            if etag is not None:
                return etag
        self.fallbacks += 1
        answer = self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentMD5=md5,
            ContentType=content_type,
            Metadata=metadata,
        )
        return answer["ETag"].strip('"')

    def _direct(
        self, key: str, body: bytes, md5: str, metadata: dict[str, str], content_type: str
    ) -> str | None:
        """The ETag, or None if the client must do it (see the module's docstring)."""
        import urllib3
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.utils import percent_encode

        assert self.credentials is not None
        path = self.path + percent_encode(key, safe="/~")
        headers = {"Content-MD5": md5, "Content-Type": content_type}
        for name, value in metadata.items():
            headers[f"x-amz-meta-{name}"] = value
        request = AWSRequest("PUT", self.origin + path, headers=headers, data=body)
        S3SigV4Auth(self.credentials.get_frozen_credentials(), "s3", self.region).add_auth(request)
        try:
            answer = self.http.urlopen(
                "PUT",
                path,
                body=body,
                headers=dict(request.headers.items()),
                timeout=self.timeout,
                redirect=False,
                preload_content=True,
            )
        except urllib3.exceptions.HTTPError:
            return None  # the client tries again, with its retries and its errors
        etag = answer.headers.get("ETag")
        if answer.status == 200 and etag:
            return str(etag).strip('"')
        if 300 <= answer.status < 500:
            self.usable = False  # wrong for this bucket, not for this object: the client from now on
        return None
