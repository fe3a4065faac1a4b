"""Inference components end to end: a real server, real containers, boto3 as users call it."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from tests.support.endpoints import deploy, echo_container
from tests.support.server import ACCOUNT, ECHO_IMAGE, REGION
from tests.support.waiting import eventually

ROLE = "arn:aws:iam::123456789012:role/polyhost"


def components_endpoint(
    sagemaker: Any,
    name: str,
    instances: int = 1,
    instance_type: str = "ml.m5.large",
    **variant: Any,
) -> None:
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ExecutionRoleArn=ROLE,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "InstanceType": instance_type,
                "InitialInstanceCount": instances,
                **variant,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_endpoint(sagemaker, name)


def wait_endpoint(sagemaker: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
        if found["EndpointStatus"] not in ("Creating", "Updating"):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def wait_component(sagemaker: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    """Polls as clients do: botocore has no waiter for components."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = sagemaker.describe_inference_component(InferenceComponentName=name)
        if found["InferenceComponentStatus"] not in ("Creating", "Updating", "Deleting"):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def create_component(
    sagemaker: Any,
    name: str,
    endpoint: str,
    copies: int = 1,
    cpus: float = 0.5,
    memory_mb: int = 512,
    **container: Any,
) -> dict[str, Any]:
    sagemaker.create_inference_component(
        InferenceComponentName=name,
        EndpointName=endpoint,
        VariantName="AllTraffic",
        Specification={
            "Container": {
                "Image": ECHO_IMAGE,
                "Environment": {"ECHO_NAME": name},
                **container,
            },
            "ComputeResourceRequirements": {
                "NumberOfCpuCoresRequired": cpus,
                "MinMemoryRequiredInMb": memory_mb,
            },
        },
        RuntimeConfig={"CopyCount": copies},
    )
    return wait_component(sagemaker, name)


def invoke(runtime: Any, endpoint: str, component: str | None, body: bytes = b"hi") -> str:
    kwargs: dict[str, Any] = {"EndpointName": endpoint, "Body": body}
    if component is not None:
        kwargs["InferenceComponentName"] = component
    answer: bytes = runtime.invoke_endpoint(**kwargs)["Body"].read()
    return answer.decode()


