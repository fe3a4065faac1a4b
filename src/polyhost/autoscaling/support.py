"""What Application Auto Scaling's operations do with each member of their input.

The table every served operation's members are classified in (docs/supported-members.md is
rendered from it, and a test walks botocore's model so a member added there fails until it is
classified here): honoured, or refused naming the feature. The three refusals the operations
word themselves (predictive scaling, metric math, ResourceLabel) say what to use instead in
the operation's own message; nothing else is accepted that is not acted on.
"""

from __future__ import annotations

from polyhost.awsmodel.support import OperationTable, honoured, refused

_SCOPE = {
    "ServiceNamespace": honoured("sagemaker, the namespace polyhost's resources are in"),
    "ResourceId": honoured("endpoint/<endpoint>/variant/<variant> or inference-component/<name>"),
    "ScalableDimension": honoured(
        "sagemaker:variant:DesiredInstanceCount or "
        "sagemaker:inference-component:DesiredCopyCount, to match the ResourceId"
    ),
}
_PAGES = {
    "MaxResults": honoured("1 to 50 items a page"),
    "NextToken": honoured("continues the listing where the previous page ended"),
}
_TRACKING = "TargetTrackingScalingPolicyConfiguration"
_CUSTOM = f"{_TRACKING}.CustomizedMetricSpecification"
_STEP = "StepScalingPolicyConfiguration"

SUPPORT: dict[str, OperationTable] = {
    "RegisterScalableTarget": {
        **_SCOPE,
        "MinCapacity": honoured("the least capacity (0 allowed for inference components)"),
        "MaxCapacity": honoured("the most capacity"),
        "RoleARN": honoured(
            "kept and shown by DescribeScalableTargets; scaling acts through the control "
            "plane with the server's rights, as the service-linked role does on AWS"
        ),
        "SuspendedState": honoured("which kinds of scaling are suspended"),
        "SuspendedState.DynamicScalingInSuspended": honoured("no policy scales in"),
        "SuspendedState.DynamicScalingOutSuspended": honoured("no policy scales out"),
        "SuspendedState.ScheduledScalingSuspended": honoured("no scheduled action runs"),
        "Tags": honoured("the target's tags (ListTagsForResource)"),
    },
    "DeregisterScalableTarget": {**_SCOPE},
    "DescribeScalableTargets": {
        "ServiceNamespace": _SCOPE["ServiceNamespace"],
        "ScalableDimension": _SCOPE["ScalableDimension"],
        "ResourceIds": honoured("only these resources"),
        **_PAGES,
    },
    "PutScalingPolicy": {
        "PolicyName": honoured("the policy's name, unique per target"),
        **_SCOPE,
        "PolicyType": honoured("TargetTrackingScaling or StepScaling"),
        _STEP: honoured("a step policy, run by alarms whose actions name it"),
        f"{_STEP}.AdjustmentType": honoured(
            "ChangeInCapacity, PercentChangeInCapacity or ExactCapacity"
        ),
        f"{_STEP}.StepAdjustments": honoured("the steps, by the breach's size"),
        f"{_STEP}.StepAdjustments[].MetricIntervalLowerBound": honoured(
            "the step's lower bound, relative to the alarm's threshold"
        ),
        f"{_STEP}.StepAdjustments[].MetricIntervalUpperBound": honoured(
            "the step's upper bound, relative to the alarm's threshold"
        ),
        f"{_STEP}.StepAdjustments[].ScalingAdjustment": honoured("the change the step makes"),
        f"{_STEP}.MinAdjustmentMagnitude": honoured(
            "the least change of a PercentChangeInCapacity step"
        ),
        f"{_STEP}.Cooldown": honoured("seconds (evaluated time) before the next step"),
        f"{_STEP}.MetricAggregationType": honoured(
            "Average, Minimum or Maximum of the alarm's datapoints"
        ),
        _TRACKING: honoured("a target tracking policy and its two alarms"),
        f"{_TRACKING}.TargetValue": honoured("the value the metric is kept at"),
        f"{_TRACKING}.PredefinedMetricSpecification": honoured("a predefined metric"),
        f"{_TRACKING}.PredefinedMetricSpecification.PredefinedMetricType": honoured(
            "SageMakerVariantInvocationsPerInstance, "
            "SageMakerVariantConcurrentRequestsPerModelHighResolution, "
            "SageMakerInferenceComponentInvocationsPerCopy or "
            "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"
        ),
        f"{_TRACKING}.PredefinedMetricSpecification.ResourceLabel": refused(
            "ResourceLabel (load balancer metrics)", own_message=True
        ),
        _CUSTOM: honoured("a metric of polyhost's CloudWatch API"),
        f"{_CUSTOM}.MetricName": honoured("the metric's name"),
        f"{_CUSTOM}.Namespace": honoured("its namespace"),
        f"{_CUSTOM}.Dimensions": honoured("its dimensions"),
        f"{_CUSTOM}.Dimensions[].Name": honoured("a dimension's name"),
        f"{_CUSTOM}.Dimensions[].Value": honoured("its value"),
        f"{_CUSTOM}.Statistic": honoured("the statistic the alarms judge"),
        f"{_CUSTOM}.Unit": honoured("the metric's unit"),
        f"{_CUSTOM}.Metrics": refused("metric math in target tracking", own_message=True),
        f"{_TRACKING}.ScaleOutCooldown": honoured("seconds (evaluated time) after a scale-out"),
        f"{_TRACKING}.ScaleInCooldown": honoured("seconds (evaluated time) after a scale-in"),
        f"{_TRACKING}.DisableScaleIn": honoured("no AlarmLow alarm, no scale-in"),
        "PredictiveScalingPolicyConfiguration": refused("predictive scaling", own_message=True),
    },
    "DeleteScalingPolicy": {
        "PolicyName": honoured("the policy deleted, with its alarms"),
        **_SCOPE,
    },
    "DescribeScalingPolicies": {
        "PolicyNames": honoured("only these policies"),
        **_SCOPE,
        **_PAGES,
    },
    "DescribeScalingActivities": {
        **_SCOPE,
        **_PAGES,
        "IncludeNotScaledActivities": honoured(
            "polyhost records the activities that scaled or failed to; it keeps no not-scaled "
            "ones, so the answer is the same either way"
        ),
    },
    "PutScheduledAction": {
        **_SCOPE,
        "Schedule": honoured("at(...), rate(...) or cron(...) with six fields"),
        "Timezone": honoured("an IANA time zone the schedule is read in"),
        "ScheduledActionName": honoured("the action's name, unique per target"),
        "StartTime": honoured("no run before it"),
        "EndTime": honoured("no run after it"),
        "ScalableTargetAction": honoured("the new capacity range"),
        "ScalableTargetAction.MinCapacity": honoured("the new least capacity"),
        "ScalableTargetAction.MaxCapacity": honoured("the new most capacity"),
    },
    "DeleteScheduledAction": {
        **_SCOPE,
        "ScheduledActionName": honoured("the action deleted"),
    },
    "DescribeScheduledActions": {
        "ScheduledActionNames": honoured("only these actions"),
        **_SCOPE,
        **_PAGES,
    },
    "TagResource": {
        "ResourceARN": honoured("a scalable target's ARN"),
        "Tags": honoured("tags added or replaced"),
    },
    "UntagResource": {
        "ResourceARN": honoured("a scalable target's ARN"),
        "TagKeys": honoured("tags removed"),
    },
    "ListTagsForResource": {"ResourceARN": honoured("a scalable target's ARN")},
}
