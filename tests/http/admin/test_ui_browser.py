"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real
server, with every request that is not to the server's loopback address refused (the page must
work with no network: no CDN, no font, nothing fetched from outside).

It shows how to deploy on an empty server; once an endpoint with two containers exists it lists
the endpoint and both containers, their numbers move after invocations, the selected
container's charts and log tail fill in; with a token, the page asks for it. A screenshot is
kept in build/test-artifacts/.

The server is started through test_admin_api's launcher, which hands the admin API the
deployer's log streams (see there).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.server import PolyhostProcess

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "build" / "test-artifacts"
LOOPBACK = re.compile(r"^(http|ws)://127\.0\.0\.1:\d+/")

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (`make tools` as root does)",
        allow_module_level=True,
    )
playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing: pip install -e '.[dev]'"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@dataclass
class Page:
    page: Any
    outside: list[str]  # requests refused because they left loopback
    errors: list[str]  # uncaught script errors


@pytest.fixture
def offline_page(browser: Any) -> Iterator[Page]:
    """A page in a fresh context where only the loopback server can be reached."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    outside: list[str] = []
    errors: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if LOOPBACK.match(url):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield Page(page, outside, errors)
    context.close()


def cell(page: Any, container: str, column: str) -> str:
    text: str = page.locator(
        f'#containers tbody tr[data-endpoint="dash"][data-container="{container}"] td.{column}'
    ).inner_text()
    return text


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def legend_values(page: Any, chart: str) -> list[float]:
    """The chart's first series' values under the cursor, moved over its last minutes."""
    box = page.locator(f'.chart[data-chart="{chart}"] .u-over').bounding_box()
    value = page.locator(f'.chart[data-chart="{chart}"] .u-legend .u-series:nth-child(2) .u-value')
    values = []
    for step in range(8):
        page.mouse.move(
            box["x"] + box["width"] * (1 - step * 0.01) - 1, box["y"] + box["height"] / 2
        )
        text = value.inner_text().strip()
        values.append(float(text) if re.fullmatch(r"[0-9.]+", text) else 0.0)
    return values


def test_the_dashboard_follows_an_endpoint_live_with_no_network(
    server: PolyhostProcess, offline_page: Page
) -> None:
    page = offline_page.page
    page.goto(server.admin_url + "/ui")
    hint = page.locator("#empty-state")
    hint.wait_for(state="visible")
    assert "polyhost deploy" in hint.inner_text() and "create_endpoint" in hint.inner_text()

    # The page was opened before the endpoint existed: it must pick it up by itself.
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy(sagemaker, "dash", [echo_container("a"), echo_container("b")], mode="Direct")
    row = page.locator('#endpoints tbody tr[data-endpoint="dash"]')
    row.wait_for()
    wait_for(lambda: "InService" in row.inner_text(), "the endpoint to show InService")
    assert "AllTraffic (1)" in row.inner_text()
    assert page.locator("#empty-state").is_hidden()
    containers = page.locator('#containers tbody tr[data-endpoint="dash"]')
    wait_for(lambda: containers.count() == 2, "both containers to be listed")
    assert sorted(containers.nth(i).get_attribute("data-container") for i in range(2)) == [
        "a",
        "b",
    ]
    wait_for(lambda: cell(page, "a", "status") == "up", "container a to show up")
    wait_for(lambda: "MiB" in cell(page, "a", "memory"), "container a's memory")
    before = cell(page, "a", "rps")
    assert before in ("0.00", "-")

    for i in range(30):
        invoke(
            runtime, "dash", b"x", TargetContainerHostname="a",
            CustomAttributes=f"say=dashboard-hello-{i}",
        )  # fmt: skip
    # The metric history records every 10 s; the table polls every 3 s.
    wait_for(
        lambda: cell(page, "a", "rps") not in (before, "0.00", "-"),
        "container a's requests/s to move",
        timeout=30,
    )
    assert float(cell(page, "a", "rps")) > 0
    assert cell(page, "a", "errors") == "0.0 %"
    assert float(cell(page, "a", "p50")) > 0
    assert cell(page, "b", "rps") in ("0.00", "-")  # its idle neighbour did not move

    # Container a is selected (the first row): its log tail and charts.
    page.locator('#containers tbody tr[data-container="a"]').click()
    log = page.locator("#log-text")
    wait_for(lambda: "a: dashboard-hello-29" in log.inner_text(), "a's log tail")
    assert "AllTraffic/i-0/a" in page.locator("#log-name").inner_text()
    assert page.locator("#detail-title").inner_text() == "dash / AllTraffic / a"
    assert page.locator("#charts .chart canvas").count() == 5
    legend = page.locator('.chart[data-chart="invocations"] .u-legend')
    assert "invocations" in legend.inner_text()
    page.locator('.ranges button[data-range="24h"]').click()
    assert "active" in (
        page.locator('.ranges button[data-range="24h"]').get_attribute("class") or ""
    )
    page.locator('.ranges button[data-range="1h"]').click()
    # The invocations chart holds the requests: its legend, read under the cursor over the
    # last minutes, shows them (the chart reloads every 5 s; the history has them by now).
    wait_for(lambda: max(legend_values(page, "invocations")) > 0, "the invocations chart")
    wait_for(lambda: max(legend_values(page, "latency")) > 0, "the latency chart")

    page.mouse.move(0, 0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    assert page.locator("#connection").get_attribute("data-state") == "live"
    assert offline_page.outside == [], "the page tried to leave loopback"
    assert offline_page.errors == []


def test_the_page_asks_for_the_admin_token(tmp_path: Path, offline_page: Page) -> None:
    token = secrets.token_hex(32)
    (tmp_path / "admin.token").write_text(token, encoding="utf-8")
    guarded = PolyhostProcess(
        state_dir=tmp_path / "state",
        extra_args=["--admin-token-file", str(tmp_path / "admin.token")],
    ).start()
    try:
        page = offline_page.page
        page.goto(guarded.admin_url + "/ui/")
        page.locator("#token").fill("not-the-token-at-all")
        page.locator("#login button").click()
        page.get_by_text("was not accepted").wait_for()
        page.locator("#token").fill(token)
        page.locator("#login button").click()
        page.locator("#empty-state").wait_for(state="visible")
        # The API calls carried the token: the page is live, not refused.
        wait_for(
            lambda: page.locator("#connection").get_attribute("data-state") == "live",
            "the page to read the API with the token",
        )
        assert offline_page.outside == [] and offline_page.errors == []
    finally:
        guarded.stop()
    assert token not in guarded.log()
