"""`GET /ui` on the admin listener: the dashboard's page and its files, from memory.

The dashboard is a static page (ui/ in the source tree, built by `make ui` into
`polyhost/http/admin/ui_assets/` with the chart library it uses) that reads the admin JSON API; this
route only hands its files out. Why from memory, and why a fixed list: the folder is read once
into a name → file table (flat, a bounded number of files of known types, none hidden or
symlinked), and a request is a lookup in that table, so no request path ever reaches the
filesystem and no `..`, encoded slash or odd byte can name a file outside it.

The folder is checked again (one stat, at most every `RECHECK_S`) so `make ui` while the server
runs is picked up; the build replaces the folder in one rename, so a half build is never read.
Without a build the route answers a page that says to run `make ui` (503, not a 500).

Caching: every answer carries an ETag and `no-cache`, so a browser revalidates (a 304 on an
unchanged file) and never runs an old script after an upgrade. The page and its scripts come
with a Content-Security-Policy that allows only this origin: no CDN, no inline script.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from polyhost.errors import NoSuchRoute
from polyhost.http.access import loggable
from polyhost.http.errors import aws_json_error
from polyhost.http.io import header, send_response
from polyhost.http.types import Receive, Scope, Send

PREFIX = "/ui"
ASSETS_DIR = Path(__file__).parent / "ui_assets"
INDEX = "index.html"
CONTENT_TYPES: Mapping[str, bytes] = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".txt": b"text/plain; charset=utf-8",
    ".json": b"application/json",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
}
# Bounds on what is held in memory: the real build is a handful of files, about 100 KB.
MAX_FILES = 64
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024
RECHECK_S = 1.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# uPlot sizes its elements through their style properties, hence 'unsafe-inline' for styles.
CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
MISSING_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>polyhost dashboard: not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The dashboard is not built</h1>
<p>This server has no dashboard files. In the polyhost source tree, run</p>
<pre>make ui</pre>
<p>(or <code>scripts/build-ui.sh</code>; it needs npm once, to install the chart library), then
reload this page. <code>make run</code> and <code>make test</code> build it too.</p>
<p>The JSON API this page reads is served meanwhile: <a href="/api/containers">/api/containers</a>,
<a href="/api/endpoints">/api/endpoints</a>.</p>
</body></html>
"""


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: bytes
    etag: bytes


def load_assets(folder: Path) -> dict[str, Asset]:
    """The servable files directly in `folder` by name; empty when it is missing or unusable.

    Skipped: subfolders, symlinks, hidden files, unknown types and oversized files; reading
    stops at `MAX_FILES` files or `MAX_TOTAL_BYTES` in all.
    """
    assets: dict[str, Asset] = {}
    total = 0
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return {}
    for entry in entries:
        if len(assets) >= MAX_FILES:
            break
        content_type = CONTENT_TYPES.get(os.path.splitext(entry.name)[1])
        if content_type is None or not _NAME.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            with open(entry.path, "rb") as handle:
                body = handle.read(MAX_FILE_BYTES + 1)
        except OSError:
            continue
        if len(body) > MAX_FILE_BYTES or total + len(body) > MAX_TOTAL_BYTES:
            continue
        total += len(body)
        digest = hashlib.sha256(body).hexdigest()[:32]
        assets[entry.name] = Asset(body, content_type, f'"{digest}"'.encode())
    return assets if INDEX in assets else {}


def _folder_key(folder: Path) -> tuple[int, int] | None:
    try:
        stat = folder.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


class UiRoute:
    """The ASGI route for `/ui` and `/ui/<file>` (GET; the admin app checks the method)."""

    def __init__(
        self, folder: Path = ASSETS_DIR, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._folder = folder
        self._clock = clock
        self._assets: dict[str, Asset] = {}
        self._key: tuple[int, int] | None = None
        self._checked = -RECHECK_S
        self._loading: asyncio.Lock | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        path: str = scope["path"]
        if path == PREFIX:
            # The page names its files relatively, so it must be read from the folder URL.
            headers = [(b"location", PREFIX.encode() + b"/"), (b"cache-control", b"no-cache")]
            await send_response(send, 308, b"", headers)
            return 308
        assets = await self._current()
        if not assets:
            headers = [
                (b"content-type", CONTENT_TYPES[".html"]),
                (b"cache-control", b"no-store"),
                *SECURITY_HEADERS,
            ]
            await send_response(send, 503, MISSING_PAGE, headers)
            return 503
        name = path[len(PREFIX) + 1 :] or INDEX
        asset = assets.get(name)
        if asset is None:
            status, headers, body = aws_json_error(
                NoSuchRoute(f"No dashboard file {loggable(path)}; the dashboard is at {PREFIX}/.")
            )
            await send_response(send, status, body, headers)
            return status
        headers = [
            (b"etag", asset.etag),
            (b"cache-control", b"no-cache"),
            *SECURITY_HEADERS,
        ]
        if header(scope, b"if-none-match") == asset.etag:
            await send_response(send, 304, b"", headers)
            return 304
        headers.append((b"content-type", asset.content_type))
        if asset.content_type == CONTENT_TYPES[".html"]:
            headers.append((b"content-security-policy", CSP))
        await send_response(send, 200, asset.body, headers)
        return 200

    async def _current(self) -> dict[str, Asset]:
        """The files, read again when the folder changed (checked at most every RECHECK_S)."""
        now = self._clock()
        if now - self._checked < RECHECK_S:
            return self._assets
        if self._loading is None:
            self._loading = asyncio.Lock()
        async with self._loading:
            if now - self._checked < RECHECK_S:
                return self._assets
            key = await asyncio.to_thread(_folder_key, self._folder)
            if key != self._key or (key is not None and not self._assets):
                self._assets = await asyncio.to_thread(load_assets, self._folder)
                self._key = key
            self._checked = self._clock()
        return self._assets
