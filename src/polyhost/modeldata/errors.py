"""The one error artifacts raise, and how a URL is shown in messages and logs.

Messages end up in an endpoint's FailureReason, read by whoever called CreateEndpoint, so they
must say what went wrong and what to fix — and never carry a secret. A model URL can hold one
(a presigned https URL's signature in its query string, or `user:password@` in its authority),
so every message and log line shows the URL through `redact_url`.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class ArtifactError(Exception):
    """Model data could not be fetched or extracted; the message is fit for FailureReason."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ArtifactMissing(ArtifactError):
    """Nothing is at the URL (no such object, file, or an HTTP 404): the caller named it wrong,
    which a multi-model endpoint answers as the caller's error, not the model's."""


def redact_url(url: str) -> str:
    """The URL without credentials, query string or fragment (where presigned secrets live)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    if parts.scheme == "s3" or not parts.hostname:
        netloc = parts.netloc.rpartition("@")[2]
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    if parts.query:
        shown += "?…"
    return shown


def quote_member(name: str, limit: int = 200) -> str:
    """A tar member name for a message: quoted, control characters escaped, length bounded."""
    text = repr(name)
    return text if len(text) <= limit else text[: limit - 4] + "…" + text[0]
