"""SigV4 verification: recompute the signature a request should carry and compare.

The client (botocore, the AWS CLI, any SDK) signs a canonical form of the request with a key
derived from its secret; the server rebuilds the same canonical form from what it received,
signs it with the principal's secret and compares the two signatures in constant time. The
canonical form is AWS's ("Create a signed AWS API request"), the path part through botocore's
own `normalize_url_path`; the tests check it against botocore's `SigV4Auth.canonical_request`
and verify requests signed by botocore itself.

What is checked, in order, and what AWS answers (`errors.Refusal`):

1. an `Authorization` header is present (else MISSING_AUTHENTICATION), well formed, names
   AWS4-HMAC-SHA256, a 5-part Credential, SignedHeaders and a Signature, and the request has an
   `X-Amz-Date` or `Date` header (else INCOMPLETE_SIGNATURE);
2. `host` and the date header are signed, every signed header is present, and every `x-amz-*`
   and `x-amzn-sagemaker-*` header present is signed (else INCOMPLETE_SIGNATURE): those headers
   carry what the policies decide on (the target container, say), so a replay must not be able
   to add or change one;
3. the credential scope names this server's region, a service the route accepts and the
   request's date (else INVALID_SIGNATURE);
4. the date is within 15 minutes of the server's clock, either way (else INVALID_SIGNATURE,
   "Signature expired: ..." / "Signature not yet current: ...");
5. the access key is known (else UNRECOGNIZED_CLIENT), and `X-Amz-Security-Token` is present
   and equal exactly when the principal has a session token (else UNRECOGNIZED_CLIENT);
6. `x-amz-content-sha256`, when sent, is the body's hash (`UNSIGNED-PAYLOAD` is refused: the
   SageMaker runtime signs its payload), and the signature matches (else INVALID_SIGNATURE,
   with one message whatever differed).

Presigned (query-string) requests are not accepted.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from botocore.utils import normalize_url_path

from polyhost.auth.errors import (
    MISSING_TOKEN_MESSAGE,
    SIGNATURE_MISMATCH_MESSAGE,
    UNRECOGNIZED_MESSAGE,
    Refusal,
    SignatureRefused,
)
from polyhost.auth.principals import Principal

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
MAX_SKEW_S = 15 * 60
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# Headers that must be signed when present: they carry what policies and routing decide on.
MUST_SIGN_PREFIXES = ("x-amz-", "x-amzn-sagemaker-")
# AWS lets a client add the session token after signing; it is checked for equality anyway.
MAY_BE_UNSIGNED = frozenset({"x-amz-security-token"})

Header = tuple[str | bytes, str | bytes]
Lookup = Callable[[str], Principal | None]

_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
_SIGNING_KEYS_MAX = 1024
# Bound of each memo keyed on what a caller sends (parsed headers, paths): a caller varying
# them only makes the memo start over.
_MEMO_MAX = 256
# Header names as received -> lowercased text; the names a client sends repeat.
_HEADER_NAMES: dict[bytes, str] = {}
_HEADER_NAMES_MAX = 1024
# Set (to anything) to verify every signature in Python only.
NO_EXTENSIONS_ENV = "POLYHOST_NO_EXTENSIONS"
# A memo entry of the compiled path, keyed by the raw Authorization value up to its last comma:
# (signed names, them joined with ";", scope date, credential scope, the signing key's HMAC
# states, session token, signing service, the Verified to return). See _sigv4_fast.c.
FastEntry = tuple[tuple[bytes, ...], bytes, bytes, bytes, bytes, bytes | None, str, "Verified"]


FastVerify = Callable[
    [
        dict[bytes, FastEntry],
        frozenset[str],
        float | None,
        float,
        str,
        Sequence[Header],
        bytes,
        str | bytes,
        bytes | None,
        str | None,
    ],
    "Verified | None",
]
# What `SigV4Verifier.acceptor` returns: (headers, raw path, raw query, body) -> the result when
# the compiled path accepts the request, else None (then call `verify`).
Acceptor = Callable[[Sequence[tuple[bytes, bytes]], bytes, bytes, bytes], "Verified | None"]

_compiled_verify: FastVerify | None
_compiled_signing_states: Callable[[bytes], bytes] | None
try:  # built from _sigv4_fast.c when a C compiler and OpenSSL's headers were there
    from polyhost.auth import _sigv4_fast

    _compiled_verify = _sigv4_fast.verify
    _compiled_signing_states = _sigv4_fast.signing_states
    _COMPILED_MAX_INLINE_BODY = _sigv4_fast.MAX_INLINE_BODY
except ImportError:  # pragma: no cover - depends on how polyhost was installed
    _compiled_verify = _compiled_signing_states = None
    _COMPILED_MAX_INLINE_BODY = 0


def compiled_verifier_available() -> bool:
    """Whether the compiled accepting path is built and not switched off."""
    return _compiled_verify is not None and not os.environ.get(NO_EXTENSIONS_ENV)


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature verified: who signed it and for what scope."""

    principal: Principal
    access_key_id: str
    region: str
    service: str
    signed_headers: frozenset[str]


