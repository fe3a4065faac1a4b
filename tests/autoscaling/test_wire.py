"""Application Auto Scaling on a real server through boto3: every operation's happy path, its
errors (each a 400 with the code and a message saying what to fix) and pagination; a restart
keeps targets and policies; the unmodified `aws` CLI reads the targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from tests.control.test_components import components_endpoint, create_component
from tests.support.endpoints import deploy, echo_container
from tests.support.server import PolyhostProcess, ServerFactory
from tests.support.waiting import eventually

NS = "sagemaker"
COPIES = "sagemaker:inference-component:DesiredCopyCount"
INSTANCES = "sagemaker:variant:DesiredInstanceCount"
CONCURRENCY = "SageMakerVariantProvisionedConcurrencyUtilization"


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    return start_server("--alarm-evaluation-interval", "1")


@pytest.fixture(scope="module")
def aas(server: PolyhostProcess) -> Any:
    return server.autoscaling()


@pytest.fixture(scope="module")
def components(sagemaker: Any) -> list[str]:
    components_endpoint(sagemaker, "as-host", instances=1, instance_type="ml.m5.xlarge")
    for name in ("as-a", "as-b", "as-c"):
        create_component(sagemaker, name, "as-host", copies=1, cpus=0.25, memory_mb=128)
    return ["as-a", "as-b", "as-c"]


def error(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def register(aas: Any, name: str, low: int = 1, high: int = 2, **extra: Any) -> Any:
    return aas.register_scalable_target(
        ServiceNamespace=NS, ResourceId=f"inference-component/{name}",
        ScalableDimension=COPIES, MinCapacity=low, MaxCapacity=high, **extra,
    )  # fmt: skip


def test_targets_register_describe_page_and_deregister(aas: Any, components: list[str]) -> None:
    arns = [register(aas, name)["ScalableTargetARN"] for name in components]
    assert all(a.startswith("arn:aws:application-autoscaling:us-east-1:123456789012:"
                            "scalable-target/") for a in arns)  # fmt: skip
    first = aas.describe_scalable_targets(ServiceNamespace=NS, MaxResults=2)
    assert len(first["ScalableTargets"]) == 2 and first["NextToken"]
    rest = aas.describe_scalable_targets(ServiceNamespace=NS, NextToken=first["NextToken"])
    seen = [t["ResourceId"] for t in first["ScalableTargets"] + rest["ScalableTargets"]]
    assert sorted(seen) == [f"inference-component/{n}" for n in components]
    only = aas.describe_scalable_targets(
        ServiceNamespace=NS, ResourceIds=["inference-component/as-b"]
    )["ScalableTargets"]
    assert [(t["MinCapacity"], t["MaxCapacity"], t["ScalableTargetARN"]) for t in only] == [
        (1, 2, arns[1])
    ]
    # Updating changes only what is given.
    aas.register_scalable_target(
        ServiceNamespace=NS, ResourceId="inference-component/as-b", ScalableDimension=COPIES,
        MaxCapacity=3,
    )  # fmt: skip
    again = aas.describe_scalable_targets(
        ServiceNamespace=NS, ResourceIds=["inference-component/as-b"]
    )
    assert (
        again["ScalableTargets"][0]["MinCapacity"],
        again["ScalableTargets"][0]["MaxCapacity"],
    ) == (1, 3)
    aas.deregister_scalable_target(
        ServiceNamespace=NS, ResourceId="inference-component/as-c", ScalableDimension=COPIES
    )
    code, message, status = error(
        aas.deregister_scalable_target, ServiceNamespace=NS,
        ResourceId="inference-component/as-c", ScalableDimension=COPIES,
    )  # fmt: skip
    assert (code, status) == ("ObjectNotFoundException", 400) and "as-c" in message


def test_register_refusals_say_what_to_fix(aas: Any, components: list[str]) -> None:
    cases = [
        ({"ServiceNamespace": "ecs", "ResourceId": "service/x/y",
          "ScalableDimension": "ecs:service:DesiredCount"}, "scales SageMaker resources"),
        ({"ResourceId": "inference-component/as-a", "ScalableDimension": INSTANCES},
         "use sagemaker:inference-component:DesiredCopyCount"),
        ({"ResourceId": "endpoint/as-host", "ScalableDimension": INSTANCES},
         "endpoint/<EndpointName>/variant/<VariantName>"),
        ({"ResourceId": "inference-component/nope", "ScalableDimension": COPIES},
         "cannot be scaled"),
        ({"ResourceId": "endpoint/as-host/variant/Nope", "ScalableDimension": INSTANCES},
         "no production variant Nope"),
        ({"ResourceId": "endpoint/as-host/variant/AllTraffic", "ScalableDimension": INSTANCES,
          "MinCapacity": 0, "MaxCapacity": 2}, "at least 1"),
        ({"ResourceId": "inference-component/as-a", "ScalableDimension": COPIES,
          "MinCapacity": 3, "MaxCapacity": 2}, "must not be greater"),
        ({"ResourceId": "inference-component/new", "ScalableDimension": COPIES},
         "MinCapacity and MaxCapacity must be given"),
    ]  # fmt: skip
    for params, says in cases:
        full = {"ServiceNamespace": NS, "MinCapacity": 1, "MaxCapacity": 2, **params}
        if "must be given" in says:
            del full["MinCapacity"], full["MaxCapacity"]
        code, message, status = error(aas.register_scalable_target, **full)
        assert (code, status) == ("ValidationException", 400), (params, message)
        assert says in message, (params, message)


def test_tags_on_a_target(aas: Any, components: list[str]) -> None:
    arn = register(aas, "as-a")["ScalableTargetARN"]
    aas.tag_resource(ResourceARN=arn, Tags={"team": "ml", "env": "dev"})
    aas.untag_resource(ResourceARN=arn, TagKeys=["env"])
    assert aas.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"team": "ml"}
    code, message, _ = error(
        aas.list_tags_for_resource,
        ResourceARN="arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/x",
    )
    assert code == "ResourceNotFoundException" and "ScalableTargetARN" in message


def test_policies_put_describe_page_and_delete(
    aas: Any, server: PolyhostProcess, components: list[str]
) -> None:
    register(aas, "as-a")
    tracked = aas.put_scaling_policy(
        PolicyName="track", ServiceNamespace=NS, ResourceId="inference-component/as-a",
        ScalableDimension=COPIES, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 50.0, "ScaleInCooldown": 60,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"},
        },
    )  # fmt: skip
    assert ":scalingPolicy:" in tracked["PolicyARN"]
    assert tracked["PolicyARN"].endswith(
        ":resource/sagemaker/inference-component/as-a:policyName/track"
    )
    names = [a["AlarmName"] for a in tracked["Alarms"]]
    assert names[0].startswith("TargetTracking-inference-component/as-a-AlarmHigh-")
    assert names[1].startswith("TargetTracking-inference-component/as-a-AlarmLow-")
    alarms = server.cloudwatch().describe_alarms(AlarmNames=names)["MetricAlarms"]
    by_name = {a["AlarmName"]: a for a in alarms}
    high, low = by_name[names[0]], by_name[names[1]]
    assert (high["MetricName"], high["Threshold"], high["EvaluationPeriods"]) == (
        "InvocationsPerCopy", 50.0, 3)  # fmt: skip
    assert (low["ComparisonOperator"], low["Threshold"], low["EvaluationPeriods"]) == (
        "LessThanThreshold", 45.0, 15)  # fmt: skip
    assert high["AlarmActions"] == [tracked["PolicyARN"]]
    stepped = aas.put_scaling_policy(
        PolicyName="step", ServiceNamespace=NS, ResourceId="inference-component/as-a",
        ScalableDimension=COPIES, PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
        },
    )  # fmt: skip
    server.cloudwatch().put_metric_alarm(
        AlarmName="mine", Namespace="AWS/SageMaker", MetricName="NoCapacityInvocationFailures",
        Dimensions=[{"Name": "InferenceComponentName", "Value": "as-a"}], Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=[stepped["PolicyARN"]],
    )  # fmt: skip
    page = aas.describe_scaling_policies(ServiceNamespace=NS, MaxResults=1)
    assert len(page["ScalingPolicies"]) == 1 and page["NextToken"]
    both = (
        page["ScalingPolicies"]
        + aas.describe_scaling_policies(ServiceNamespace=NS, NextToken=page["NextToken"])[
            "ScalingPolicies"
        ]
    )
    shown = {p["PolicyName"]: p for p in both}
    assert set(shown) == {"step", "track"}
    assert [a["AlarmName"] for a in shown["step"]["Alarms"]] == ["mine"]
    assert shown["track"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 50.0
    aas.delete_scaling_policy(
        PolicyName="track", ServiceNamespace=NS, ResourceId="inference-component/as-a",
        ScalableDimension=COPIES,
    )  # fmt: skip
    assert server.cloudwatch().describe_alarms(AlarmNames=names)["MetricAlarms"] == []
    code, _, _ = error(
        aas.delete_scaling_policy, PolicyName="track", ServiceNamespace=NS,
        ResourceId="inference-component/as-a", ScalableDimension=COPIES,
    )  # fmt: skip
    assert code == "ObjectNotFoundException"
    server.cloudwatch().delete_alarms(AlarmNames=["mine"])


def test_policy_refusals(aas: Any, components: list[str]) -> None:
    base = {"ServiceNamespace": NS, "ResourceId": "inference-component/as-b",
            "ScalableDimension": COPIES, "PolicyName": "p"}  # fmt: skip
    register(aas, "as-b")
    tracking = "TargetTrackingScalingPolicyConfiguration"
    math = {
        "TargetValue": 1.0,
        "CustomizedMetricSpecification": {"Metrics": [{"Id": "m1", "Expression": "1"}]},
    }
    concurrency = {
        "TargetValue": 1.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": CONCURRENCY},
    }
    one_step = {
        "AdjustmentType": "ChangeInCapacity",
        "StepAdjustments": [{"ScalingAdjustment": 1}],
    }
    cases = [
        ({"PolicyType": "PredictiveScaling"}, "ValidationException", "PredictiveScaling"),
        ({"PolicyType": "TargetTrackingScaling", tracking: math},
         "ValidationException", "metric math"),
        ({"PolicyType": "TargetTrackingScaling", tracking: concurrency},
         "ValidationException", "not recorded"),
        ({"PolicyType": "StepScaling"}, "ValidationException",
         "needs StepScalingPolicyConfiguration"),
        ({"PolicyType": "StepScaling", "ResourceId": "inference-component/as-c",
          "StepScalingPolicyConfiguration": one_step}, "ObjectNotFoundException",
         "RegisterScalableTarget first"),
        ({"PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {
            "AdjustmentType": "Sideways", "StepAdjustments": [{"ScalingAdjustment": 1}]}},
         "ValidationException", "must be one of ChangeInCapacity"),
    ]  # fmt: skip
    for params, wanted, says in cases:
        code, message, status = error(aas.put_scaling_policy, **{**base, **params})
        assert (code, status) == (wanted, 400) and says in message, (params, message)


def test_scheduled_actions_run_and_are_activities(
    aas: Any, sagemaker: Any, components: list[str]
) -> None:
    register(aas, "as-b", low=1, high=2)
    aas.put_scheduled_action(
        ServiceNamespace=NS, ScheduledActionName="later", ResourceId="inference-component/as-b",
        ScalableDimension=COPIES, Schedule="cron(0 12 ? * MON-FRI *)", Timezone="Europe/Paris",
        ScalableTargetAction={"MinCapacity": 1, "MaxCapacity": 2},
    )  # fmt: skip
    aas.put_scheduled_action(
        ServiceNamespace=NS, ScheduledActionName="now", ResourceId="inference-component/as-b",
        ScalableDimension=COPIES, Schedule="rate(1 minute)",
        StartTime=datetime.now(UTC) + timedelta(seconds=2),
        ScalableTargetAction={"MinCapacity": 2, "MaxCapacity": 2},
    )  # fmt: skip
    listed = aas.describe_scheduled_actions(ServiceNamespace=NS, MaxResults=1)
    assert len(listed["ScheduledActions"]) == 1 and listed["NextToken"]

    def scaled() -> bool:
        found = sagemaker.describe_inference_component(InferenceComponentName="as-b")
        return found["RuntimeConfig"]["CurrentCopyCount"] == 2

    eventually(scaled, "as-b at 2 copies", timeout=20)
    target = aas.describe_scalable_targets(
        ServiceNamespace=NS, ResourceIds=["inference-component/as-b"]
    )
    assert target["ScalableTargets"][0]["MinCapacity"] == 2

    def recorded() -> list[Any]:
        acts = aas.describe_scaling_activities(
            ServiceNamespace=NS, ResourceId="inference-component/as-b"
        )["ScalingActivities"]
        return [a for a in acts if a["Cause"] == "scheduled action name now was triggered"
                and a["StatusCode"] == "Successful"]  # fmt: skip

    activity = eventually(recorded, "the scheduled activity", timeout=20)[-1]
    assert activity["Description"] == "Setting desired copy count to 2."
    aas.delete_scheduled_action(
        ServiceNamespace=NS, ScheduledActionName="now", ResourceId="inference-component/as-b",
        ScalableDimension=COPIES,
    )  # fmt: skip
    for params, says in [
        ({"Schedule": "daily"}, "is not one polyhost reads"),
        ({"Schedule": "rate(5 minutes)", "Timezone": "Nowhere/Else"}, "IANA"),
        ({"Schedule": "rate(5 minutes)", "ScalableTargetAction": {}}, "needs MinCapacity"),
    ]:
        full = {"ServiceNamespace": NS, "ScheduledActionName": "bad",
                "ResourceId": "inference-component/as-b", "ScalableDimension": COPIES,
                "ScalableTargetAction": {"MaxCapacity": 1}, **params}  # fmt: skip
        code, message, _ = error(aas.put_scheduled_action, **full)
        assert code == "ValidationException" and says in message, (params, message)


def test_bad_tokens_and_page_sizes(aas: Any) -> None:
    code, message, _ = error(aas.describe_scalable_targets, ServiceNamespace=NS, NextToken="x")
    assert code == "InvalidNextTokenException" and "NextToken" in message
    code, message, _ = error(aas.describe_scaling_activities, ServiceNamespace=NS, MaxResults=51)
    assert code == "ValidationException" and "1 to 50" in message


def test_the_aws_cli_reads_the_targets(server: PolyhostProcess, components: list[str]) -> None:
    aws = Path(sys.executable).parent / "aws"
    if not aws.exists():
        pytest.skip("the aws CLI is not installed")
    done = subprocess.run(
        [str(aws), "application-autoscaling", "describe-scalable-targets",
         "--service-namespace", "sagemaker", "--endpoint-url", server.url, "--output", "json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "AWS_PAGER": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ids = {t["ResourceId"] for t in json.loads(done.stdout)["ScalableTargets"]}
    assert "inference-component/as-a" in ids


def test_a_restart_keeps_targets_and_policies(
    server: PolyhostProcess, aas: Any, components: list[str]
) -> None:
    register(aas, "as-a")
    aas.put_scaling_policy(
        PolicyName="kept", ServiceNamespace=NS, ResourceId="inference-component/as-a",
        ScalableDimension=COPIES, PolicyType="StepScaling",
        StepScalingPolicyConfiguration={"AdjustmentType": "ExactCapacity",
                                        "StepAdjustments": [{"ScalingAdjustment": 1}]},
    )  # fmt: skip
    before = aas.describe_scalable_targets(ServiceNamespace=NS)["ScalableTargets"]
    # The module's earlier tests scaled components: their activities are kept too (compared
    # by id: one still in progress at the stop may end differently after the restart).
    eventually(
        lambda: aas.describe_scaling_activities(ServiceNamespace=NS)["ScalingActivities"],
        "an activity of the earlier tests to be recorded",
    )
    activities = _activity_ids(aas)
    server.stop()
    server.start()
    fresh = server.autoscaling()
    assert fresh.describe_scalable_targets(ServiceNamespace=NS)["ScalableTargets"] == before
    names = {
        p["PolicyName"]
        for p in fresh.describe_scaling_policies(ServiceNamespace=NS)["ScalingPolicies"]
    }
    assert "kept" in names
    assert activities <= _activity_ids(fresh)


def _activity_ids(aas: Any) -> set[str]:
    """Every scaling activity's id, over all pages."""
    found: set[str] = set()
    token: dict[str, str] = {}
    while True:
        page = aas.describe_scaling_activities(ServiceNamespace=NS, **token)
        found.update(a["ActivityId"] for a in page["ScalingActivities"])
        if not page.get("NextToken"):
            return found
        token = {"NextToken": page["NextToken"]}


def test_a_variant_is_scaled_through_update_endpoint_weights_and_capacities(
    aas: Any, sagemaker: Any
) -> None:
    deploy(sagemaker, "as-variant", [echo_container(None)], instances=1)
    resource = "endpoint/as-variant/variant/AllTraffic"
    aas.register_scalable_target(
        ServiceNamespace=NS, ResourceId=resource, ScalableDimension=INSTANCES,
        MinCapacity=2, MaxCapacity=3,
    )  # fmt: skip

    def instances() -> int:
        found = sagemaker.describe_endpoint(EndpointName="as-variant")
        variant = found["ProductionVariants"][0]
        ready = found["EndpointStatus"] == "InService"
        return int(variant.get("CurrentInstanceCount", 0)) if ready else -1

    eventually(lambda: instances() == 2, "the variant at 2 instances", timeout=30)
    found = aas.describe_scaling_activities(ServiceNamespace=NS, ResourceId=resource)
    activity = found["ScalingActivities"][0]
    assert activity["Description"] == "Setting desired instance count to 2."
    assert activity["Cause"] == "minimum capacity was set to 2"