def error_of(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(**kwargs)
    return dict(caught.value.response)


@pytest.fixture(scope="module")
def host(sagemaker: Any) -> str:
    """An endpoint for components with 2 ml.m5.xlarge instances (4 vCPUs, 16 GiB each)."""
    components_endpoint(sagemaker, "ic-host", instances=2, instance_type="ml.m5.xlarge")
    return "ic-host"


def test_an_endpoint_for_components_is_in_service_with_none(sagemaker: Any, host: str) -> None:
    found = sagemaker.describe_endpoint(EndpointName=host)
    assert found["EndpointStatus"] == "InService"
    (variant,) = found["ProductionVariants"]
    assert variant["CurrentInstanceCount"] == 2


def test_a_request_without_the_component_header_gets_sagemakers_error(
    runtime: Any, host: str
) -> None:
    error = error_of(runtime.invoke_endpoint, EndpointName=host, Body=b"x")
    assert error["Error"]["Code"] == "ValidationError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Inference Component Name header is required" in error["Error"]["Message"]


def test_each_component_answers_from_its_own_copies(
    sagemaker: Any, runtime: Any, host: str
) -> None:
    first = create_component(sagemaker, "ic-first", host, copies=2)
    assert first["InferenceComponentStatus"] == "InService", first
    assert first["RuntimeConfig"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 2}
    assert first["EndpointName"] == host
    assert first["Specification"]["Container"]["DeployedImage"]["SpecifiedImage"] == ECHO_IMAGE
    create_component(sagemaker, "ic-second", host)
    assert invoke(runtime, host, "ic-first").startswith("ic-first:")
    assert invoke(runtime, host, "ic-second").startswith("ic-second:")
    error = error_of(
        runtime.invoke_endpoint, EndpointName=host, Body=b"x", InferenceComponentName="nope"
    )
    assert error["Error"]["Code"] == "ValidationError"
    assert "Inference component nope not found" in error["Error"]["Message"]


def test_a_component_streams_its_answer(sagemaker: Any, runtime: Any, host: str) -> None:
    create_component(sagemaker, "ic-stream", host, cpus=0.25)
    answer = runtime.invoke_endpoint_with_response_stream(
        EndpointName=host, InferenceComponentName="ic-stream", Body=b"streamed"
    )
    parts = b"".join(event["PayloadPart"]["Bytes"] for event in answer["Body"])
    assert parts == b"ic-stream:streamed"
    missing = error_of(runtime.invoke_endpoint_with_response_stream, EndpointName=host, Body=b"x")
    assert "Inference Component Name header is required" in missing["Error"]["Message"]


def test_copies_are_spread_one_per_instance_first(sagemaker: Any, runtime: Any, host: str) -> None:
    create_component(sagemaker, "ic-spread", host, copies=2)
    seen = {invoke(runtime, host, "ic-spread", b"x").split(":")[0] for _ in range(6)}
    assert seen == {"ic-spread"}
    # Both copies answer: the router spreads requests over them (least outstanding, ties
    # round-robin), each copy on its own port.
    ports = set()
    for _ in range(8):
        answer = runtime.invoke_endpoint(
            EndpointName=host,
            InferenceComponentName="ic-spread",
            Body=b"x",
            CustomAttributes="whoami=1",
        )["Body"].read()
        ports.add(answer)
    assert len(ports) == 2


def test_each_copy_runs_under_the_components_limits(server: Any, sagemaker: Any, host: str) -> None:
    sagemaker.create_inference_component(
        InferenceComponentName="ic-limits",
        EndpointName=host,
        VariantName="AllTraffic",
        Specification={
            "Container": {"Image": ECHO_IMAGE},
            "ComputeResourceRequirements": {
                "NumberOfCpuCoresRequired": 0.5,
                "MinMemoryRequiredInMb": 256,
                "MaxMemoryRequiredInMb": 600,
            },
        },
        RuntimeConfig={"CopyCount": 1},
    )
    assert wait_component(sagemaker, "ic-limits")["InferenceComponentStatus"] == "InService"
    (line,) = [
        line for line in server.log().splitlines() if "started container ic_ic-limits." in line
    ]
    # What the backend enforced: cgroups where the machine has them (as here), else the
    # fallbacks it names; either way the copy's own figures, not the image's.
    assert "600MiB" in line, line
    assert "0.5 CPU" in line, line


def test_listing_filters_sorts_and_pages(sagemaker: Any, host: str) -> None:
    create_component(sagemaker, "ic-list-a", host)
    create_component(sagemaker, "ic-list-b", host)
    names = [
        c["InferenceComponentName"]
        for c in sagemaker.list_inference_components(
            EndpointNameEquals=host, NameContains="list", SortBy="Name", SortOrder="Ascending"
        )["InferenceComponents"]
    ]
    assert names == ["ic-list-a", "ic-list-b"]
    first = sagemaker.list_inference_components(NameContains="ic-list", MaxResults=1)
    assert len(first["InferenceComponents"]) == 1
    rest = sagemaker.list_inference_components(
        NameContains="ic-list", MaxResults=1, NextToken=first["NextToken"]
    )
    assert {c["InferenceComponentName"] for c in rest["InferenceComponents"]} | {
        first["InferenceComponents"][0]["InferenceComponentName"]
    } == {"ic-list-a", "ic-list-b"}
    assert "NextToken" not in rest
    assert (
        sagemaker.list_inference_components(EndpointNameEquals="elsewhere")["InferenceComponents"]
        == []
    )


def test_scaling_to_zero_copies_and_back(sagemaker: Any, runtime: Any, host: str) -> None:
    create_component(sagemaker, "ic-scale", host)
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName="ic-scale", DesiredRuntimeConfig={"CopyCount": 0}
    )
    found = wait_component(sagemaker, "ic-scale")
    assert found["RuntimeConfig"] == {"DesiredCopyCount": 0, "CurrentCopyCount": 0}
    error = error_of(
        runtime.invoke_endpoint, EndpointName=host, Body=b"x", InferenceComponentName="ic-scale"
    )
    assert error["Error"]["Code"] == "ModelNotReadyException"
    assert "no copy" in error["Error"]["Message"]
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName="ic-scale", DesiredRuntimeConfig={"CopyCount": 2}
    )
    found = wait_component(sagemaker, "ic-scale")
    assert found["RuntimeConfig"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 2}
    assert invoke(runtime, host, "ic-scale").startswith("ic-scale:")


