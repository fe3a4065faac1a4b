"""UpdateEndpointWeightsAndCapacities end to end: a real server, real containers, boto3.

The server pings serving containers rarely (`--health-check-interval 30`), so a test may take
the ready file of a running container away for a moment (holding new instances before their
first ping) without its supervisor restarting it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from polyhost.backends.registry import ImageRegistry
from polyhost.control.seam import EndpointSpec, VariantStatus
from polyhost.errors import ValidationException
from tests.control import test_awscli as awscli
from tests.control.helpers import loose_client, make_model, unique
from tests.control.test_endpoints import Plane
from tests.support.endpoints import create_config, create_model, echo_container, wait_status
from tests.support.errors import client_error
from tests.support.server import (
    ACCOUNT,
    ECHO_IMAGE,
    REGION,
    PolyhostProcess,
    ServerFactory,
    write_image_config,
)
from tests.support.waiting import eventually

ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
ROLE = "arn:aws:iam::123456789012:role/polyhost"


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    return start_server("--health-check-interval", "30")


def _endpoint(sagemaker: Any, variants: list[tuple[str, int, float]], **environment: str) -> str:
    """An InService endpoint whose variants (name, instances, weight) each run an echo
    container answering with the variant's name."""
    name = unique("wc")
    for variant, _, _ in variants:
        create_model(sagemaker, f"{name}-{variant}", [echo_container(variant, **environment)])
    create_config(
        sagemaker,
        name,
        [(variant, f"{name}-{variant}", count, weight) for variant, count, weight in variants],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    return name


def _whoami(runtime: Any, endpoint: str, calls: int = 20) -> Counter[str]:
    """How many answers each container gave ("<variant>@<port>")."""
    return Counter(
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"x", CustomAttributes="whoami=1")[
            "Body"
        ]
        .read()
        .decode()
        for _ in range(calls)
    )


def _answers(runtime: Any, endpoint: str) -> bool:
    """Whether the endpoint answers (not while a restart is restoring it: a 503)."""
    try:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"x")
    except ClientError as error:
        if client_error(error).status != 503:
            raise
        return False
    return True


def _update(sagemaker: Any, endpoint: str, *entries: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint, DesiredWeightsAndCapacities=list(entries)
    )
    return answer


def _variants(description: dict[str, Any]) -> dict[str, tuple[float, float, int, int]]:
    """Variant → (CurrentWeight, DesiredWeight, CurrentInstanceCount, DesiredInstanceCount)."""
    return {
        v["VariantName"]: (
            v["CurrentWeight"],
            v["DesiredWeight"],
            v["CurrentInstanceCount"],
            v["DesiredInstanceCount"],
        )
        for v in description["ProductionVariants"]
    }


# -- what is refused -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_variants(sagemaker: Any) -> str:
    return _endpoint(sagemaker, [("blue", 1, 1.0), ("green", 1, 1.0)])


def test_a_missing_endpoint_is_not_found(sagemaker: Any) -> None:
    with pytest.raises(ClientError) as error:
        _update(sagemaker, "nowhere", {"VariantName": "AllTraffic", "DesiredWeight": 1.0})
    assert client_error(error) == (
        "ValidationException",
        400,
        f'Could not find endpoint "{ARN}:endpoint/nowhere".',
    )


