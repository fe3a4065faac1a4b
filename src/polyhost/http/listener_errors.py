"""Errors of the HTTP listener itself: a request refused before any route could see it.

They are `ServiceError`s like every other answer, so `http/errors.py` puts them on the wire in
the AWS JSON shape (`{"__type", "message"}`) that botocore and curl users already read. They
live here rather than in `polyhost.errors` because only the listener raises them: the core
never learns that HTTP has request lines, header blocks or connection limits.
"""

from __future__ import annotations

from polyhost.errors import ServiceError


class MalformedRequest(ServiceError):
    """Bytes the HTTP/1.1 parser refuses (bad framing, bad chunk sizes, smuggling attempts)."""

    code = "BadRequest"
    status = 400


class RequestTimeout(ServiceError):
    """The request head or body did not arrive in the time the server waits for it."""

    code = "RequestTimeout"
    status = 408


class UriTooLong(ServiceError):
    """The request line (method, URL, version) is longer than `--max-request-line-bytes`."""

    code = "RequestURITooLong"
    status = 414


class HeadersTooLarge(ServiceError):
    """One header, the header count, or the whole request head is past its cap."""

    code = "RequestHeaderFieldsTooLarge"
    status = 431


class TooManyConnections(ServiceError):
    """The listener holds as many connections as it may; a new one is refused at once."""

    code = "ServiceUnavailable"
    status = 503

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", b"1")]
