"""Reading the admin listener's JSON API (`/api/...`) from the client side.

The admin listener is not the main port: it answers on `--admin-port` (7081 by default) and,
off loopback, wants a bearer token instead of a SigV4 signature. So this is plain urllib with
an `Authorization: Bearer` header, nothing of botocore; `polyhost top` starts fast because of it.

The token comes from `--admin-token-file` or `$POLYHOST_ADMIN_TOKEN` and is never printed.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyhost.client.errors import EXIT_USAGE, CommandFailed

DEFAULT_ADMIN_URL = "http://127.0.0.1:7081"
ADMIN_URL_ENV = "POLYHOST_ADMIN_URL"
ADMIN_TOKEN_ENV = "POLYHOST_ADMIN_TOKEN"
TIMEOUT_S = 5.0
MAX_TOKEN_BYTES = 4096
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class AdminUnreachable(Exception):
    """Nothing answered at the admin URL (not running, stopped, wrong port)."""


class AdminRefused(Exception):
    """The admin listener answered with an error; the message says which."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_token(path: Path | None) -> str | None:
    """The bearer token: from the file when given, else from the environment, else None."""
    if path is None:
        return os.environ.get(ADMIN_TOKEN_ENV) or None
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_TOKEN_BYTES + 1)
    except OSError as error:
        raise CommandFailed(f"cannot read --admin-token-file: {error}", EXIT_USAGE) from None
    token = raw.strip()
    if not token or len(raw) > MAX_TOKEN_BYTES:
        raise CommandFailed(f"{path} does not hold a token", EXIT_USAGE)
    return token.decode("ascii", "replace")


@dataclass(frozen=True)
class AdminClient:
    url: str
    token: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, url: str | None, token_file: Path | None) -> AdminClient:
        url = (url or os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL).rstrip("/")
        if "://" not in url:
            url = f"http://{url}"
        return cls(url, read_token(token_file))

    def get_json(self, path: str) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                return dict(json.loads(answer.read(MAX_ANSWER_BYTES)))
        except urllib.error.HTTPError as error:
            try:
                message = str(json.loads(error.read(65536))["message"])
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {error.code}"
            raise AdminRefused(error.code, message) from None
        except (urllib.error.URLError, OSError) as error:
            raise AdminUnreachable(str(getattr(error, "reason", error))) from None
        except ValueError as error:
            raise AdminRefused(200, f"the answer is not JSON: {error}") from None