def test_an_unknown_variant_is_refused_naming_the_known_ones(
    sagemaker: Any, two_variants: str
) -> None:
    with pytest.raises(ClientError) as error:
        _update(sagemaker, two_variants, {"VariantName": "red", "DesiredWeight": 1.0})
    assert client_error(error) == (
        "ValidationException",
        400,
        f'The variant(s) "red" not found in endpoint "{ARN}:endpoint/{two_variants}": '
        "VariantName must be one of [blue, green].",
    )


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [
                {"VariantName": "blue", "DesiredWeight": 1.0},
                {"VariantName": "blue", "DesiredWeight": 2.0},
            ],
            "1 validation error detected: VariantName 'blue' is given more than once "
            "(desiredWeightsAndCapacities.1, desiredWeightsAndCapacities.2); give each variant "
            "once",
        ),
        (
            [{"VariantName": "blue"}],
            "1 validation error detected: desiredWeightsAndCapacities.1 gives none of "
            "DesiredWeight, DesiredInstanceCount and ServerlessUpdateConfig; give at least one",
        ),
        (
            [{"VariantName": "blue", "ServerlessUpdateConfig": {}}],
            "1 validation error detected: desiredWeightsAndCapacities.1's "
            "ServerlessUpdateConfig is empty; give MaxConcurrency, ProvisionedConcurrency or both",
        ),
        (
            [{"VariantName": "blue", "DesiredInstanceCount": 0}],
            "1 validation error detected: Value '0' at "
            "'desiredWeightsAndCapacities.1.member.desiredInstanceCount' failed to satisfy "
            "constraint: Member must have value greater than or equal to 1 (a variant keeps at "
            "least one instance; DesiredWeight 0 sends it no traffic)",
        ),
        (
            [
                {
                    "VariantName": "blue",
                    "DesiredWeight": 1.0,
                    "ServerlessUpdateConfig": {"MaxConcurrency": 5},
                }
            ],
            f'The variant "blue" of endpoint "{ARN}:endpoint/ENDPOINT" is not '
            "serverless: ServerlessUpdateConfig changes a serverless variant's MaxConcurrency "
            "and ProvisionedConcurrency; use DesiredInstanceCount for an instance-based one.",
        ),
    ],
    ids=["variant-twice", "nothing-to-change", "empty-serverless", "no-instance", "not-serverless"],
)  # fmt: skip
def test_bad_entries_are_refused(
    sagemaker: Any, two_variants: str, entries: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ClientError) as error:
        _update(sagemaker, two_variants, *entries)
    wanted = message.replace("ENDPOINT", two_variants.lower())
    assert client_error(error) == ("ValidationException", 400, wanted)
    assert sagemaker.describe_endpoint(EndpointName=two_variants)["EndpointStatus"] == "InService"


def test_the_models_constraints_are_checked(server: PolyhostProcess, two_variants: str) -> None:
    with pytest.raises(ClientError) as error:
        loose_client(server).update_endpoint_weights_and_capacities(
            EndpointName=two_variants,
            DesiredWeightsAndCapacities=[{"VariantName": "blue", "DesiredWeight": -1.0}],
        )
    code, status, message = client_error(error)
    assert (code, status) == ("ValidationException", 400)
    assert "'desiredWeightsAndCapacities.1.member.desiredWeight'" in message, message