def _copies(runtime: Any, endpoint: str, component: str, calls: int = 12) -> set[bytes]:
    """The copies that answer (each answers with its own port)."""
    return {
        runtime.invoke_endpoint(
            EndpointName=endpoint,
            InferenceComponentName=component,
            Body=b"x",
            CustomAttributes="whoami=1",
        )["Body"].read()
        for _ in range(calls)
    }


def test_a_new_copy_count_leaves_the_copies_that_stay_running(
    sagemaker: Any, runtime: Any, host: str
) -> None:
    create_component(sagemaker, "ic-resize", host, copies=2, cpus=0.25)
    two = _copies(runtime, host, "ic-resize")
    assert len(two) == 2
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName="ic-resize", DesiredRuntimeConfig={"CopyCount": 3}
    )
    found = wait_component(sagemaker, "ic-resize")
    assert found["RuntimeConfig"] == {"DesiredCopyCount": 3, "CurrentCopyCount": 3}
    three = _copies(runtime, host, "ic-resize")
    assert len(three) == 3 and two < three  # the two copies answer on: not restarted
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName="ic-resize", DesiredRuntimeConfig={"CopyCount": 1}
    )
    found = wait_component(sagemaker, "ic-resize")
    assert found["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 1}
    one = _copies(runtime, host, "ic-resize")
    assert len(one) == 1 and one < two  # the first copy stays


def test_an_update_whose_copies_fail_is_rolled_back(
    sagemaker: Any, runtime: Any, host: str
) -> None:
    create_component(sagemaker, "ic-rollback", host, cpus=0.25)
    sagemaker.update_inference_component(
        InferenceComponentName="ic-rollback",
        Specification={
            "Container": {
                "Image": ECHO_IMAGE,
                "Environment": {"ECHO_NAME": "broken", "ECHO_EXIT_AT_START": "1"},
            },
            "ComputeResourceRequirements": {
                "NumberOfCpuCoresRequired": 0.25,
                "MinMemoryRequiredInMb": 512,
            },
        },
    )
    found = wait_component(sagemaker, "ic-rollback")
    assert found["InferenceComponentStatus"] == "InService", found
    assert found["FailureReason"].startswith("The update failed and was rolled back"), found
    assert found["RuntimeConfig"]["CurrentCopyCount"] == 1
    # The previous specification is what is described, and what answers.
    assert found["Specification"]["Container"].get("Environment") == {"ECHO_NAME": "ic-rollback"}
    assert invoke(runtime, host, "ic-rollback").startswith("ic-rollback:")


ROLLING = {
    "RollingUpdatePolicy": {
        "MaximumBatchSize": {"Type": "COPY_COUNT", "Value": 1},
        "WaitIntervalInSeconds": 1,
    }
}


def _echo_specification(name: str, **environment: str) -> dict[str, Any]:
    return {
        "Container": {"Image": ECHO_IMAGE, "Environment": {"ECHO_NAME": name, **environment}},
        "ComputeResourceRequirements": {
            "NumberOfCpuCoresRequired": 0.25,
            "MinMemoryRequiredInMb": 256,
        },
    }


def test_a_rolling_update_replaces_copies_in_batches_without_a_failed_request(
    sagemaker: Any, runtime: Any, host: str
) -> None:
    sagemaker.create_inference_component(
        InferenceComponentName="ic-rolling",
        EndpointName=host,
        VariantName="AllTraffic",
        Specification=_echo_specification("v1"),
        RuntimeConfig={"CopyCount": 3},
    )
    assert wait_component(sagemaker, "ic-rolling")["RuntimeConfig"]["CurrentCopyCount"] == 3
    answers: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                answers.append(invoke(runtime, host, "ic-rolling").split(":")[0])
            except botocore.exceptions.ClientError as error:
                failures.append(str(error.response["Error"]))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(0.3)
        sagemaker.update_inference_component(
            InferenceComponentName="ic-rolling",
            Specification=_echo_specification("v2"),
            DeploymentConfig=ROLLING,
        )
        found = wait_component(sagemaker, "ic-rolling")
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert found["InferenceComponentStatus"] == "InService", found
    assert found["RuntimeConfig"] == {"DesiredCopyCount": 3, "CurrentCopyCount": 3}
    assert found["LastDeploymentConfig"] == ROLLING
    assert answers[0] == "v1" and answers[-1] == "v2"
    # In batches: new copies answered while old ones still did (all at once would switch once).
    last_v1 = len(answers) - 1 - answers[::-1].index("v1")
    assert "v2" in answers[:last_v1], "every v1 answer came before the first v2 one"


def test_a_rolling_update_whose_copies_fail_is_rolled_back(
    sagemaker: Any, runtime: Any, host: str
) -> None:
    sagemaker.create_inference_component(
        InferenceComponentName="ic-rolling-bad",
        EndpointName=host,
        VariantName="AllTraffic",
        Specification=_echo_specification("good"),
        RuntimeConfig={"CopyCount": 2},
    )
    wait_component(sagemaker, "ic-rolling-bad")
    before = _copies(runtime, host, "ic-rolling-bad")
    assert len(before) == 2
    sagemaker.update_inference_component(
        InferenceComponentName="ic-rolling-bad",
        Specification=_echo_specification("bad", ECHO_EXIT_AT_START="1"),
        DeploymentConfig=ROLLING,
    )
    found = wait_component(sagemaker, "ic-rolling-bad")
    assert found["InferenceComponentStatus"] == "InService", found
    assert found["FailureReason"].startswith("The update failed and was rolled back"), found
    assert found["RuntimeConfig"]["CurrentCopyCount"] == 2
    after = _copies(runtime, host, "ic-rolling-bad")
    assert len(after) == 2 and all(a.startswith(b"good@") for a in after), after


def test_a_copy_that_fits_nowhere_leaves_the_component_short_with_a_reason(
    sagemaker: Any,
) -> None:
    # 2 ml.m5.large instances of 8 GiB: three copies of 6 GiB fit two.
    components_endpoint(sagemaker, "ic-small", instances=2)
    found = create_component(sagemaker, "ic-big", "ic-small", copies=3, cpus=0.25, memory_mb=6144)
    assert found["RuntimeConfig"] == {"DesiredCopyCount": 3, "CurrentCopyCount": 2}
    assert "Only 2 of 3 copies" in found["FailureReason"]
    assert "6144 MiB" in found["FailureReason"]
    # A copy larger than any instance is told so.
    huge = create_component(sagemaker, "ic-huge", "ic-small", memory_mb=9000)
    assert huge["RuntimeConfig"]["CurrentCopyCount"] == 0
    assert "more than one instance has" in huge["FailureReason"]
    # Deleting a component frees its room: the short one gets its third copy.
    sagemaker.delete_inference_component(InferenceComponentName="ic-huge")
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName="ic-big", DesiredRuntimeConfig={"CopyCount": 2}
    )
    assert wait_component(sagemaker, "ic-big")["RuntimeConfig"]["CurrentCopyCount"] == 2
    sagemaker.delete_inference_component(InferenceComponentName="ic-big")
    error = error_of(sagemaker.describe_inference_component, InferenceComponentName="ic-big")
    assert error["Error"]["Code"] == "ValidationException"


