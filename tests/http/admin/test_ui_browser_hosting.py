"""The dashboard's hosting panels in a real browser (see test_ui_browser), against a real
server: a serverless endpoint shows as Serverless with its MemorySizeInMB and MaxConcurrency,
cold until a request, warm with its cold start's duration while its container runs, and cold
again once it was stopped for being idle; a shadow endpoint shows its shadow variant marked as
such beside the production one, each with its own invocations; a CANARY UpdateEndpoint shows
in Deployments while it bakes, and leaves once done. A screenshot is kept in
build/test-artifacts/."""

from __future__ import annotations

import pytest

from tests.deploy.test_serverless import deploy_serverless
from tests.deploy.test_serverless import invoke as invoke_serverless
from tests.http.admin.test_ui_browser import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    Page,
    browser,
    offline_page,
    wait_for,
)
from tests.router.test_shadow_variants import _deploy_with_shadow, _invoke
from tests.support.endpoints import create_config, create_model, echo_container, wait_status
from tests.support.server import PolyhostProcess, ServerFactory

IDLE_S = 2.0


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    return start_server("--serverless-idle-s", str(IDLE_S), name="dash-hosting")


def test_serverless_warm_and_cold_and_a_shadow_beside_production(
    server: PolyhostProcess,
    offline_page: Page,  # noqa: F811
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy_serverless(sagemaker, "dash-sls")
    _deploy_with_shadow(sagemaker, "dash-shadowed", echo_container(None, ECHO_NAME="shadow"))
    page = offline_page.page
    page.goto(server.admin_url + "/ui")

    serverless = page.locator('#serverless tbody tr[data-endpoint="dash-sls"]')
    serverless.wait_for()
    state = serverless.locator("td.state")
    assert serverless.locator("td.kind").inner_text() == "serverless"
    assert serverless.locator("td.memory").inner_text() == "2048 MB"
    assert serverless.locator("td.max-concurrency").inner_text() == "2"
    wait_for(lambda: state.inner_text() == "cold", "the variant to show cold")
    assert serverless.locator("td.last-cold-start").inner_text() == "-"
    row = page.locator('#endpoints tbody tr[data-endpoint="dash-sls"]')
    assert "serverless cold" in row.inner_text()

    def warm() -> bool:
        # Requests keep it warm (the page polls every 3 s, longer than --serverless-idle-s).
        assert b"hello" in invoke_serverless(runtime, "dash-sls")
        return state.inner_text() == "warm"

    wait_for(warm, "the variant to show warm")
    assert serverless.locator("td.cold-starts").inner_text() == "1"
    assert serverless.locator("td.last-cold-start").inner_text().endswith(" s")

    for index in range(4):
        assert _invoke(runtime, "dash-shadowed", f"r{index}".encode())[1] == "prod"
    shadow = page.locator('#shadows tbody tr[data-endpoint="dash-shadowed"][data-variant="shadow"]')
    prod = page.locator('#shadows tbody tr[data-endpoint="dash-shadowed"][data-variant="prod"]')
    shadow.wait_for()
    assert shadow.locator("td.role").inner_text() == "shadow"
    assert prod.locator("td.role").inner_text() == "production"
    wait_for(
        lambda: (
            shadow.locator("td.invocations").inner_text() == "4"
            and prod.locator("td.invocations").inner_text() == "4"
        ),
        "both variants to count the four requests",
    )
    assert shadow.locator("td.errors-5xx").inner_text() == "0"
    assert shadow.locator("td.latency").inner_text() != "-"
    assert "0 dropped past the bounds" in page.locator("#shadow-copies").inner_text()
    container = page.locator(
        '#containers tbody tr[data-endpoint="dash-shadowed"] td.variant', has_text="shadow"
    )
    assert container.first.inner_text() == "shadow (shadow)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-hosting.png"), full_page=True)

    # No request for --serverless-idle-s: its container is stopped, the page says cold.
    wait_for(lambda: state.inner_text() == "cold", "the idle variant to show cold", timeout=30)
    assert serverless.locator("td.cold-starts").inner_text() == "1"
    # Its cold start's duration outlives the container that knew it.
    assert serverless.locator("td.last-cold-start").inner_text().endswith(" s")
    assert page.locator("#deployments-panel").is_hidden()  # no UpdateEndpoint under way
    assert offline_page.outside == [] and offline_page.errors == []


def test_a_canary_update_shows_in_deployments_while_it_bakes(
    server: PolyhostProcess,
    offline_page: Page,  # noqa: F811
) -> None:
    sagemaker = server.sagemaker()
    for color in ("blue", "green"):
        name = f"dash-canary-{color}"
        create_model(sagemaker, name, [echo_container(None, ECHO_NAME=color)])
        create_config(sagemaker, name, [("AllTraffic", name, 2, 1.0)])
    sagemaker.create_endpoint(EndpointName="dash-canary", EndpointConfigName="dash-canary-blue")
    assert wait_status(sagemaker, "dash-canary")["EndpointStatus"] == "InService"
    page = offline_page.page
    page.goto(server.admin_url + "/ui")
    page.locator('#endpoints tbody tr[data-endpoint="dash-canary"]').wait_for()
    assert page.locator("#deployments-panel").is_hidden()
    sagemaker.update_endpoint(
        EndpointName="dash-canary",
        EndpointConfigName="dash-canary-green",
        DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 8,  # longer than the page's 3 s refresh
                    "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                },
            }
        },
    )
    row = page.locator('#deployments tbody tr[data-endpoint="dash-canary"]')
    phase = row.locator("td.phase")
    wait_for(lambda: row.count() == 1 and phase.inner_text() == "Baking", "the canary's bake")
    assert row.locator("td.policy").inner_text() == "CANARY"
    assert row.locator("td.new-fleet").inner_text() == "1 of 2 taking traffic"
    assert row.locator("td.old-fleet").inner_text() == "2 taking traffic"
    assert row.locator("td.configs").inner_text() == "dash-canary-blue → dash-canary-green"
    assert " (in " in row.locator("td.phase-ends").inner_text()
    assert row.locator("td.reason").inner_text() == ""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-deployment.png"), full_page=True)
    assert wait_status(sagemaker, "dash-canary")["EndpointStatus"] == "InService"
    wait_for(lambda: page.locator("#deployments-panel").is_hidden(), "the deployment to leave")
    assert offline_page.outside == [] and offline_page.errors == []
