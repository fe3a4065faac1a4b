"""The dashboard's files at /ui: served from a folder read into memory, with their types and
caching headers, nothing outside the folder reachable, the admin token required (header or the
dashboard's cookie), and a page that says to run `make ui` when nothing is built.

Most tests drive the admin app (http/admin/listener.py) with a dashboard folder of their own; the
last ones check the same through a real server's admin listener."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from polyhost.http.admin.listener import AdminApp
from polyhost.http.admin.login import COOKIE
from polyhost.http.admin.token import BearerCheck
from polyhost.http.admin.ui import MAX_FILE_BYTES, UiRoute, load_assets
from polyhost.http.types import Scope
from tests.support.server import PolyhostProcess, ServerFactory

INDEX = b"<!doctype html><title>dash</title><script src='dashboard.js'></script>"
SCRIPT = b"console.log('dashboard');"


def build(folder: Path) -> Path:
    """A small dashboard folder, as scripts/build-ui.sh lays one out."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_bytes(INDEX)
    (folder / "dashboard.js").write_bytes(SCRIPT)
    (folder / "dashboard.css").write_bytes(b"body { margin: 0 }")
    (folder / "uplot.LICENSE.txt").write_bytes(b"MIT")
    return folder


class Answer:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        start = messages[0]
        self.status: int = start["status"]
        self.headers = {k.decode(): v.decode() for k, v in start["headers"]}
        self.body = b"".join(m.get("body", b"") for m in messages[1:])

    def json(self) -> Any:
        return json.loads(self.body)


async def _noop_route(scope: Scope, receive: Any, send: Any) -> int:
    raise AssertionError(f"only /ui is asked for here, not {scope['path']}")


