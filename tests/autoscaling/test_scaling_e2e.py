"""Scaling end to end on a real server under `--autoscaling-time-scale 6` (an evaluated minute
lasts 10 s) with alarms evaluated every second: real invocations drive a target tracking
policy's AlarmHigh and the component scales out; its AlarmLow (15 periods: 150 s even at this
scale) is put in ALARM with SetAlarmState, carrying the datapoints as an evaluation would, and
the component scales in (AlarmHigh's actions turned off first, since it would scale out again
on its stale periods); and AWS's scale-from-zero recipe brings a copy back to a component
at 0 copies from its NoCapacityInvocationFailures; and a model endpoint's variant scales out
on its recorded ConcurrentRequestsPerModel."""

from __future__ import annotations

import json
import threading
from typing import Any

import botocore.exceptions
import pytest

from tests.control.test_components import components_endpoint, create_component, wait_component
from tests.support.endpoints import deploy
from tests.support.server import ECHO_IMAGE, PolyhostProcess, ServerFactory
from tests.support.waiting import eventually

NS = "sagemaker"
COPIES = "sagemaker:inference-component:DesiredCopyCount"
INSTANCES = "sagemaker:variant:DesiredInstanceCount"
CONCURRENCY = "SageMakerVariantConcurrentRequestsPerModelHighResolution"


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    return start_server("--autoscaling-time-scale", "6", "--alarm-evaluation-interval", "1")


@pytest.fixture(scope="module")
def host(sagemaker: Any) -> str:
    components_endpoint(sagemaker, "e2e-host", instances=1, instance_type="ml.m5.xlarge")
    return "e2e-host"


def copies(sagemaker: Any, name: str) -> int:
    found = sagemaker.describe_inference_component(InferenceComponentName=name)
    count: int = found["RuntimeConfig"]["CurrentCopyCount"]
    return count if found["InferenceComponentStatus"] == "InService" else -1


def test_target_tracking_scales_out_on_traffic_and_in_on_its_low_alarm(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, host: str
) -> None:
    create_component(sagemaker, "tracked", host, copies=1, cpus=0.25, memory_mb=128)
    aas = server.autoscaling()
    resource = "inference-component/tracked"
    aas.register_scalable_target(
        ServiceNamespace=NS, ResourceId=resource, ScalableDimension=COPIES,
        MinCapacity=1, MaxCapacity=2,
    )  # fmt: skip
    policy = aas.put_scaling_policy(
        PolicyName="per-copy", ServiceNamespace=NS, ResourceId=resource,
        ScalableDimension=COPIES, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 5.0, "ScaleOutCooldown": 0, "ScaleInCooldown": 0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"},
        },
    )  # fmt: skip
    high = next(a["AlarmName"] for a in policy["Alarms"] if "-AlarmHigh-" in a["AlarmName"])
    low = next(a["AlarmName"] for a in policy["Alarms"] if "-AlarmLow-" in a["AlarmName"])
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            runtime.invoke_endpoint(EndpointName=host, InferenceComponentName="tracked", Body=b"x")
            stop.wait(0.1)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        eventually(lambda: copies(sagemaker, "tracked") == 2, "a scale-out to 2", timeout=60)
    finally:
        stop.set()
        worker.join()
    activities = aas.describe_scaling_activities(ServiceNamespace=NS, ResourceId=resource)
    out = activities["ScalingActivities"][0]
    assert out["Description"] == "Setting desired copy count to 2."
    assert (
        "-AlarmHigh-" in out["Cause"] and "in state ALARM triggered policy per-copy" in out["Cause"]
    )
    # AlarmHigh stays in ALARM until its three periods pass, calling the policy again each
    # period; its actions are turned off so the scale-in below is not undone by stale data.
    server.cloudwatch().disable_alarm_actions(AlarmNames=[high])
    # AlarmLow as an evaluation would put it: 15 datapoints of 1 invocation per copy.
    server.cloudwatch().set_alarm_state(
        AlarmName=low, StateValue="ALARM", StateReason="Threshold Crossed: test",
        StateReasonData=json.dumps({"version": "1.0", "recentDatapoints": [1.0] * 15}),
    )  # fmt: skip
    eventually(lambda: copies(sagemaker, "tracked") == 1, "a scale-in to 1", timeout=30)

    def newest() -> dict[str, Any]:
        found = aas.describe_scaling_activities(ServiceNamespace=NS, ResourceId=resource)
        first: dict[str, Any] = found["ScalingActivities"][0]
        return first

    scaled_in = eventually(
        newest, "the scale-in's end", timeout=20, until=lambda a: a["StatusCode"] != "InProgress"
    )
    assert scaled_in["StatusCode"] == "Successful", scaled_in
    assert scaled_in["Description"] == "Setting desired copy count to 1."
    assert low in scaled_in["Cause"] and "EndTime" in scaled_in


