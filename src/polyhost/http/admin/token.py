"""The admin listener's bearer token: read once from `--admin-token-file`, checked per request.

The admin port serves every container's numbers and the control plane's view of every
endpoint, so off loopback it must not be open to anyone who can reach the port. A bearer token
(what Prometheus' `authorization` scrape option and curl's `-H` send without extra tooling) is
enough for that one operator-facing port; the main port keeps SigV4.

With `--auth-file` the server is shared by tenants, and their containers run on this machine:
loopback is no boundary then, so the listener always wants a token. When none is given, the
server makes one (`generated_token_file`: random, mode 0600 in the state dir, kept across
restarts so scrapers keep working) and logs where it is, never what it is.

The token is a secret: it is never logged or put in an error message, and it is compared in
constant time (`hmac.compare_digest`), so the time a refusal takes says nothing about how much
of a guess was right. The file is read with a cap, and the token must be at least
`MIN_TOKEN_BYTES` of visible ASCII: a short token is guessable, and a stray space or newline
inside one is a mistake worth refusing at start rather than at the first scrape.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from polyhost.http.io import header
from polyhost.http.types import Scope

MIN_TOKEN_BYTES = 16
MAX_TOKEN_BYTES = 4096
_SCHEME = b"bearer "


class AdminTokenError(ValueError):
    """The token file cannot be used; the message says why without quoting the token."""


def load_admin_token(path: Path) -> bytes:
    """The token in `path` (surrounding whitespace dropped); raises AdminTokenError/OSError."""
    with path.open("rb") as handle:
        raw = handle.read(MAX_TOKEN_BYTES + 1)
    if len(raw) > MAX_TOKEN_BYTES:
        raise AdminTokenError(f"{path} is larger than {MAX_TOKEN_BYTES} bytes; a token is shorter")
    token = raw.strip()
    if len(token) < MIN_TOKEN_BYTES:
        raise AdminTokenError(
            f"{path} holds fewer than {MIN_TOKEN_BYTES} characters; use a longer random token "
            "(e.g. `openssl rand -hex 32`)"
        )
    if not all(0x21 <= byte <= 0x7E for byte in token):
        raise AdminTokenError(
            f"{path} holds characters a bearer token cannot carry (spaces, control characters "
            "or non-ASCII); use a random hex or base64 token"
        )
    return token


GENERATED_TOKEN_NAME = "admin-token"


def generated_token_file(state_dir: Path) -> Path:
    """The state dir's own token file, made (32 random bytes, hex, mode 0600) unless a usable
    one is there already; a file other users could read, or that holds no usable token, is
    replaced. Raises OSError when it cannot be written."""
    path = state_dir / GENERATED_TOKEN_NAME
    with contextlib.suppress(OSError, AdminTokenError):
        info = path.lstat()
        private = stat.S_IMODE(info.st_mode) & 0o077 == 0
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and private:
            load_admin_token(path)
            return path
    temporary = path.with_name(f".{GENERATED_TOKEN_NAME}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    os.replace(temporary, path)
    return path


class BearerCheck:
    """Whether a request carries the token; with no token configured, every request does."""

    def __init__(self, token: bytes | None) -> None:
        self._token = token

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def allows(self, scope: Scope) -> bool:
        if self._token is None:
            return True
        value = header(scope, b"authorization") or b""
        # The header's size is already capped by the listener (--max-header-bytes).
        if value[: len(_SCHEME)].lower() != _SCHEME:
            # Still compare, so a missing scheme costs the same as a wrong token.
            hmac.compare_digest(value, self._token)
            return False
        return hmac.compare_digest(value[len(_SCHEME) :].strip(), self._token)