def test_bad_specifications_get_clear_errors(sagemaker: Any, host: str) -> None:
    base = {
        "InferenceComponentName": "ic-bad",
        "EndpointName": host,
        "VariantName": "AllTraffic",
        "RuntimeConfig": {"CopyCount": 1},
    }
    gpu = error_of(
        sagemaker.create_inference_component,
        **base,
        Specification={
            "Container": {"Image": ECHO_IMAGE},
            "ComputeResourceRequirements": {
                "MinMemoryRequiredInMb": 256,
                "NumberOfAcceleratorDevicesRequired": 1,
            },
        },
    )
    assert gpu["Error"]["Code"] == "ValidationException"
    assert "NumberOfAcceleratorDevicesRequired" in gpu["Error"]["Message"]
    assert "CPU" in gpu["Error"]["Message"]
    neither = error_of(
        sagemaker.create_inference_component,
        **base,
        Specification={"ComputeResourceRequirements": {"MinMemoryRequiredInMb": 256}},
    )
    assert "exactly one of ModelName" in neither["Error"]["Message"]
    wrong_variant = error_of(
        sagemaker.create_inference_component,
        **{**base, "VariantName": "Other"},
        Specification={
            "Container": {"Image": ECHO_IMAGE},
            "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 256},
        },
    )
    assert "VariantName must be one of [AllTraffic]" in wrong_variant["Error"]["Message"]