@dataclass(slots=True)
class _Authorization:
    """An Authorization header's parameters but the signature: what a client's headers share
    from one request to the next (the signature changes with every date and body)."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signed_set: frozenset[str]
    scope: str  # the credential scope, as the string to sign names it
    # What a verified request with these parameters returns (the same for every one of them,
    # as long as the access key names the same principal).
    verified: Verified | None = None


class _SigningHmac:
    """HMAC-SHA256 under one derived signing key, its two padded key blocks hashed once.

    HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)) (RFC 2104); the states after the padded
    blocks depend on the key only, so each signature costs the hashing of the message and one
    more block instead of four. The key is 32 bytes, within SHA-256's 64-byte block.
    """

    __slots__ = ("_inner", "_outer", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _refuse(reason: Refusal, message: str, detail: str = "") -> SignatureRefused:
    return SignatureRefused(reason, message, detail=detail)


def _mismatch(detail: str) -> SignatureRefused:
    return SignatureRefused(Refusal.INVALID_SIGNATURE, SIGNATURE_MISMATCH_MESSAGE, detail=detail)


def _text(value: str | bytes) -> str:
    # Header bytes are latin-1 on the wire (http.client encodes them so), which keeps every
    # byte a character and round-trips what the client hashed.
    return value.decode("latin-1") if isinstance(value, bytes) else value


def header_map(headers: Iterable[Header]) -> dict[str, list[str]]:
    """Lowercased name -> values in the order received (duplicates kept)."""
    out: dict[str, list[str]] = {}
    names = _HEADER_NAMES
    for name, value in headers:
        # This runs for every header of every signed request: names as received (bytes) are
        # decoded once, then looked up; `_text` is inlined.
        if type(name) is bytes:
            key = names.get(name)
            if key is None:
                if len(names) >= _HEADER_NAMES_MAX:
                    names.clear()
                key = names[name] = name.decode("latin-1").lower()
        else:
            key = _text(name).lower()
        text = value.decode("latin-1") if type(value) is bytes else _text(value)
        if key in out:
            out[key].append(text)
        else:
            out[key] = [text]
    return out


def canonical_uri(path: str) -> str:
    """The path as SigV4 signs it for every service but S3: dot segments and repeated slashes
    removed, then percent-encoded once more (botocore's `_normalize_url_path`)."""
    return quote(normalize_url_path(path), safe="/~")


def canonical_query(query: str) -> str:
    """Each name and value decoded then encoded with RFC 3986's unreserved set, sorted by name
    then value (what botocore produces for the query strings it sends)."""
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def canonical_header_value(values: list[str]) -> str:
    """Trimmed, inner runs of spaces collapsed, repeated headers joined with commas."""
    return ",".join(" ".join(value.split()) for value in values)


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: dict[str, list[str]],
    signed_headers: tuple[str, ...],
    payload_hash: str,
) -> str:
    return _canonical_request(
        method, canonical_uri(path), query, headers, signed_headers, payload_hash
    )


def _canonical_request(
    method: str,
    uri: str,
    query: str,
    headers: dict[str, list[str]],
    signed_headers: tuple[str, ...],
    payload_hash: str,
) -> str:
    """The canonical request of a path already in canonical form (`canonical_uri`)."""
    lines = []
    for name in signed_headers:
        values = headers[name]
        if len(values) == 1:
            lines.append(f"{name}:{' '.join(values[0].split())}\n")
        else:
            lines.append(f"{name}:{canonical_header_value(values)}\n")
    return "\n".join(
        (
            method.upper(),
            uri,
            canonical_query(query) if query else "",
            "".join(lines),
            ";".join(signed_headers),
            payload_hash,
        )
    )


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    key = hmac.digest(key, region.encode(), "sha256")
    key = hmac.digest(key, service.encode(), "sha256")
    return hmac.digest(key, TERMINATOR.encode(), "sha256")