def request(
    app: Any, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> Answer:
    """One request through an ASGI app (UiRoute or AdminApp), as the listener makes it."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 1),
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    return Answer(messages)


def admin_app(folder: Path, token: bytes | None = None) -> AdminApp:
    return AdminApp(
        _noop_route, _noop_route, BearerCheck(token), access_log_enabled=False, ui=UiRoute(folder)
    )


def test_the_page_and_its_files_are_served_with_their_types(tmp_path: Path) -> None:
    app = admin_app(build(tmp_path / "assets"))
    for path in ("/ui/", "/ui/index.html"):
        answer = request(app, path)
        assert answer.status == 200 and answer.body == INDEX
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
    expected = {
        "/ui/dashboard.js": "text/javascript; charset=utf-8",
        "/ui/dashboard.css": "text/css; charset=utf-8",
        "/ui/uplot.LICENSE.txt": "text/plain; charset=utf-8",
    }
    for path, content_type in expected.items():
        answer = request(app, path)
        assert answer.status == 200, path
        assert answer.headers["content-type"] == content_type
        assert answer.headers["cache-control"] == "no-cache"
        assert int(answer.headers["content-length"]) == len(answer.body)
    assert request(app, "/ui/dashboard.js").body == SCRIPT


def test_the_folder_url_is_where_the_page_lives(tmp_path: Path) -> None:
    answer = request(admin_app(build(tmp_path / "assets")), "/ui")
    assert answer.status == 308 and answer.headers["location"] == "/ui/"


def test_an_unchanged_file_is_revalidated_with_its_etag(tmp_path: Path) -> None:
    app = admin_app(build(tmp_path / "assets"))
    etag = request(app, "/ui/dashboard.js").headers["etag"]
    again = request(app, "/ui/dashboard.js", headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == etag
    other = request(app, "/ui/dashboard.js", headers={"If-None-Match": '"something-else"'})
    assert other.status == 200 and other.body == SCRIPT


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../admin.token",
        "/ui/..%2Fadmin.token",
        "/ui/%2e%2e/admin.token",
        "/ui//etc/passwd",
        "/ui/sub/inner.js",
        "/ui/.hidden.js",
        "/ui/secret.py",
        "/ui/linked.js",
        "/ui/index.html/",
        "/ui/nope.js",
    ],
)
def test_nothing_outside_the_built_files_is_served(tmp_path: Path, path: str) -> None:
    folder = build(tmp_path / "assets")
    (tmp_path / "admin.token").write_text("s3cret-token-value-0123456789")
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.js").write_text("inner")
    (folder / ".hidden.js").write_text("hidden")
    (folder / "secret.py").write_text("print('source')")
    os.symlink(tmp_path / "admin.token", folder / "linked.js")
    answer = request(admin_app(folder), path)
    assert answer.status == 404, path
    assert answer.json()["__type"] == "NoSuchRoute" or "No dashboard file" in answer.body.decode()
    assert b"s3cret" not in answer.body


def test_only_get_is_served(tmp_path: Path) -> None:
    answer = request(admin_app(build(tmp_path / "assets")), "/ui/", method="POST")
    assert answer.status == 405 and answer.headers["allow"] == "GET"


def test_without_a_build_the_page_says_to_run_make_ui(tmp_path: Path) -> None:
    folder = tmp_path / "missing"
    app = admin_app(folder)
    for path in ("/ui/", "/ui/dashboard.js"):
        answer = request(app, path)
        assert answer.status == 503 and "make ui" in answer.body.decode()
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
    folder.mkdir()
    (folder / "dashboard.js").write_bytes(SCRIPT)  # no index.html: still not a build
    assert request(admin_app(folder), "/ui/").status == 503


def test_a_build_made_while_serving_is_picked_up(tmp_path: Path) -> None:
    clock = [0.0]
    route = UiRoute(tmp_path / "assets", clock=lambda: clock[0])
    assert request(route, "/ui/").status == 503
    build(tmp_path / "assets")
    clock[0] += 5.0
    assert request(route, "/ui/").status == 200


def test_the_files_held_are_bounded(tmp_path: Path) -> None:
    folder = build(tmp_path / "assets")
    (folder / "huge.js").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    assets = load_assets(folder)
    assert "huge.js" not in assets and "dashboard.js" in assets


@pytest.fixture
def token() -> bytes:
    return secrets.token_hex(32).encode()


def test_a_token_is_required_when_configured(tmp_path: Path, token: bytes) -> None:
    app = admin_app(build(tmp_path / "assets"), token)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": f"{COOKIE.decode()}=x"}):
        for path in ("/ui/", "/ui/dashboard.js", "/ui/nope"):
            answer = request(app, path, headers=headers)
            assert answer.status == 401, (path, headers)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert SCRIPT not in answer.body and token not in answer.body
    # A browser is asked for the token by a page, with a note when the one it sent was wrong.
    asked = request(app, "/ui/")
    assert b'id="token"' in asked.body and b"not accepted" not in asked.body
    assert "script-src 'sha256-" in asked.headers["content-security-policy"]
    wrong = request(app, "/ui/", headers={"Cookie": f"other=1; {COOKIE.decode()}=nope"})
    assert b"not accepted" in wrong.body
    # Refused API-style calls stay JSON.
    refused = request(app, "/ui/", method="POST")
    assert refused.status == 401 and refused.json()["__type"] == "UnauthorizedException"

    by_header = request(
        app, "/ui/dashboard.js", headers={"Authorization": f"Bearer {token.decode()}"}
    )
    assert by_header.status == 200 and by_header.body == SCRIPT
    by_cookie = request(
        app, "/ui/dashboard.js", headers={"Cookie": f"a=b; {COOKIE.decode()}={token.decode()}"}
    )
    assert by_cookie.status == 200 and by_cookie.body == SCRIPT


def test_the_cookie_opens_only_the_dashboard_files(tmp_path: Path, token: bytes) -> None:
    """The API keeps requiring the header: the cookie is the page's, sent only to /ui."""
    app = AdminApp(
        _noop_route, _noop_route, BearerCheck(token), access_log_enabled=False,
        ui=UiRoute(build(tmp_path / "assets")),
    )  # fmt: skip
    for path in ("/metrics", "/api/containers"):
        answer = request(app, path, headers={"Cookie": f"{COOKIE.decode()}={token.decode()}"})
        assert answer.status == 401 and answer.json()["__type"] == "UnauthorizedException"


# -- through a real server's admin listener ------------------------------------------------------
def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, start_server: ServerFactory
) -> tuple[PolyhostProcess, str]:
    token_file = tmp_path_factory.mktemp("ui") / "admin.token"
    secret = secrets.token_hex(32)
    token_file.write_text(secret, encoding="utf-8")
    server = start_server("--admin-token-file", str(token_file), name="ui", images=False)
    return server, secret


def test_a_real_admin_listener_serves_the_dashboard_behind_its_token(
    guarded: tuple[PolyhostProcess, str],
) -> None:
    server, secret = guarded
    status, body, headers = get(server.admin_url + "/ui/")
    assert status == 401 and b'id="token"' in body
    assert headers["content-type"] == "text/html; charset=utf-8"
    # The build is part of `make test` (`make ui`).
    status, body, headers = get(server.admin_url + "/ui/", {"Authorization": f"Bearer {secret}"})
    assert status == 200 and b"<title>polyhost dashboard</title>" in body, body[:300]
    status, body, _ = get(
        server.admin_url + "/ui/uplot.min.js", {"Cookie": f"a=1; {COOKIE.decode()}={secret}"}
    )
    assert status == 200 and b"uPlot" in body
    status, body, _ = get(
        server.admin_url + "/ui/../admin.token", {"Authorization": f"Bearer {secret}"}
    )
    assert status == 404 and secret.encode() not in body
    assert secret not in server.log()


def test_the_built_dashboard_is_in_the_package() -> None:
    """`make ui` (run by `make test`) puts the page and the chart library beside ui.py."""
    from polyhost.http.admin.ui import ASSETS_DIR

    assets = load_assets(ASSETS_DIR)
    if not assets:
        pytest.fail(f"no dashboard build in {ASSETS_DIR}: run `make ui`")
    assert {"index.html", "dashboard.js", "dashboard.css", "uplot.min.js", "uplot.min.css"} <= set(
        assets
    )
    index = assets["index.html"].body.decode()
    assert 'src="uplot.min.js"' in index and "http" not in index.split("<body>")[0]