def test_a_component_of_a_stored_model(sagemaker: Any, runtime: Any, host: str) -> None:
    sagemaker.create_model(
        ModelName="ic-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer=echo_container(None, ECHO_NAME="from-model"),
    )
    sagemaker.create_inference_component(
        InferenceComponentName="ic-of-model",
        EndpointName=host,
        VariantName="AllTraffic",
        Specification={
            "ModelName": "ic-model",
            "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 256},
        },
        RuntimeConfig={"CopyCount": 1},
    )
    found = wait_component(sagemaker, "ic-of-model")
    assert found["InferenceComponentStatus"] == "InService", found
    assert found["Specification"]["ModelName"] == "ic-model"
    assert invoke(runtime, host, "ic-of-model").startswith("from-model:")


def test_an_endpoint_with_components_is_deleted_after_them(sagemaker: Any) -> None:
    components_endpoint(sagemaker, "ic-delete")
    create_component(sagemaker, "ic-delete-me", "ic-delete")
    error = error_of(sagemaker.delete_endpoint, EndpointName="ic-delete")
    assert "delete them first" in error["Error"]["Message"]
    sagemaker.delete_inference_component(InferenceComponentName="ic-delete-me")
    sagemaker.delete_endpoint(EndpointName="ic-delete")


def test_a_model_endpoint_refuses_the_component_header(sagemaker: Any, runtime: Any) -> None:
    deploy(sagemaker, "ic-plain", [echo_container(None)])
    error = error_of(
        runtime.invoke_endpoint, EndpointName="ic-plain", Body=b"x", InferenceComponentName="a"
    )
    assert "does not host inference components" in error["Error"]["Message"]
    component = error_of(
        sagemaker.create_inference_component,
        InferenceComponentName="ic-on-plain",
        EndpointName="ic-plain",
        Specification={
            "Container": {"Image": ECHO_IMAGE},
            "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 256},
        },
        RuntimeConfig={"CopyCount": 1},
    )
    assert "does not host inference components" in component["Error"]["Message"]