def _iso_basic(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


class SigV4Verifier:
    """Verifies requests for one region against the principals `lookup` knows.

    `clock` returns epoch seconds (injectable for tests). One verifier per principals file: a
    reload builds a new one, which also drops what it memoised.

    Every request is verified in full: nothing is remembered per signature, so a replayed
    request costs what a freshly signed one does. What is memoised are pure functions of
    inputs that repeat from one request to the next, each in a small bounded map: the derived
    signing key per (secret, date, region, service), the parsed Authorization header without
    its signature, the last `X-Amz-Date` parsed, and the canonical form of each path.

    The compiled path (`_sigv4_fast`, when built) runs first: it accepts a request in the plain
    form an SDK sends (one value per signed header, no query, a plain path) whose Authorization
    header but for its signature was verified here before, making every check below itself and
    recomputing the signature; anything else, refusals included, takes the Python path. Its
    memo returns the principal found the first time, so it is for a `lookup` whose answers
    never change, such as a `PrincipalSet`'s (a reload builds a new verifier): `compiled=True`
    says so. POLYHOST_NO_EXTENSIONS in the environment switches it off everywhere.
    """

    def __init__(
        self,
        lookup: Lookup,
        *,
        region: str,
        clock: Callable[[], float] = time.time,
        max_skew_s: float = MAX_SKEW_S,
        compiled: bool = False,
    ) -> None:
        self._lookup = lookup
        self.region = region
        self._clock = clock
        self._max_skew_s = max_skew_s
        self._keys: dict[tuple[str, str, str, str], _SigningHmac] = {}
        self._heads: dict[str, _Authorization] = {}
        self._uris: dict[str, str] = {}
        # The last X-Amz-Date parsed (valid ones only) and what it parsed to.
        self._last_date: tuple[str, tuple[str, float, str]] | None = None
        self._fast = _compiled_verify if compiled and compiled_verifier_available() else None
        self._fast_heads: dict[bytes, FastEntry] = {}

    @property
    def compiled(self) -> bool:
        """Whether this verifier tries the compiled path first."""
        return self._fast is not None

    def acceptor(self, method: str, services: frozenset[str]) -> Acceptor | None:
        """The compiled path alone for one route, with everything but the request bound.

        For the invocation path, where two Python calls around the compiled one cost more than
        it does: the caller tries this first and calls `verify` when it answers None (a
        request it does not handle, or one to refuse). None when there is no compiled path,
        and when the clock is not the system's (the compiled path then reads it itself).
        """
        fast = self._fast
        if fast is None or self._clock is not time.time:
            return None
        bound: Acceptor = functools.partial(
            fast, self._fast_heads, services, None, self._max_skew_s, method
        )
        return bound

    def verify(
        self,
        method: str,
        path: str | bytes,
        query: str | bytes,
        headers: Iterable[Header],
        *,
        services: Collection[str],
        body: bytes | None = None,
        body_sha256: str | None = None,
    ) -> Verified:
        """The principal that signed this request; raises `SignatureRefused`.

        `path` and `query` are raw, as received (still percent-encoded); `headers` are the
        received (name, value) pairs, duplicates included. Give the body, or its SHA-256 hex
        digest when it was hashed while streaming in. `services` are the signing names the route
        accepts (e.g. {"sagemaker"}; CloudWatch signs as "monitoring", Logs as "logs").
        """
        if (body is None) == (body_sha256 is None):
            raise TypeError("give exactly one of body and body_sha256")
        fast = self._fast
        if (
            fast is not None
            and type(path) is bytes
            and (type(headers) is list or type(headers) is tuple)
            and type(services) is frozenset
        ):
            if body is not None and len(body) > _COMPILED_MAX_INLINE_BODY:
                # Hashed here, where hashlib lets other threads run meanwhile; the Python path
                # below takes the digest too, should it be needed.
                body_sha256 = hashlib.sha256(body).hexdigest()
                body = None
            accepted = fast(
                self._fast_heads,
                services,
                self._clock(),
                self._max_skew_s,
                method,
                headers,
                path,
                query,
                body,
                body_sha256,
            )
            if accepted is not None:
                return accepted
        received = header_map(headers)
        auth, signature, head = self._authorization(received)
        timestamp, moment, date_header = self._request_time(received)
        self._check_signed_headers(auth, received, date_header)
        self._check_scope(auth, timestamp, services)
        self._check_clock(timestamp, moment)
        principal = self._lookup(auth.access_key_id)
        if principal is None:
            raise _refuse(Refusal.UNRECOGNIZED_CLIENT, UNRECOGNIZED_MESSAGE, "unknown access key")
        self._check_token(principal, received)
        if body is not None:
            payload_hash = hashlib.sha256(body).hexdigest()
        else:
            payload_hash = body_sha256.lower() if body_sha256 is not None else ""
        self._check_content_hash(received, payload_hash)

        path_text = path.decode("latin-1") if isinstance(path, bytes) else path
        uri = self._uris.get(path_text)
        if uri is None:
            if len(self._uris) >= _MEMO_MAX:
                self._uris.clear()
            uri = self._uris[path_text] = canonical_uri(path_text)
        canonical = _canonical_request(
            method, uri, _text(query), received, auth.signed_headers, payload_hash
        )
        signer = self._signer(principal.secret_access_key, auth.date, auth.region, auth.service)
        expected = signer.hexdigest(string_to_sign(timestamp, auth.scope, canonical).encode())
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise _mismatch("the signature does not match the request")
        verified = auth.verified
        if verified is None or verified.principal is not principal:
            verified = auth.verified = Verified(
                principal, auth.access_key_id, auth.region, auth.service, auth.signed_set
            )
        if fast is not None and head is not None:
            self._remember_for_compiled(head, auth, principal, signer, verified)
        return verified

    def _remember_for_compiled(
        self,
        head: str,
        auth: _Authorization,
        principal: Principal,
        signer: _SigningHmac,
        verified: Verified,
    ) -> None:
        """Let the compiled path accept the next requests signed under this header's head."""
        signing_states = _compiled_signing_states
        if signing_states is None:
            return
        try:
            key = head.encode("latin-1")  # the bytes received, which header_map decoded so
            names = tuple(name.encode("ascii") for name in auth.signed_headers)
        except UnicodeEncodeError:
            return  # not in the plain form the compiled path handles
        if key in self._fast_heads:
            return
        if len(self._fast_heads) >= _MEMO_MAX:
            self._fast_heads.clear()
        token = principal.session_token
        self._fast_heads[key] = (
            names,
            b";".join(names),
            auth.date.encode("utf-8"),
            auth.scope.encode("utf-8"),
            signing_states(signer.key),
            None if token is None else token.encode("utf-8"),
            auth.service,
            verified,
        )

    # -- the checks, in order ---------------------------------------------------------------
    def _authorization(
        self, received: dict[str, list[str]]
    ) -> tuple[_Authorization, str, str | None]:
        """The Authorization header's parameters, its signature, and the header's part before
        its trailing signature when it has that form (else None); raises SignatureRefused.

        A client sends the same header but for its signature from one request to the next, so
        the parameters before a trailing `, Signature=...` (where every SDK puts it) are parsed
        once: a header whose part before its last comma was parsed before, and whose last part
        is a non-empty Signature, parses exactly as that part did plus this signature (the full
        parse splits on commas, and a Signature found earlier would have been refused as a
        repeat). Anything else takes the full parse.
        """
        values = received.get("authorization")
        if values is not None and len(values) == 1:
            head, comma, last = values[0].rpartition(",")
            if comma:
                known = self._heads.get(head)
                if known is not None:
                    piece = last.strip()
                    if piece.startswith("Signature="):
                        signature = piece[10:].strip()
                        if signature:
                            return known, signature, head
        auth, signature, trailing = _parse_authorization(values)
        if not trailing:
            return auth, signature, None
        if len(self._heads) >= _MEMO_MAX:
            self._heads.clear()
        head = values[0].rpartition(",")[0]  # type: ignore[index]
        self._heads[head] = auth
        return auth, signature, head

    def _request_time(self, received: dict[str, list[str]]) -> tuple[str, float, str]:
        """(ISO basic timestamp, epoch seconds, the header it came from)."""
        amz = received.get("x-amz-date")
        if amz is not None and len(amz) == 1:
            last = self._last_date
            if last is not None and amz[0] == last[0]:  # requests of one second share it
                return last[1]
            parsed = self._parse_time(received)
            self._last_date = (amz[0], parsed)
            return parsed
        return self._parse_time(received)

    @staticmethod
    def _parse_time(received: dict[str, list[str]]) -> tuple[str, float, str]:
        amz = received.get("x-amz-date")
        if amz and len(amz) > 1:
            raise _refuse(
                Refusal.INCOMPLETE_SIGNATURE, "The request has more than one X-Amz-Date header."
            )
        if amz:
            match = _AMZ_DATE.fullmatch(amz[0].strip())
            moment = _moment(match)
            if match is None or moment is None:
                shown = amz[0][:40]
                raise _refuse(
                    Refusal.INCOMPLETE_SIGNATURE,
                    f"Date must be in ISO-8601 'basic format'. Got '{shown}'.",
                )
            return match.group(0), moment, "x-amz-date"
        date = received.get("date")
        if date and len(date) == 1:
            try:
                parsed = parsedate_to_datetime(date[0])
            except (TypeError, ValueError):
                parsed = None
            if parsed is not None:
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                epoch = parsed.timestamp()
                return _iso_basic(epoch), epoch, "date"
        raise _refuse(
            Refusal.INCOMPLETE_SIGNATURE,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )

    @staticmethod
    def _check_signed_headers(
        auth: _Authorization, received: dict[str, list[str]], date_header: str
    ) -> None:
        signed = auth.signed_set
        if "host" not in signed:
            raise _refuse(
                Refusal.INCOMPLETE_SIGNATURE,
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            )
        if date_header not in signed:
            spelt = "X-Amz-Date" if date_header == "x-amz-date" else "Date"
            raise _refuse(
                Refusal.INCOMPLETE_SIGNATURE,
                f"'{spelt}' must be a 'SignedHeader' in the AWS Authorization.",
            )
        for name in auth.signed_headers:  # in order: the first one missing is named
            if name not in received:
                raise _refuse(
                    Refusal.INCOMPLETE_SIGNATURE,
                    f"'{name}' is named as a SignedHeader, but it does not exist in the HTTP "
                    "request.",
                )
        for name in received:
            if (
                name.startswith(MUST_SIGN_PREFIXES)
                and name not in MAY_BE_UNSIGNED
                and name not in signed
            ):
                raise _refuse(
                    Refusal.INCOMPLETE_SIGNATURE,
                    f"'{name}' must be a 'SignedHeader' in the AWS Authorization.",
                )

    def _check_scope(self, auth: _Authorization, timestamp: str, services: Collection[str]) -> None:
        if auth.terminator != TERMINATOR:
            raise _refuse(
                Refusal.INVALID_SIGNATURE,
                f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
                f"not '{auth.terminator[:40]}'.",
            )
        if auth.date != timestamp[:8]:
            raise _refuse(
                Refusal.INVALID_SIGNATURE,
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                f"from HTTP: '{auth.date[:40]}' != '{timestamp[:8]}', from '{timestamp}'.",
            )
        if auth.region != self.region:
            raise _refuse(
                Refusal.INVALID_SIGNATURE,
                f"Credential should be scoped to a valid region, not '{auth.region[:40]}'.",
            )
        if auth.service not in services:
            expected = sorted(services)[0] if services else ""
            raise _refuse(
                Refusal.INVALID_SIGNATURE,
                f"Credential should be scoped to correct service: '{expected}'.",
            )

    def _check_clock(self, timestamp: str, moment: float) -> None:
        now = self._clock()
        skew = self._max_skew_s
        if moment < now - skew:
            raise _refuse(
                Refusal.INVALID_SIGNATURE,
                f"Signature expired: {timestamp} is now earlier than {_iso_basic(now - skew)} "
                f"({_iso_basic(now)} - {skew / 60:g} min.)",
            )
        if moment > now + skew:
            raise _refuse(
                Refusal.INVALID_SIGNATURE,
                f"Signature not yet current: {timestamp} is still later than "
                f"{_iso_basic(now + skew)} ({_iso_basic(now)} + {skew / 60:g} min.)",
            )

    @staticmethod
    def _check_token(principal: Principal, received: dict[str, list[str]]) -> None:
        tokens = received.get("x-amz-security-token")
        expected = principal.session_token
        if expected is None:
            if tokens:
                raise _refuse(
                    Refusal.UNRECOGNIZED_CLIENT,
                    UNRECOGNIZED_MESSAGE,
                    "a session token was sent for a principal that has none",
                )
            return
        if not tokens or len(tokens) != 1:
            raise _refuse(
                Refusal.UNRECOGNIZED_CLIENT, UNRECOGNIZED_MESSAGE, "session token missing"
            )
        if not hmac.compare_digest(tokens[0].encode("utf-8"), expected.encode("utf-8")):
            raise _refuse(
                Refusal.UNRECOGNIZED_CLIENT, UNRECOGNIZED_MESSAGE, "session token differs"
            )

    @staticmethod
    def _check_content_hash(received: dict[str, list[str]], payload_hash: str) -> None:
        sent = received.get("x-amz-content-sha256")
        if sent is None:
            return
        if len(sent) != 1 or sent[0].strip() == UNSIGNED_PAYLOAD:
            raise _mismatch("x-amz-content-sha256 is repeated or UNSIGNED-PAYLOAD")
        if not hmac.compare_digest(sent[0].strip().lower().encode(), payload_hash.encode()):
            raise _mismatch("x-amz-content-sha256 is not the hash of the body")

    def _signer(self, secret: str, date: str, region: str, service: str) -> _SigningHmac:
        memo = (secret, date, region, service)
        signer = self._keys.get(memo)
        if signer is None:
            if len(self._keys) >= _SIGNING_KEYS_MAX:
                self._keys.clear()
            signer = self._keys[memo] = _SigningHmac(signing_key(secret, date, region, service))
        return signer


def _parse_authorization(values: list[str] | None) -> tuple[_Authorization, str, bool]:
    """The full parse of the Authorization header's `values`: its parameters, its signature,
    and whether the signature is its last part (the form the verifier memoises)."""
    if not values:
        raise _refuse(Refusal.MISSING_AUTHENTICATION, MISSING_TOKEN_MESSAGE)
    if len(values) > 1:
        raise _refuse(
            Refusal.INCOMPLETE_SIGNATURE, "The request has more than one Authorization header."
        )
    algorithm, _, rest = values[0].strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _refuse(
            Refusal.INCOMPLETE_SIGNATURE,
            f"Authorization header requires the {ALGORITHM} algorithm.",
        )
    params: dict[str, str] = {}
    last = ""
    for piece in rest.split(","):
        piece = piece.strip()
        last = piece
        if not piece:
            continue
        name, equals, value = piece.partition("=")
        if not equals:
            shown = piece if len(piece) <= 80 else piece[:77] + "..."
            raise _refuse(
                Refusal.INCOMPLETE_SIGNATURE,
                f"'{shown}' not a valid key=value pair (missing equal-sign) in "
                "Authorization header.",
            )
        if name in params:
            raise _refuse(Refusal.INCOMPLETE_SIGNATURE, f"Authorization header has '{name}' twice.")
        params[name] = value.strip()
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    if missing:
        raise _refuse(Refusal.INCOMPLETE_SIGNATURE, " ".join(missing))
    credential = params["Credential"]
    parts = credential.split("/")
    if len(parts) != 5:
        shown = credential if len(credential) <= 200 else credential[:197] + "..."
        raise _refuse(
            Refusal.INCOMPLETE_SIGNATURE,
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/term, got '{shown}'",
        )
    signed = tuple(sorted({name.strip().lower() for name in params["SignedHeaders"].split(";")}))
    access_key_id, date, region, service, terminator = parts
    auth = _Authorization(
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed,
        frozenset(signed),
        f"{date}/{region}/{service}/{TERMINATOR}",
    )
    trailing = "," in rest and last.startswith("Signature=")
    return auth, params["Signature"], trailing


def _moment(match: re.Match[str] | None) -> float | None:
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in match.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()
    except ValueError:
        return None