def test_an_endpoint_in_progress_is_refused(sagemaker: Any, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    model = make_model(
        sagemaker,
        PrimaryContainer={"Image": ECHO_IMAGE, "Environment": {"ECHO_READY_FILE": str(ready)}},
    )
    name = unique("held")
    create_config(sagemaker, name, [("AllTraffic", model, 1, 1.0)])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    with pytest.raises(ClientError) as error:
        _update(sagemaker, name, {"VariantName": "AllTraffic", "DesiredInstanceCount": 2})
    assert client_error(error) == (
        "ValidationException",
        400,
        f'Cannot update in-progress endpoint "{ARN}:endpoint/{name}": it is Creating; wait '
        "until it is InService (DescribeEndpoint, or the endpoint_in_service waiter).",
    )
    ready.touch()
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    ready.unlink()  # the new instance is held before its first ping: Updating until then
    _update(sagemaker, name, {"VariantName": "AllTraffic", "DesiredInstanceCount": 2})
    with pytest.raises(ClientError) as error:
        _update(sagemaker, name, {"VariantName": "AllTraffic", "DesiredWeight": 3.0})
    assert "it is Updating" in client_error(error).message
    ready.touch()
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    sagemaker.delete_endpoint(EndpointName=name)


def test_an_endpoint_for_inference_components_is_refused_saying_what_to_do(
    sagemaker: Any,
) -> None:
    name = unique("hosts")
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ExecutionRoleArn=ROLE,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    with pytest.raises(ClientError) as error:
        _update(sagemaker, name, {"VariantName": "AllTraffic", "DesiredInstanceCount": 2})
    assert client_error(error) == (
        "ValidationException",
        400,
        f'Endpoint "{ARN}:endpoint/{name}" hosts inference components, whose copies decide its '
        "instances and its traffic: scale a component with "
        "UpdateInferenceComponentRuntimeConfig (CopyCount), and give the variant "
        "ManagedInstanceScaling (in a new endpoint configuration, UpdateEndpoint) for instances "
        "to be added and removed to fit them.",
    )
    sagemaker.delete_endpoint(EndpointName=name)


# -- what is honoured ------------------------------------------------------------------------------


def test_weights_move_traffic_between_variants_and_restart_nothing(
    sagemaker: Any, runtime: Any
) -> None:
    name = _endpoint(sagemaker, [("blue", 1, 1.0), ("green", 1, 1.0)])
    before = _whoami(runtime, name, calls=30)
    assert {who.split("@")[0] for who in before} == {"blue", "green"}

    answer = _update(sagemaker, name, {"VariantName": "blue", "DesiredWeight": 0.0})
    assert answer["EndpointArn"] == f"{ARN}:endpoint/{name}"
    found = wait_status(sagemaker, name)
    assert found["EndpointStatus"] == "InService"
    assert _variants(found) == {"blue": (0.0, 0.0, 1, 1), "green": (1.0, 1.0, 1, 1)}
    only_green = _whoami(runtime, name, calls=30)
    assert set(only_green) == {w for w in before if w.startswith("green@")}  # same process

    _update(
        sagemaker,
        name,
        {"VariantName": "blue", "DesiredWeight": 1.0},
        {"VariantName": "green", "DesiredWeight": 0.0},
    )
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    assert set(_whoami(runtime, name, calls=30)) == {w for w in before if w.startswith("blue@")}
    sagemaker.delete_endpoint(EndpointName=name)


class SteadyClient:
    """Invokes the endpoint without pause from a thread of its own; keeps every answer (in
    order) and every failure."""

    def __init__(self, server: PolyhostProcess, endpoint: str) -> None:
        self._runtime = server.runtime()
        self._endpoint = endpoint
        self._stop = threading.Event()
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                body = self._runtime.invoke_endpoint(
                    EndpointName=self._endpoint, Body=b"x", CustomAttributes="whoami=1"
                )["Body"].read()
                self.answers.append(body.decode())
            except Exception as error:  # every kind counts as a failed request
                self.failures.append(repr(error))

    def next_answers(self, count: int) -> set[str]:
        """The containers that give the next `count` answers."""
        start = len(self.answers)
        deadline = time.monotonic() + 30
        while len(self.answers) < start + count:
            assert time.monotonic() < deadline, self.failures[-3:]
            time.sleep(0.01)
        return set(self.answers[start : start + count])


def test_instances_are_added_and_removed_in_place_without_a_failed_request(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    ready.touch()
    name = _endpoint(sagemaker, [("AllTraffic", 1, 1.0)], ECHO_READY_FILE=str(ready))
    (first,) = _whoami(runtime, name, calls=3)
    with SteadyClient(server, name) as client:
        # New instances stay out of the route until they pass their ping.
        ready.unlink()
        _update(sagemaker, name, {"VariantName": "AllTraffic", "DesiredInstanceCount": 3})
        during = sagemaker.describe_endpoint(EndpointName=name)
        assert during["EndpointStatus"] == "Updating"
        assert "PendingDeploymentSummary" not in during
        assert _variants(during) == {"AllTraffic": (1.0, 1.0, 1, 3)}
        assert during["ProductionVariants"][0]["VariantStatus"][0]["Status"] == "Updating"
        assert client.next_answers(10) == {first}
        ready.touch()
        found = wait_status(sagemaker, name)
        assert found["EndpointStatus"] == "InService"
        assert _variants(found) == {"AllTraffic": (1.0, 1.0, 3, 3)}
        three = _whoami(runtime, name, calls=30)
        assert len(three) == 3 and first in three  # the first instance kept its port

        _update(sagemaker, name, {"VariantName": "AllTraffic", "DesiredInstanceCount": 1})
        found = wait_status(sagemaker, name)
        assert _variants(found) == {"AllTraffic": (1.0, 1.0, 1, 1)}
        assert client.next_answers(10) == {first}
    assert client.failures == []
    assert len(client.answers) > 20
    sagemaker.delete_endpoint(EndpointName=name)


def test_a_change_survives_a_restart_and_a_new_config_replaces_it(
    start_own_server: ServerFactory,
) -> None:
    server = start_own_server()
    sagemaker, runtime = server.sagemaker(), server.runtime()
    name = _endpoint(sagemaker, [("AllTraffic", 1, 1.0)])
    wanted = {"VariantName": "AllTraffic", "DesiredInstanceCount": 2, "DesiredWeight": 0.5}
    _update(sagemaker, name, wanted)
    assert _variants(wait_status(sagemaker, name)) == {"AllTraffic": (0.5, 0.5, 2, 2)}

    server.kill9()
    server.restart()
    eventually(lambda: _answers(runtime, name), f"{name} to answer after the restart")
    found = wait_status(sagemaker, name)
    assert found["EndpointStatus"] == "InService"
    assert _variants(found) == {"AllTraffic": (0.5, 0.5, 2, 2)}
    assert len(_whoami(runtime, name)) == 2

    with pytest.raises(ClientError) as error:
        sagemaker.update_endpoint(
            EndpointName=name, EndpointConfigName=name, RetainAllVariantProperties=True
        )
    assert "RetainAllVariantProperties" in client_error(error).message
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=name)
    found = wait_status(sagemaker, name)
    assert found["EndpointStatus"] == "InService"
    assert _variants(found) == {"AllTraffic": (1.0, 1.0, 1, 1)}  # the configuration's values
    assert len(_whoami(runtime, name)) == 1


def test_the_aws_cli_updates_weights_and_capacities(
    server: PolyhostProcess, sagemaker: Any
) -> None:
    name = _endpoint(sagemaker, [("AllTraffic", 1, 1.0)])
    answer = awscli.ok(
        server,
        "update-endpoint-weights-and-capacities",
        "--endpoint-name",
        name,
        "--desired-weights-and-capacities",
        "VariantName=AllTraffic,DesiredWeight=2",
    )
    assert answer == {"EndpointArn": f"{ARN}:endpoint/{name}"}
    assert _variants(wait_status(sagemaker, name)) == {"AllTraffic": (2.0, 2.0, 1, 1)}
    sagemaker.delete_endpoint(EndpointName=name)


# -- the control plane in process, its deployer recorded -----------------------------------------


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    images = ImageRegistry.load(write_image_config(tmp_path / "images.toml"))
    p = Plane(tmp_path / "state", images)
    yield p
    p.cp.close()


def _statuses(spec: EndpointSpec) -> tuple[VariantStatus, ...]:
    return tuple(
        VariantStatus(
            variant_name=v.variant_name,
            current_instance_count=v.instance_count,
            desired_instance_count=v.instance_count,
            current_weight=v.initial_weight,
            desired_weight=v.initial_weight,
            status="InService",
        )
        for v in spec.variants
    )


def _serving(plane: Plane) -> EndpointSpec:
    """Endpoint `ep`, InService, variants v0 and v1 (one instance each, weight 1)."""
    plane.model("m0")
    plane.model("m1")
    plane.config("c1", "m0", "m1", InitialInstanceCount=1)
    spec = plane.endpoint("ep", "c1")
    plane.report(spec, "InService", variants=_statuses(spec))
    return spec


def test_the_plane_shows_desired_values_until_the_deployer_reports_them(
    plane: Plane, tmp_path: Path
) -> None:
    first = _serving(plane)
    answer = plane(
        "UpdateEndpointWeightsAndCapacities",
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": "v1", "DesiredInstanceCount": 3}],
    )
    assert answer == {"EndpointArn": f"{ARN}:endpoint/ep"}
    spec = plane.deployer.applied[-1]
    assert spec.in_place and spec.revision > first.revision
    assert spec.endpoint_config_name == "c1"
    assert [(v.instance_count, v.initial_weight) for v in spec.variants] == [(1, 1.0), (3, 1.0)]
    during = plane.describe("ep")
    assert during["EndpointStatus"] == "Updating"
    assert "PendingDeploymentSummary" not in during
    assert _variants(during) == {"v0": (1.0, 1.0, 1, 1), "v1": (1.0, 1.0, 1, 3)}
    statuses = {v["VariantName"]: v["VariantStatus"] for v in during["ProductionVariants"]}
    assert statuses["v0"] == [] and statuses["v1"][0]["Status"] == "Updating"

    plane.report(spec, "InService", variants=_statuses(spec))
    after = plane.describe("ep")
    assert after["EndpointStatus"] == "InService"
    assert _variants(after) == {"v0": (1.0, 1.0, 1, 1), "v1": (1.0, 1.0, 3, 3)}
    plane.cp.close()
    again = Plane(tmp_path / "state", ImageRegistry.load(tmp_path / "images.toml"))
    try:
        assert again.cp.desired_endpoints() == [spec]  # what a restart runs
    finally:
        again.cp.close()


def test_a_change_that_fails_leaves_the_previous_values(plane: Plane) -> None:
    _serving(plane)
    plane(
        "UpdateEndpointWeightsAndCapacities",
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": "v0", "DesiredInstanceCount": 2}],
    )
    spec = plane.deployer.applied[-1]
    plane.report(
        spec,
        "InService",
        failure_reason="Update to endpoint config c1 failed: no room",
        serving_config_name="c1",
    )
    after = plane.describe("ep")
    assert after["EndpointStatus"] == "InService"
    assert after["FailureReason"] == "Update to endpoint config c1 failed: no room"
    assert _variants(after) == {"v0": (1.0, 1.0, 1, 1), "v1": (1.0, 1.0, 1, 1)}


def test_calls_from_worker_threads_see_one_change_at_a_time(plane: Plane) -> None:
    """As Application Auto Scaling calls it: `call` with SageMaker's shapes, from threads."""
    _serving(plane)
    outcomes: list[str] = []

    def scale(count: int) -> None:
        try:
            plane.cp.call(
                "UpdateEndpointWeightsAndCapacities",
                {
                    "EndpointName": "ep",
                    "DesiredWeightsAndCapacities": [
                        {"VariantName": "v0", "DesiredInstanceCount": count}
                    ],
                },
            )
            outcomes.append("accepted")
        except ValidationException as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=scale, args=(n,)) for n in range(2, 8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("accepted") == 1
    refused = [o for o in outcomes if o != "accepted"]
    assert all(o.startswith('Cannot update in-progress endpoint "') for o in refused), refused
    described: list[dict[str, Any]] = []
    reader = threading.Thread(
        target=lambda: described.append(plane.cp.call("DescribeEndpoint", {"EndpointName": "ep"}))
    )
    reader.start()
    reader.join()
    assert described[0]["EndpointStatus"] == "Updating"
    assert len(plane.deployer.applied) == 2  # the create, and the one accepted change