def test_managed_instance_scaling_adds_and_removes_instances(sagemaker: Any) -> None:
    components_endpoint(
        sagemaker,
        "ic-managed",
        instances=1,
        ManagedInstanceScaling={"Status": "ENABLED", "MinInstanceCount": 1, "MaxInstanceCount": 3},
    )
    # Each ml.m5.large instance has 2 vCPUs: three copies of 1.5 need three instances.
    found = create_component(sagemaker, "ic-managed-a", "ic-managed", copies=3, cpus=1.5)
    assert found["RuntimeConfig"]["CurrentCopyCount"] == 3, found
    variant = sagemaker.describe_endpoint(EndpointName="ic-managed")["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == 3
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName="ic-managed-a", DesiredRuntimeConfig={"CopyCount": 1}
    )
    wait_component(sagemaker, "ic-managed-a")
    variant = sagemaker.describe_endpoint(EndpointName="ic-managed")["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == 1


def test_what_components_cannot_do_here_is_refused(sagemaker: Any, host: str) -> None:
    scale_in = error_of(
        sagemaker.create_endpoint_config,
        EndpointConfigName="ic-scale-in",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "ManagedInstanceScaling": {
                    "Status": "ENABLED",
                    "MinInstanceCount": 1,
                    "MaxInstanceCount": 2,
                    "ScaleInPolicy": {"Strategy": "IDLE_RELEASE"},
                },
            }
        ],
    )
    assert scale_in["Error"]["Message"] == (
        "polyhost does not support ProductionVariants.1.ManagedInstanceScaling.ScaleInPolicy "
        "(scale-in policies: an instance left empty is removed at once) yet: remove it from "
        "CreateEndpointConfig, or see docs/unsupported.md"
    )
    rolling = error_of(
        sagemaker.update_inference_component,
        InferenceComponentName="ic-first",
        RuntimeConfig={"CopyCount": 1},
        DeploymentConfig={
            "RollingUpdatePolicy": {
                "MaximumBatchSize": {"Type": "COPY_COUNT", "Value": 1},
                "WaitIntervalInSeconds": 0,
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
        },
    )
    assert "DeploymentConfig.AutoRollbackConfiguration" in rolling["Error"]["Message"]


def test_copies_survive_a_kill9_of_the_server(start_own_server: Any) -> None:
    """A restarted server brings the copies back as it does an endpoint's containers (the
    process backend stops what its killed predecessor left and starts them again), and the
    old copies are gone."""
    own = start_own_server()
    sagemaker = own.sagemaker()
    components_endpoint(sagemaker, "ic-survivor")
    create_component(sagemaker, "ic-survivor-a", "ic-survivor", copies=2)
    runtime = own.runtime()
    before = {
        runtime.invoke_endpoint(
            EndpointName="ic-survivor",
            InferenceComponentName="ic-survivor-a",
            Body=b"x",
            CustomAttributes="whoami=1",
        )["Body"].read()
        for _ in range(6)
    }
    own.kill9()
    own.restart()
    sagemaker, runtime = own.sagemaker(), own.runtime()
    deadline = time.monotonic() + 30
    while True:  # copies are adopted in the background; meanwhile a retryable 503
        try:
            answer = invoke(runtime, "ic-survivor", "ic-survivor-a")
            break
        except botocore.exceptions.ClientError as error:
            assert error.response["Error"]["Code"] == "ServiceUnavailable", error.response
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert answer.startswith("ic-survivor-a:")
    after = {
        runtime.invoke_endpoint(
            EndpointName="ic-survivor",
            InferenceComponentName="ic-survivor-a",
            Body=b"x",
            CustomAttributes="whoami=1",
        )["Body"].read()
        for _ in range(6)
    }
    assert len(after) == 2
    old_ports = [int(answer.split(b"@")[1]) for answer in before - after]

    def old_copies_gone() -> bool:
        for port in old_ports:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return False
        return True

    eventually(old_copies_gone, "the killed server's copies to be stopped")
    found = sagemaker.describe_inference_component(InferenceComponentName="ic-survivor-a")
    assert found["InferenceComponentStatus"] == "InService"
    assert found["RuntimeConfig"]["CurrentCopyCount"] == 2


AUTH_KEYS = {
    "admin": ("AKIAICADMIN000000001", "admin-secret-0000000000000000000000000000"),
    "team-a": ("AKIAICTEAMA000000001", "team-a-secret-000000000000000000000000000"),
}


def _policies(region: str, account: str) -> dict[str, Any]:
    arn = f"arn:aws:sagemaker:{region}:{account}"
    return {
        "admin": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        },
        # team-a invokes only its own component, and manages only components named team-a-*.
        "team-a": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sagemaker:InvokeEndpoint",
                    "Resource": f"{arn}:endpoint/ic-auth",
                    "Condition": {"StringEquals": {"sagemaker:InferenceComponentName": "team-a"}},
                },
                {
                    "Effect": "Allow",
                    "Action": "sagemaker:*InferenceComponent*",
                    "Resource": f"{arn}:inference-component/team-a*",
                },
            ],
        },
    }


