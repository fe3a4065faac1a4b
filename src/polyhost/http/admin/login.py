"""How a browser shows the admin token to the dashboard: a cookie limited to `/ui`.

A browser cannot add `Authorization: Bearer` to a page it navigates to, so with a token
configured `/ui` answers a small page (401) that asks for the token once and keeps it in a
cookie: `Path=/ui` (it goes nowhere but the dashboard's own files), `SameSite=Strict` (no other
site can make the browser send it). The dashboard's script reads it back and sends it as the
bearer header on its `/api` calls, so the API itself keeps accepting only the header.

The check stays `BearerCheck`'s (constant time): the cookie's value is handed to it as the
header it stands for. The page holds nothing secret; its one inline script is allowed by its
hash in the page's Content-Security-Policy, and nothing else may run.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import unquote_to_bytes

from polyhost.http.io import header
from polyhost.http.types import Scope

COOKIE = b"polyhost_admin_token"
MAX_COOKIE_TOKEN_BYTES = 4096

_SCRIPT = b"""
document.getElementById("login").addEventListener("submit", function (event) {
  event.preventDefault();
  var token = document.getElementById("token").value.trim();
  var secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "polyhost_admin_token=" + encodeURIComponent(token) +
    "; Path=/ui; SameSite=Strict" + secure;
  location.replace("/ui/");
});
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT).digest())
LOGIN_CSP = (
    b"default-src 'none'; script-src 'sha256-" + _SCRIPT_HASH + b"'; "
    b"style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEAD = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>polyhost dashboard: token</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>polyhost dashboard</h1>
<p>This admin listener requires its bearer token (the content of the file given to
<code>polyhost serve --admin-token-file</code>).</p>
"""
_REFUSED = b"<p><strong>The token this browser sent was not accepted.</strong></p>\n"
_PAGE_TAIL = (
    b"""<form id="login">
<label>Token <input id="token" type="password" autocomplete="off" size="48" required></label>
<button type="submit">Open the dashboard</button>
</form>
<p>It is kept in a cookie sent only to <code>/ui</code> of this address.</p>
<script>"""
    + _SCRIPT
    + b"""</script>
</body></html>
"""
)


def login_page(refused: bool) -> bytes:
    """The token page; `refused` when the browser already sent a token that did not match."""
    return _PAGE_HEAD + (_REFUSED if refused else b"") + _PAGE_TAIL


def cookie_token(scope: Scope) -> bytes | None:
    """The token in the dashboard's cookie, percent-decoded, or None."""
    raw = header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(b";"):
        name, sep, value = part.strip().partition(b"=")
        if sep and name == COOKIE and value:
            if len(value) > 3 * MAX_COOKIE_TOKEN_BYTES:
                return None
            return unquote_to_bytes(value)
    return None


def with_cookie_token(scope: Scope) -> tuple[Scope, bool]:
    """`scope` with the cookie's token as its bearer header when it has no header of its own,
    and whether a cookie token was found."""
    if header(scope, b"authorization") is not None:
        return scope, False
    token = cookie_token(scope)
    if token is None:
        return scope, False
    headers = [*scope["headers"], (b"authorization", b"Bearer " + token)]
    return {**scope, "headers": headers}, True
