"""The admin API's view of how endpoints are hosted (`http/admin/hosting.py`): a deployment's
progress while UpdateEndpoint shifts traffic, a shadow variant's own traffic beside the
production one, and a serverless variant's warm or cold state.

The rendering of the values is tested directly on real `DeploymentProgress` and snapshot
values; the rest against a real server (the process backend, the echo container) driven by
boto3, read through /api/endpoints and /api/containers as the dashboard reads them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from polyhost.deploy.progress import DeploymentProgress
from polyhost.http.admin.api import deployment_json, with_hosting
from polyhost.http.admin.hosting import (
    EndpointHosting,
    HostingSnapshot,
    ServerlessState,
    VariantHosting,
    VariantTraffic,
)
from tests.deploy.test_serverless import deploy_serverless
from tests.deploy.test_serverless import invoke as invoke_serverless
from tests.http.admin.test_api import api
from tests.router.test_shadow_variants import _deploy_with_shadow, _invoke
from tests.support.endpoints import create_config, create_model, echo_container, wait_status
from tests.support.server import PolyhostProcess, ServerFactory
from tests.support.waiting import eventually

IDLE_S = 1.5


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    # Short serverless idle time, so a warm variant goes cold within the test.
    return start_server("--serverless-idle-s", str(IDLE_S))


# -- the rendering, on real values --------------------------------------------------------


def test_a_canary_bake_renders_with_its_fleets_and_time_left() -> None:
    progress = DeploymentProgress(
        endpoint_name="shop",
        policy="CANARY",
        phase="Baking",
        from_config="shop-v1",
        to_config="shop-v2",
        new_instances=1,
        wanted_instances=4,
        old_instances=4,
        started_at=1000.0,
        phase_ends_at=1300.0,
    )
    assert deployment_json(progress, now=1120.0) == {
        "policy": "CANARY",
        "phase": "Baking",
        "from_config": "shop-v1",
        "to_config": "shop-v2",
        "new_instances": 1,
        "wanted_instances": 4,
        "old_instances": 4,
        "started_at": 1000.0,
        "elapsed_s": 120.0,
        "phase_ends_at": 1300.0,
        "phase_remaining_s": 180.0,
        "reason": None,
    }


def test_a_rollback_renders_its_reason_and_no_time_left_past_the_end() -> None:
    progress = DeploymentProgress(
        endpoint_name="shop",
        policy="LINEAR",
        phase="RollingBack",
        from_config="shop-v1",
        to_config="shop-v2",
        new_instances=0,
        wanted_instances=2,
        old_instances=2,
        started_at=1000.0,
        phase_ends_at=1010.0,
        reason="Alarm shop-5xx is in ALARM.",
    )
    rendered = deployment_json(progress, now=1500.0)
    assert rendered["phase"] == "RollingBack" and rendered["policy"] == "LINEAR"
    assert rendered["reason"] == "Alarm shop-5xx is in ALARM."
    assert rendered["phase_remaining_s"] == 0.0  # never negative
    starting = DeploymentProgress(
        endpoint_name="shop",
        policy="ROLLING",
        phase="Starting",
        from_config="a",
        to_config="b",
        new_instances=0,
        wanted_instances=3,
        old_instances=3,
        started_at=1000.0,
    )
    assert deployment_json(starting, now=1001.0)["phase_remaining_s"] is None


def _described(name: str, **extra: Any) -> dict[str, Any]:
    variant = {
        "name": "AllTraffic",
        "current_instance_count": 1,
        "desired_instance_count": 1,
        "status": [],
        "shadow": False,
        "serverless": None,
        "traffic": None,
    }
    return {"name": name, "variants": [{**variant, **extra}]}


def test_a_snapshot_fills_in_deployment_traffic_and_serverless_state() -> None:
    traffic = VariantTraffic(invocations=7, errors_4xx=1, errors_5xx=2, mean_latency_ms=3.5)
    cold = ServerlessState(
        memory_mb=2048,
        max_concurrency=4,
        provisioned_concurrency=None,
        warm=False,
        starting=False,
        in_flight=0,
        cold_starts=3,
        throttled=2,
        last_setup_s=None,  # cold: and no history to look in (reader None)
        containers=("model",),
    )
    warm = replace(cold, warm=True, last_setup_s=1.25)
    progress = DeploymentProgress(
        endpoint_name="moving",
        policy="ALL_AT_ONCE",
        phase="Terminating",
        from_config="v1",
        to_config="v2",
        new_instances=2,
        wanted_instances=2,
        old_instances=2,
        started_at=10.0,
        phase_ends_at=70.0,
    )
    snapshot = HostingSnapshot(
        endpoints={
            "cold": EndpointHosting(
                "cold", None, (VariantHosting("AllTraffic", False, 0, traffic, cold),)
            ),
            "warm": EndpointHosting(
                "warm", None, (VariantHosting("AllTraffic", False, 1, traffic, warm),)
            ),
            "moving": EndpointHosting("moving", progress, ()),
        },
        shadow_sent=5,
        shadow_dropped=1,
        shadow_in_flight=0,
    )
    answer = {
        "endpoints": [
            _described("cold"),
            _described("warm"),
            _described("moving"),
            _described("gone"),
        ]
    }
    with_hosting(answer, snapshot, None, now=40.0)
    assert answer["shadow_copies"] == {"sent": 5, "dropped": 1, "in_flight": 0}
    by_name = {e["name"]: e for e in answer["endpoints"]}
    assert by_name["cold"]["deployment"] is None and by_name["gone"]["deployment"] is None
    assert by_name["moving"]["deployment"]["phase"] == "Terminating"
    assert by_name["moving"]["deployment"]["phase_remaining_s"] == 30.0
    cold_variant = by_name["cold"]["variants"][0]
    assert cold_variant["traffic"] == {
        "invocations": 7,
        "errors_4xx": 1,
        "errors_5xx": 2,
        "mean_latency_ms": 3.5,
    }
    assert cold_variant["serverless"] == {
        "memory_mb": 2048,
        "max_concurrency": 4,
        "provisioned_concurrency": None,
        "state": "cold",
        "in_flight": 0,
        "cold_starts": 3,
        "last_cold_start_s": None,
        "throttled": 2,
    }
    assert by_name["warm"]["variants"][0]["serverless"]["state"] == "warm"
    assert by_name["warm"]["variants"][0]["serverless"]["last_cold_start_s"] == 1.25
    assert by_name["gone"]["variants"][0]["traffic"] is None  # not hosted: nothing live


# -- against a real server ------------------------------------------------------------------


def _endpoint(server: PolyhostProcess, name: str) -> dict[str, Any]:
    status, answer = api(server, "/api/endpoints")
    assert status == 200, answer
    (found,) = [e for e in answer["endpoints"] if e["name"] == name]
    return dict(found)


def test_a_serverless_variant_shows_cold_then_warm_then_cold(server: PolyhostProcess) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy_serverless(sagemaker, "api-sls")
    variant = _endpoint(server, "api-sls")["variants"][0]
    serverless = variant["serverless"]
    assert (serverless["memory_mb"], serverless["max_concurrency"]) == (2048, 2)
    assert serverless["state"] == "cold" and serverless["cold_starts"] == 0
    assert serverless["last_cold_start_s"] is None

    assert b"hello" in invoke_serverless(runtime, "api-sls")
    warm = _endpoint(server, "api-sls")["variants"][0]["serverless"]
    assert warm["state"] == "warm" and warm["cold_starts"] == 1
    assert 0 < warm["last_cold_start_s"] < 60
    assert _endpoint(server, "api-sls")["variants"][0]["traffic"]["invocations"] == 1

    def cold() -> dict[str, Any] | None:
        found = _endpoint(server, "api-sls")["variants"][0]["serverless"]
        return found if found["state"] == "cold" else None

    after = eventually(cold, "the idle variant to be stopped", timeout=IDLE_S + 20)
    assert after["cold_starts"] == 1 and after["in_flight"] == 0
    # The stopped container's cold start is still known (seen while it was warm).
    assert after["last_cold_start_s"] == warm["last_cold_start_s"]
    sagemaker.delete_endpoint(EndpointName="api-sls")


def test_a_shadow_variant_shows_beside_production_with_its_own_traffic(
    server: PolyhostProcess,
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    described = _deploy_with_shadow(
        sagemaker, "api-shadowed", echo_container(None, ECHO_NAME="shadow")
    )
    assert described["EndpointStatus"] == "InService"
    for index in range(5):
        assert _invoke(runtime, "api-shadowed", f"r{index}".encode())[1] == "prod"

    def both() -> dict[str, dict[str, Any]] | None:
        variants = {v["name"]: v for v in _endpoint(server, "api-shadowed")["variants"]}
        counts = {name: (v["traffic"] or {}).get("invocations") for name, v in variants.items()}
        return variants if counts == {"prod": 5, "shadow": 5} else None

    variants = eventually(both, "the shadow to count a copy of each request")
    prod, shadow = variants["prod"], variants["shadow"]
    assert (prod["shadow"], shadow["shadow"]) == (False, True)
    assert shadow["current_instance_count"] == 1 and shadow["serverless"] is None
    assert shadow["traffic"]["errors_4xx"] == shadow["traffic"]["errors_5xx"] == 0
    assert shadow["traffic"]["mean_latency_ms"] > 0
    status, answer = api(server, "/api/endpoints")
    copies = answer["shadow_copies"]
    assert copies["sent"] >= 5 and copies["dropped"] == 0
    status, containers = api(server, "/api/containers")
    assert status == 200
    rows = {r["variant"]: r for r in containers["containers"] if r["endpoint"] == "api-shadowed"}
    assert (rows["prod"]["shadow"], rows["shadow"]["shadow"]) == (False, True)
    sagemaker.delete_endpoint(EndpointName="api-shadowed")


def test_a_canary_update_shows_its_progress(server: PolyhostProcess) -> None:
    sagemaker = server.sagemaker()
    for color in ("blue", "green"):
        create_model(sagemaker, f"api-canary-{color}", [echo_container(None, ECHO_NAME=color)])
        create_config(
            sagemaker, f"api-canary-{color}", [("AllTraffic", f"api-canary-{color}", 2, 1.0)]
        )
    sagemaker.create_endpoint(EndpointName="api-canary", EndpointConfigName="api-canary-blue")
    assert wait_status(sagemaker, "api-canary")["EndpointStatus"] == "InService"
    assert _endpoint(server, "api-canary")["deployment"] is None
    sagemaker.update_endpoint(
        EndpointName="api-canary",
        EndpointConfigName="api-canary-green",
        DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 6,
                    "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                },
                "TerminationWaitInSeconds": 1,
            }
        },
    )
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        endpoint = _endpoint(server, "api-canary")
        if endpoint["deployment"] is not None:
            seen.append(endpoint["deployment"])
        if endpoint["status"] != "Updating":
            break
        time.sleep(0.1)
    assert wait_status(sagemaker, "api-canary")["EndpointStatus"] == "InService"
    assert _endpoint(server, "api-canary")["deployment"] is None  # dropped once it ended
    sagemaker.delete_endpoint(EndpointName="api-canary")
    assert seen, "no deployment progress was shown while the canary ran"
    baking = [d for d in seen if d["phase"] == "Baking"]
    assert baking, [d["phase"] for d in seen]
    bake = baking[0]
    assert bake["policy"] == "CANARY"
    assert (bake["from_config"], bake["to_config"]) == ("api-canary-blue", "api-canary-green")
    assert (bake["new_instances"], bake["wanted_instances"], bake["old_instances"]) == (1, 2, 2)
    assert bake["phase_ends_at"] is not None and 0 <= bake["phase_remaining_s"] <= 6
    assert bake["reason"] is None