def test_policies_scope_components_by_name_and_arn(start_own_server: Any, tmp_path: Any) -> None:
    policies = _policies(REGION, ACCOUNT)
    path = tmp_path / "principals.json"
    path.write_text(
        json.dumps(
            {
                "principals": [
                    {
                        "name": name,
                        "access_key_id": key,
                        "secret_access_key": secret,
                        "policies": [policies[name]],
                    }
                    for name, (key, secret) in AUTH_KEYS.items()
                ]
            }
        ),
        encoding="utf-8",
    )
    own = start_own_server("--auth-file", str(path), "--no-isolate")

    def client(service: str, who: str) -> Any:
        key, secret = AUTH_KEYS[who]
        make: Any = boto3.client
        return make(
            service,
            endpoint_url=own.url,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}),
        )

    admin = client("sagemaker", "admin")
    components_endpoint(admin, "ic-auth")
    team_a = client("sagemaker", "team-a")
    create_component(team_a, "team-a", "ic-auth")
    denied = error_of(
        team_a.create_inference_component,
        InferenceComponentName="team-b",
        EndpointName="ic-auth",
        Specification={
            "Container": {"Image": ECHO_IMAGE},
            "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 256},
        },
        RuntimeConfig={"CopyCount": 1},
    )
    assert denied["Error"]["Code"] == "AccessDeniedException"
    assert "inference-component/team-b" in denied["Error"]["Message"]
    create_component(admin, "team-b", "ic-auth")
    runtime = client("sagemaker-runtime", "team-a")
    assert invoke(runtime, "ic-auth", "team-a").startswith("team-a:")
    refused = error_of(
        runtime.invoke_endpoint, EndpointName="ic-auth", Body=b"x", InferenceComponentName="team-b"
    )
    assert refused["Error"]["Code"] == "AccessDeniedException", refused
    # The admin reaches team-b, so the refusal was the policy's.
    assert invoke(client("sagemaker-runtime", "admin"), "ic-auth", "team-b").startswith("team-b:")


def _component_statistics(server: Any, namespace: str, name: str, component: str) -> list[Any]:
    answer = server.cloudwatch().get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": "InferenceComponentName", "Value": component}],
        StartTime=datetime.now(UTC) - timedelta(minutes=5),
        EndTime=datetime.now(UTC) + timedelta(minutes=2),
        Period=60,
        Statistics=["Sum", "SampleCount", "Maximum"],
    )
    points: list[Any] = answer["Datapoints"]
    return points


