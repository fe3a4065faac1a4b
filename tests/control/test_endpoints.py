"""The endpoint lifecycle across the deployer seam, driven step by step.

The control plane runs in-process on a real SQLite store; on the other side of the seam a
deployer that records what it is told stands in for the real one, so each status report can be
delivered exactly when the test wants it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyhost.backends.registry import ImageRegistry
from polyhost.control.seam import EndpointSpec, StatusReport, VariantStatus
from polyhost.control.service import ControlPlane
from polyhost.errors import ValidationException
from polyhost.settings import Settings
from tests.support.server import ECHO_IMAGE, write_image_config

ARN = "arn:aws:sagemaker:us-east-1:123456789012"


class RecordingDeployer:
    def __init__(self) -> None:
        self.applied: list[EndpointSpec] = []
        self.removed: list[str] = []

    def apply(self, spec: EndpointSpec) -> None:
        self.applied.append(spec)

    def remove(self, endpoint_name: str) -> None:
        self.removed.append(endpoint_name)


class Plane:
    """A control plane on a state dir, with its recording deployer and call shortcuts."""

    def __init__(self, state_dir: Path, images: ImageRegistry) -> None:
        self.deployer = RecordingDeployer()
        self.cp = ControlPlane(Settings(state_dir=state_dir), self.deployer, images)

    def __call__(self, operation: str, **params: Any) -> dict[str, Any]:
        return self.cp.call(operation, params)

    def model(self, name: str, **params: Any) -> None:
        if "PrimaryContainer" not in params and "Containers" not in params:
            params["PrimaryContainer"] = {"Image": ECHO_IMAGE}
        self("CreateModel", ModelName=name, **params)

    def config(self, name: str, *models: str, **variant: Any) -> None:
        self(
            "CreateEndpointConfig",
            EndpointConfigName=name,
            ProductionVariants=[
                {"VariantName": f"v{i}", "ModelName": m, **variant} for i, m in enumerate(models)
            ],
        )

    def endpoint(self, name: str, config: str) -> EndpointSpec:
        self("CreateEndpoint", EndpointName=name, EndpointConfigName=config)
        return self.deployer.applied[-1]

    def describe(self, name: str) -> dict[str, Any]:
        return self("DescribeEndpoint", EndpointName=name)

    def report(self, spec: EndpointSpec, status: str, **extra: Any) -> None:
        self.cp.report(
            StatusReport(
                endpoint_name=spec.endpoint_name, revision=spec.revision, status=status, **extra
            )  # type: ignore[arg-type]
        )


@pytest.fixture
def images(tmp_path: Path) -> ImageRegistry:
    return ImageRegistry.load(write_image_config(tmp_path / "images.toml"))


@pytest.fixture
def plane(tmp_path: Path, images: ImageRegistry) -> Iterator[Plane]:
    p = Plane(tmp_path / "state", images)
    yield p
    p.cp.close()


@pytest.fixture
def running(plane: Plane) -> EndpointSpec:
    """An InService endpoint `ep` on config `c1` (model `m1`), with `c2` ready for updates."""
    plane.model("m1")
    plane.config("c1", "m1", InitialInstanceCount=2)
    plane.config("c2", "m1", InitialVariantWeight=3)
    spec = plane.endpoint("ep", "c1")
    plane.report(spec, "InService", serving_config_name="c1", variants=_variants(spec))
    return spec


def _variants(spec: EndpointSpec, current: int | None = None) -> tuple[VariantStatus, ...]:
    return tuple(
        VariantStatus(
            variant_name=v.variant_name,
            current_instance_count=v.instance_count if current is None else current,
            desired_instance_count=v.instance_count,
            current_weight=v.initial_weight,
            desired_weight=v.initial_weight,
            deployed_images=tuple(c.image for c in v.containers),
            status="InService",
        )
        for v in spec.variants
    )


# -- the spec handed to the deployer -----------------------------------------------------------


def test_create_records_creating_and_applies_a_resolved_spec(plane: Plane) -> None:
    plane.model("Single", PrimaryContainer={"Image": ECHO_IMAGE, "Environment": {"A": "1"}})
    plane.model("named", PrimaryContainer={"Image": ECHO_IMAGE, "ContainerHostname": "web"})
    plane.model("pipe", Containers=[{"Image": ECHO_IMAGE}, {"Image": "polyhost/sklearn"}])
    plane.model(
        "direct",
        Containers=[
            {"Image": ECHO_IMAGE, "ContainerHostname": "a", "ModelDataUrl": "file:///m/a.tgz"},
            {"Image": ECHO_IMAGE, "ContainerHostname": "b"},
        ],
        InferenceExecutionConfig={"Mode": "Direct"},
    )
    plane(
        "CreateEndpointConfig",
        EndpointConfigName="cfg",
        ProductionVariants=[
            {"VariantName": "one", "ModelName": "single"},
            {"VariantName": "two", "ModelName": "named", "InitialInstanceCount": 3},
            {
                "VariantName": "three",
                "ModelName": "pipe",
                "InitialVariantWeight": 0.5,
                "InstanceType": "ml.m5.large",
                "ContainerStartupHealthCheckTimeoutInSeconds": 60,
                "ModelDataDownloadTimeoutInSeconds": 120,
            },
            {"VariantName": "four", "ModelName": "direct"},
        ],
    )
    spec = plane.endpoint("Ep", "cfg")
    assert plane.describe("ep")["EndpointStatus"] == "Creating"
    assert (spec.endpoint_name, spec.endpoint_arn, spec.endpoint_config_name) == (
        "Ep",
        f"{ARN}:endpoint/ep",
        "cfg",
    )
    one, two, three, four = spec.variants
    assert (one.model_name, one.mode, one.instance_count, one.initial_weight) == (
        "Single",
        "Serial",
        1,
        1.0,
    )
    assert (one.startup_timeout_s, one.download_timeout_s, one.instance_type) == (None, 3600, None)
    assert [(c.hostname, c.image, c.environment) for c in one.containers] == [
        ("Single", ECHO_IMAGE, {"A": "1"})
    ]
    assert [c.hostname for c in two.containers] == ["web"]
    assert two.instance_count == 3
    assert [c.hostname for c in three.containers] == ["container-1", "container-2"]
    assert (three.initial_weight, three.instance_type) == (0.5, "ml.m5.large")
    assert (three.startup_timeout_s, three.download_timeout_s) == (60, 120)
    assert four.mode == "Direct"
    assert [(c.hostname, c.model_data_url) for c in four.containers] == [
        ("a", "file:///m/a.tgz"),
        ("b", None),
    ]


def test_before_any_report_the_variants_come_from_the_spec(plane: Plane) -> None:
    plane.model("m")
    plane.config("c", "m", InitialInstanceCount=2, InitialVariantWeight=2)
    plane.endpoint("e", "c")
    (variant,) = plane.describe("e")["ProductionVariants"]
    assert variant["VariantName"] == "v0"
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (0, 2)
    assert (variant["CurrentWeight"], variant["DesiredWeight"]) == (2.0, 2.0)
    assert variant["VariantStatus"][0]["Status"] == "Creating"


def test_the_spec_is_a_snapshot(plane: Plane, running: EndpointSpec) -> None:
    plane("DeleteModel", ModelName="m1")
    plane("DeleteEndpointConfig", EndpointConfigName="c1")
    plane.model("m1", PrimaryContainer={"Image": "polyhost/sklearn"})
    assert plane.cp.desired_endpoints() == [running]
    assert plane.describe("ep")["EndpointConfigName"] == "c1"


# -- reports ----------------------------------------------------------------------------------


def test_in_service(plane: Plane, running: EndpointSpec) -> None:
    described = plane.describe("ep")
    assert described["EndpointStatus"] == "InService"
    assert "FailureReason" not in described
    (variant,) = described["ProductionVariants"]
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (2, 2)
    assert [i["SpecifiedImage"] for i in variant["DeployedImages"]] == [ECHO_IMAGE]
    assert variant["VariantStatus"] == []  # nothing in progress
    assert described["LastModifiedTime"] >= described["CreationTime"]


def test_failed_creation_keeps_a_clipped_reason(plane: Plane) -> None:
    plane.model("m")
    plane.config("c", "m")
    spec = plane.endpoint("e", "c")
    plane.report(spec, "Failed", failure_reason="x" * 5000, variants=_variants(spec, current=0))
    described = plane.describe("e")
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"] == "x" * 1024
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 0
    assert plane.cp.desired_endpoints() == []  # a failed endpoint is not retried on restart


def test_update_then_success(plane: Plane, running: EndpointSpec) -> None:
    plane("UpdateEndpoint", EndpointName="ep", EndpointConfigName="c2")
    new = plane.deployer.applied[-1]
    assert (new.revision > running.revision, new.endpoint_config_name) == (True, "c2")
    described = plane.describe("ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("Updating", "c1")
    assert described["PendingDeploymentSummary"]["EndpointConfigName"] == "c2"
    assert plane.cp.desired_endpoints() == [new]
    with pytest.raises(ValidationException, match="Cannot update in-progress endpoint"):
        plane("UpdateEndpoint", EndpointName="ep", EndpointConfigName="c1")

    plane.report(new, "InService", serving_config_name="c2", variants=_variants(new))
    described = plane.describe("ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "c2")
    assert "PendingDeploymentSummary" not in described
    assert described["ProductionVariants"][0]["CurrentWeight"] == 3.0
    plane.report(running, "Failed", failure_reason="old revision")  # stale now
    assert plane.describe("ep")["EndpointStatus"] == "InService"


@pytest.mark.parametrize("style", ["InService with a reason", "Failed"])
def test_failed_update_falls_back_to_the_old_config(
    plane: Plane, running: EndpointSpec, style: str
) -> None:
    plane("UpdateEndpoint", EndpointName="ep", EndpointConfigName="c2")
    new = plane.deployer.applied[-1]
    if style == "Failed":
        plane.report(new, "Failed", failure_reason="ping failed")
    else:
        plane.report(
            new,
            "InService",
            failure_reason="ping failed",
            serving_config_name="c1",
            variants=_variants(running),
        )
    described = plane.describe("ep")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == "c1"
    assert described["FailureReason"] == "ping failed"
    assert "PendingDeploymentSummary" not in described
    assert plane.cp.desired_endpoints() == [running]
    # The old revision still serves and may report; the reason stays until an update succeeds.
    plane.report(running, "InService", variants=_variants(running))
    assert plane.describe("ep")["FailureReason"] == "ping failed"
    plane("UpdateEndpoint", EndpointName="ep", EndpointConfigName="c2")
    plane.report(plane.deployer.applied[-1], "InService")
    assert "FailureReason" not in plane.describe("ep")


def test_a_failed_endpoint_can_be_updated(plane: Plane) -> None:
    plane.model("m")
    plane.config("c", "m")
    spec = plane.endpoint("e", "c")
    plane.report(spec, "Failed", failure_reason="boom")
    plane("UpdateEndpoint", EndpointName="e", EndpointConfigName="c")
    retry = plane.deployer.applied[-1]
    assert plane.describe("e")["EndpointStatus"] == "Updating"
    plane.report(retry, "Failed", failure_reason="boom again")
    described = plane.describe("e")
    assert (described["EndpointStatus"], described["FailureReason"]) == ("Failed", "boom again")


def test_reports_for_unknown_or_deleted_endpoints_are_ignored(
    plane: Plane, running: EndpointSpec
) -> None:
    plane.report(EndpointSpec("nobody", "arn", "c", (), 1), "InService")
    plane("DeleteEndpoint", EndpointName="EP")
    assert plane.deployer.removed == ["ep"]
    plane.report(running, "InService")
    with pytest.raises(ValidationException, match='Could not find endpoint "'):
        plane.describe("ep")
    # A new endpoint of the same name gets a newer revision: the old one's reports stay stale.
    again = plane.endpoint("ep", "c1")
    assert again.revision > running.revision
    plane.report(running, "Failed", failure_reason="from the deleted endpoint")
    assert plane.describe("ep")["EndpointStatus"] == "Creating"


def test_status_filter_and_sort(plane: Plane, running: EndpointSpec) -> None:
    plane.endpoint("other", "c1")
    listed = plane("ListEndpoints", StatusEquals="InService")["Endpoints"]
    assert [e["EndpointName"] for e in listed] == ["ep"]
    listed = plane("ListEndpoints", StatusEquals="Creating")["Endpoints"]
    assert [e["EndpointName"] for e in listed] == ["other"]
    assert plane("ListEndpoints", StatusEquals="Failed")["Endpoints"] == []
    listed = plane("ListEndpoints", SortBy="Status", SortOrder="Ascending", MaxResults=1)
    assert [e["EndpointStatus"] for e in listed["Endpoints"]] == ["Creating"]
    rest = plane(
        "ListEndpoints",
        SortBy="Status",
        SortOrder="Ascending",
        MaxResults=1,
        NextToken=listed["NextToken"],
    )
    assert [e["EndpointStatus"] for e in rest["Endpoints"]] == ["InService"]


# -- restarts -----------------------------------------------------------------------------------


def test_desired_endpoints_after_a_restart(
    tmp_path: Path, images: ImageRegistry, plane: Plane, running: EndpointSpec
) -> None:
    plane.config("c3", "m1")
    plane.endpoint("creating", "c1")
    failed = plane.endpoint("failed", "c1")
    plane.report(failed, "Failed", failure_reason="no")
    gone = plane.endpoint("gone", "c1")
    plane("DeleteEndpoint", EndpointName="gone")
    plane("UpdateEndpoint", EndpointName="ep", EndpointConfigName="c2")
    pending = plane.deployer.applied[-1]
    plane.cp.close()

    again = Plane(tmp_path / "state", images)
    try:
        desired = {s.endpoint_name: s for s in again.cp.desired_endpoints()}
        assert set(desired) == {"ep", "creating"}
        assert desired["ep"] == pending
        assert gone.endpoint_name not in desired
        # Only the new revision was started again, so its failure leaves nothing serving.
        again.report(pending, "Failed", failure_reason="ping failed")
        described = again.describe("ep")
        assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("Failed", "c2")
        # Revisions keep growing across restarts.
        again("UpdateEndpoint", EndpointName="ep", EndpointConfigName="c3")
        assert again.deployer.applied[-1].revision > pending.revision
    finally:
        again.cp.close()


def test_an_image_unknown_after_a_restart_is_refused_at_create_endpoint(
    tmp_path: Path, plane: Plane
) -> None:
    plane.model("m")
    plane.config("c", "m")
    plane.cp.close()
    bare = Plane(tmp_path / "state", ImageRegistry.load(None))
    try:
        with pytest.raises(ValidationException) as excinfo:
            bare.endpoint("e", "c")
        assert excinfo.value.message == (
            f"Model m uses image '{ECHO_IMAGE}', which this server does not know. Known images: "
            "polyhost/huggingface, polyhost/pytorch, polyhost/sklearn, polyhost/tensorflow, "
            "polyhost/xgboost."
        )
    finally:
        bare.cp.close()


# -- deployers of other shapes ------------------------------------------------------------------


def test_a_deployer_may_report_from_inside_apply(tmp_path: Path, images: ImageRegistry) -> None:
    """A synchronous deployer calling back at once must not deadlock the control plane."""

    class Eager:
        cp: ControlPlane

        def apply(self, spec: EndpointSpec) -> None:
            self.cp.report(StatusReport(spec.endpoint_name, spec.revision, "InService"))

        def remove(self, endpoint_name: str) -> None:
            return None

    eager = Eager()
    cp = ControlPlane(Settings(state_dir=tmp_path / "s"), eager, images)
    eager.cp = cp
    try:
        cp.call("CreateModel", {"ModelName": "m", "PrimaryContainer": {"Image": ECHO_IMAGE}})
        cp.call(
            "CreateEndpointConfig",
            {
                "EndpointConfigName": "c",
                "ProductionVariants": [{"VariantName": "v", "ModelName": "m"}],
            },
        )
        cp.call("CreateEndpoint", {"EndpointName": "e", "EndpointConfigName": "c"})
        assert cp.call("DescribeEndpoint", {"EndpointName": "e"})["EndpointStatus"] == "InService"
    finally:
        cp.close()


def test_a_failing_deployer_does_not_undo_the_commit(tmp_path: Path, images: ImageRegistry) -> None:
    class Broken:
        def apply(self, spec: EndpointSpec) -> None:
            raise RuntimeError("deployer down")

        def remove(self, endpoint_name: str) -> None:
            raise RuntimeError("deployer down")

    cp = ControlPlane(Settings(state_dir=tmp_path / "s"), Broken(), images)
    try:
        cp.call("CreateModel", {"ModelName": "m", "PrimaryContainer": {"Image": ECHO_IMAGE}})
        cp.call(
            "CreateEndpointConfig",
            {
                "EndpointConfigName": "c",
                "ProductionVariants": [{"VariantName": "v", "ModelName": "m"}],
            },
        )
        cp.call("CreateEndpoint", {"EndpointName": "e", "EndpointConfigName": "c"})
        assert [s.endpoint_name for s in cp.desired_endpoints()] == ["e"]
        cp.call("DeleteEndpoint", {"EndpointName": "e"})
        assert cp.desired_endpoints() == []
    finally:
        cp.close()


# -- deployment guardrails ----------------------------------------------------------------------

CANARY = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 5,
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
        },
        "TerminationWaitInSeconds": 2,
    }
}


def test_a_canary_update_is_planned_and_can_roll_back(plane: Plane, running: EndpointSpec) -> None:
    plane.config("c3", "m1", InitialInstanceCount=4)
    plane("UpdateEndpoint", EndpointName="ep", EndpointConfigName="c3", DeploymentConfig=CANARY)
    new = plane.deployer.applied[-1]
    assert new.guardrails is not None
    assert (new.guardrails.traffic, new.guardrails.steps, new.guardrails.variants) == (
        "CANARY",
        ((2,),),
        ("v0",),
    )
    assert (new.guardrails.wait_s, new.guardrails.termination_wait_s) == (5.0, 2.0)
    assert plane.describe("ep")["LastDeploymentConfig"] == CANARY
    plane.report(new, "RollingBack", failure_reason="alarm errors in ALARM")
    described = plane.describe("ep")
    assert (described["EndpointStatus"], described["FailureReason"]) == (
        "RollingBack",
        "alarm errors in ALARM",
    )
    with pytest.raises(ValidationException, match="in-progress"):
        plane("UpdateEndpoint", EndpointName="ep", EndpointConfigName="c1")
    # A restart now would start the old revision again, not the update being undone.
    assert plane.cp.desired_endpoints() == [running]
    plane.report(
        new,
        "InService",
        failure_reason="Update to endpoint config c3 failed: rolled back",
        serving_config_name="c1",
        variants=_variants(running),
    )
    described = plane.describe("ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "c1")
    assert described["FailureReason"] == "Update to endpoint config c3 failed: rolled back"
    # RetainDeploymentConfig: the last DeploymentConfig applies again.
    plane("UpdateEndpoint", EndpointName="ep", EndpointConfigName="c3", RetainDeploymentConfig=True)
    assert plane.deployer.applied[-1].guardrails == new.guardrails


def test_a_rollback_interrupted_by_a_restart_ends_when_the_old_revision_serves(
    plane: Plane, running: EndpointSpec
) -> None:
    plane.config("c3", "m1", InitialInstanceCount=2)
    plane("UpdateEndpoint", EndpointName="ep", EndpointConfigName="c3", DeploymentConfig=CANARY)
    new = plane.deployer.applied[-1]
    plane.report(new, "RollingBack", failure_reason="alarm errors in ALARM")
    [again] = plane.cp.desired_endpoints()
    assert again == running
    plane.report(running, "InService", serving_config_name="c1", variants=_variants(running))
    described = plane.describe("ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "c1")
    assert described["FailureReason"] == "alarm errors in ALARM"
    assert "PendingDeploymentSummary" not in described
