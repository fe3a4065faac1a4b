"""HTTPS GET of model data, connecting only to addresses `HostPolicy` checked.

`http.client` is used with its connection step replaced: the host name is resolved once by the
policy, and the socket connects to one of the checked addresses — never to whatever a second
DNS lookup would answer — while TLS still verifies the certificate against the host name (SNI
and hostname check). Redirects are followed here, not by a library, so each hop is checked
again (https only, public or allowed address) and their number is bounded.

Every socket is registered with the fetch's `Cancellation`, so cancelling (or the deadline
watchdog) wakes a read blocked on it, and every blocking call has a socket timeout.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from polyhost.modeldata.fetch_control import FetchLimits
from polyhost.modeldata.hosts import HostPolicy, Resolved

CONNECT_TIMEOUT_S = 15.0  # one TCP connect or TLS handshake
READ_IDLE_S = 60.0  # a server silent this long is given up on
MAX_REDIRECTS = 5
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


class Unreachable(Exception):
    """No usable answer from `host` (DNS, refused, timed out, reset, TLS...).

    The caller shows one generic message for all of these: telling them apart would let whoever
    picks a model URL probe which ports are open on hosts the server can reach. `detail` is for
    the server's log only."""

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(detail)
        self.host = host
        self.detail = detail


class RedirectRefused(Exception):
    """A redirect polyhost will not follow; the message says which and why."""


class PinnedConnection(http.client.HTTPSConnection):
    """An HTTPS connection to `resolved.host` that only ever connects to the checked addresses."""

    def __init__(
        self,
        resolved: Resolved,
        context: ssl.SSLContext,
        limits: FetchLimits,
        watches: contextlib.ExitStack,
    ) -> None:
        super().__init__(
            resolved.host,
            resolved.port,
            timeout=limits.io_timeout(CONNECT_TIMEOUT_S),
            context=context,
        )
        self._resolved = resolved
        self._tls = context
        self._limits = limits
        self._watches = watches
        self.pinned: ssl.SSLSocket | None = None  # kept after http.client hands it to a response

    def connect(self) -> None:
        last: OSError | None = None
        for family, address in self._resolved.addresses:
            if self._limits.cancel.cancelled or self._limits.remaining() <= 0:
                break
            raw = socket.socket(family, socket.SOCK_STREAM)
            try:
                with self._limits.cancel.watch(raw):
                    raw.settimeout(self._limits.io_timeout(CONNECT_TIMEOUT_S))
                    raw.connect((str(address), self._resolved.port))
                tls = self._tls.wrap_socket(
                    raw, server_hostname=self._resolved.host, do_handshake_on_connect=False
                )
            except OSError as error:
                raw.close()
                last = error
                continue
            self._watches.enter_context(self._limits.cancel.watch(tls))
            self._watches.callback(tls.close)
            try:
                tls.settimeout(self._limits.io_timeout(CONNECT_TIMEOUT_S))
                tls.do_handshake()
                tls.settimeout(self._limits.io_timeout(READ_IDLE_S))
            except OSError as error:
                last = error
                continue
            self.sock = self.pinned = tls
            return
        raise last or TimeoutError("no time left to connect")


@dataclass
class Answer:
    response: http.client.HTTPResponse
    sock: ssl.SSLSocket  # set a timeout on it before each read
    host: str


def open_https(
    url: str,
    headers: dict[str, str],
    policy: HostPolicy,
    context: ssl.SSLContext,
    limits: FetchLimits,
    watches: contextlib.ExitStack,
) -> Answer:
    """The response to GET `url` after redirects (any status but a redirect).

    Raises HostRefused (the policy's message), RedirectRefused, Unreachable, or ValueError for a
    URL it cannot parse. Sockets stay open until `watches` is closed."""
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or 443
        if not host:
            raise ValueError("it names no host")
        resolved = _resolve(policy, host, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = PinnedConnection(resolved, context, limits, watches)
        watches.callback(connection.close)
        try:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            raise Unreachable(host, f"{type(error).__name__}: {error}") from None
        watches.callback(response.close)  # the socket really closes once its reader is closed
        assert connection.pinned is not None
        if response.status not in REDIRECT_CODES:
            return Answer(response, connection.pinned, host)
        location = response.getheader("Location") or ""
        response.close()
        if not location:
            raise RedirectRefused(f"HTTP {response.status} redirect without a Location")
        url = urljoin(url, location)
        if urlsplit(url).scheme.lower() != "https":
            raise RedirectRefused(f"HTTP {response.status} redirect to a non-https URL refused")
    raise RedirectRefused(f"more than {MAX_REDIRECTS} redirects")


def _resolve(policy: HostPolicy, host: str, port: int) -> Resolved:
    try:
        return policy.resolve(host, port)
    except (OSError, UnicodeError) as error:  # no such host: as opaque as a closed port
        raise Unreachable(host, f"resolving failed: {error}") from None