def test_a_components_metrics_carry_its_name(
    server: Any, sagemaker: Any, runtime: Any, host: str
) -> None:
    create_component(sagemaker, "ic-metrics", host, cpus=0.25)
    for _ in range(5):
        invoke(runtime, host, "ic-metrics")
    create_component(sagemaker, "ic-empty", host, copies=0)
    for _ in range(2):
        error_of(
            runtime.invoke_endpoint, EndpointName=host, Body=b"x", InferenceComponentName="ic-empty"
        )
    invocations = eventually(
        lambda: _component_statistics(server, "AWS/SageMaker", "Invocations", "ic-metrics"),
        "the component's Invocations",
        30,
        0.5,
        until=lambda points: sum(p["Sum"] for p in points) >= 5,
    )
    assert sum(p["Sum"] for p in invocations) == 5
    latency = _component_statistics(server, "AWS/SageMaker", "ModelLatency", "ic-metrics")
    assert sum(p["SampleCount"] for p in latency) == 5
    cpu = _component_statistics(
        server, "/aws/sagemaker/InferenceComponents", "CPUUtilizationNormalized", "ic-metrics"
    )
    memory = _component_statistics(
        server, "/aws/sagemaker/InferenceComponents", "MemoryUtilizationNormalized", "ic-metrics"
    )
    assert cpu and memory
    assert 0 < max(p["Maximum"] for p in memory) < 100  # an echo copy uses less than 512 MiB
    failures = _component_statistics(
        server, "AWS/SageMaker", "NoCapacityInvocationFailures", "ic-empty"
    )
    assert sum(p["Sum"] for p in failures) == 2


def test_the_dashboards_api_shows_components_and_where_each_copy_runs(
    server: Any, sagemaker: Any, host: str
) -> None:
    create_component(sagemaker, "ic-dashboard", host, copies=2, cpus=0.25)

    def get(path: str) -> Any:
        with urllib.request.urlopen(server.admin_url + path, timeout=30) as answer:
            return json.loads(answer.read())

    endpoint = next(e for e in get("/api/endpoints")["endpoints"] if e["name"] == host)
    shown = next(c for c in endpoint["components"] if c["name"] == "ic-dashboard")
    assert shown == {
        "name": "ic-dashboard",
        "variant": "AllTraffic",
        "status": "InService",
        "desired_copies": 2,
        "current_copies": 2,
        "failure_reason": None,
    }
    copies = [c for c in get("/api/containers")["containers"] if c["hostname"] == "ic-dashboard"]
    assert {c["endpoint"] for c in copies} == {host}
    assert {c["component"] for c in copies} == {"ic-dashboard"}
    # Where each copy runs, as placement put it (the module's other components may have
    # filled an instance first): instances of the endpoint.
    placed = sorted(c["placed_on"] for c in copies)
    assert len(placed) == 2 and set(placed) <= {0, 1}, copies


def test_a_components_logs_are_its_own_log_group(
    server: Any, sagemaker: Any, runtime: Any, host: str
) -> None:
    create_component(sagemaker, "ic-logs", host, cpus=0.25)
    runtime.invoke_endpoint(
        EndpointName=host,
        InferenceComponentName="ic-logs",
        Body=b"x",
        CustomAttributes="say=hello from a copy",
    )
    logs = boto3.client(
        "logs",
        endpoint_url=server.url,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),
    )
    group = "/aws/sagemaker/InferenceComponents/ic-logs"
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/InferenceComponents/")
    assert group in {g["logGroupName"] for g in groups["logGroups"]}

    def said() -> list[str]:
        events = logs.filter_log_events(logGroupName=group, filterPattern='"hello from a copy"')
        return [e["message"] for e in events["events"]]

    (line,) = eventually(said, "the copy's log line", 20, 0.1)
    assert line.endswith("ic-logs: hello from a copy")


def test_a_component_keeps_its_tags(sagemaker: Any, host: str) -> None:
    sagemaker.create_inference_component(
        InferenceComponentName="ic-tagged",
        EndpointName=host,
        VariantName="AllTraffic",
        Specification=_echo_specification("ic-tagged"),
        RuntimeConfig={"CopyCount": 0},
        Tags=[{"Key": "team", "Value": "vision"}],
    )
    arn = sagemaker.describe_inference_component(InferenceComponentName="ic-tagged")[
        "InferenceComponentArn"
    ]
    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:inference-component/ic-tagged"
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "stage", "Value": "test"}])
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    assert tags == {"team": "vision", "stage": "test"}
    sagemaker.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "stage", "Value": "test"}]