def test_scale_from_zero_with_a_step_policy_on_no_capacity_failures(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, host: str
) -> None:
    create_component(sagemaker, "sleepy", host, copies=1, cpus=0.25, memory_mb=128)
    aas = server.autoscaling()
    resource = "inference-component/sleepy"
    aas.register_scalable_target(
        ServiceNamespace=NS, ResourceId=resource, ScalableDimension=COPIES,
        MinCapacity=0, MaxCapacity=2,
    )  # fmt: skip
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName="sleepy", DesiredRuntimeConfig={"CopyCount": 0}
    )
    wait_component(sagemaker, "sleepy")
    assert copies(sagemaker, "sleepy") == 0
    policy = aas.put_scaling_policy(
        PolicyName="wake", ServiceNamespace=NS, ResourceId=resource, ScalableDimension=COPIES,
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Maximum",
            "Cooldown": 60,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
        },
    )  # fmt: skip
    server.cloudwatch().put_metric_alarm(
        AlarmName="sleepy-woken", Namespace="AWS/SageMaker",
        MetricName="NoCapacityInvocationFailures",
        Dimensions=[{"Name": "InferenceComponentName", "Value": "sleepy"}], Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmActions=[policy["PolicyARN"]],
    )  # fmt: skip
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        runtime.invoke_endpoint(EndpointName=host, InferenceComponentName="sleepy", Body=b"x")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    eventually(lambda: copies(sagemaker, "sleepy") == 1, "a copy back", timeout=45)
    answer = runtime.invoke_endpoint(EndpointName=host, InferenceComponentName="sleepy", Body=b"x")
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    found = aas.describe_scaling_activities(ServiceNamespace=NS, ResourceId=resource)
    woke = found["ScalingActivities"][0]
    assert woke["Description"] == "Setting desired copy count to 1."
    assert woke["Cause"] == "monitor alarm sleepy-woken in state ALARM triggered policy wake"


def test_a_variant_scales_out_on_its_concurrent_requests(
    server: PolyhostProcess, sagemaker: Any, runtime: Any
) -> None:
    """SageMakerVariantConcurrentRequestsPerModelHighResolution on a model endpoint: four
    callers each holding a 0.2 s request keep about four requests in its one instance, above
    the target of 1, so AlarmHigh (three 10-second periods) adds the second instance through
    UpdateEndpointWeightsAndCapacities."""
    assert deploy(sagemaker, "e2e-conc", [{"Image": ECHO_IMAGE}])["EndpointStatus"] == "InService"
    aas = server.autoscaling()
    resource = "endpoint/e2e-conc/variant/AllTraffic"
    aas.register_scalable_target(
        ServiceNamespace=NS, ResourceId=resource, ScalableDimension=INSTANCES,
        MinCapacity=1, MaxCapacity=2,
    )  # fmt: skip
    policy = aas.put_scaling_policy(
        PolicyName="concurrency", ServiceNamespace=NS, ResourceId=resource,
        ScalableDimension=INSTANCES, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 1.0, "ScaleOutCooldown": 0, "DisableScaleIn": True,
            "PredefinedMetricSpecification": {"PredefinedMetricType": CONCURRENCY},
        },
    )  # fmt: skip
    (high,) = [a["AlarmName"] for a in policy["Alarms"]]  # no AlarmLow with DisableScaleIn
    assert "-AlarmHigh-" in high
    alarm = server.cloudwatch().describe_alarms(AlarmNames=[high])["MetricAlarms"][0]
    assert (alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == (
        "ConcurrentRequestsPerModel", "Average", 10,
    )  # fmt: skip
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            runtime.invoke_endpoint(
                EndpointName="e2e-conc", Body=b"x", CustomAttributes="sleep=0.2"
            )

    workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        eventually(lambda: instances(sagemaker, "e2e-conc") == 2, "a scale-out to 2", timeout=90)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    found = aas.describe_scaling_activities(ServiceNamespace=NS, ResourceId=resource)
    newest = found["ScalingActivities"][0]
    assert newest["Description"] == "Setting desired instance count to 2.", newest
    assert high in newest["Cause"]


def instances(sagemaker: Any, name: str) -> int:
    found = sagemaker.describe_endpoint(EndpointName=name)
    if found["EndpointStatus"] != "InService":
        return -1
    count: int = found["ProductionVariants"][0]["CurrentInstanceCount"]
    return count
