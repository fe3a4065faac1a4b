"""What an alarm's actions do when its state changes, and which action ARNs can be acted on.

An action is an ARN in AlarmActions, OKActions or InsufficientDataActions. `ActionHandlers` is
a registry, ARN prefix -> handler: PutMetricAlarm accepts an action only when a handler's
prefix matches it, so no action is stored that nothing would ever run (CloudWatch's own rule:
an alarm action must name something that can act). Two kinds are known:

- SNS topics, `arn:aws:sns:<region>:<account>:<topic>`, always: the alarm's notification (the
  JSON CloudWatch publishes, `notification`) is published with boto3's SNS client under boto3's
  standard settings, so `AWS_ENDPOINT_URL_SNS` points it at any SNS-compatible server, with the
  server's credentials.
- Application Auto Scaling policies, `arn:aws:autoscaling:<region>:<account>:scalingPolicy:...`,
  once the autoscaling service registers its handler (`register`). Until then PutMetricAlarm
  refuses them, saying why: an alarm that promises to scale and never does is worse than an
  error.

A handler is called in a worker thread with the `AlarmEvent`, once per state change into the
state whose list names it, while the alarm's actions are enabled. One registered with
`repeat=True` (scaling policies) is called again once per alarm period while the alarm stays in
that state, with `old_state == new_state`: CloudWatch keeps invoking a scaling action while its
alarm is in ALARM, so a policy goes on stepping until the metric is back in range.
A handler raises to report a failed action: the failure goes in the alarm's history as an
Action item, as CloudWatch records it, and never stops the other actions or the evaluation.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("polyhost.metrics")

SNS_PREFIX = "arn:aws:sns:"
AUTOSCALING_PREFIX = "arn:aws:autoscaling:"
REGION_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-central-1": "EU (Frankfurt)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
}


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One state change, as an action sees it."""

    action_arn: str
    alarm_name: str
    alarm_arn: str
    old_state: str
    new_state: str
    reason: str
    at: float  # epoch seconds
    alarm: dict[str, Any]  # the alarm as DescribeAlarms shows it
    message: dict[str, Any]  # CloudWatch's notification JSON (`notification`)


Handler = Callable[[AlarmEvent], None]


class ActionHandlers:
    """ARN prefix -> handler. Thread-safe: the autoscaling service may register at any time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}
        self._repeating: set[str] = set()

    def register(self, prefix: str, handler: Handler, *, repeat: bool = False) -> None:
        """Act on every action ARN starting with `prefix` (the longest matching prefix wins);
        `repeat`: also once per period while the alarm stays in the action's state."""
        with self._lock:
            self._handlers[prefix] = handler
            if repeat:
                self._repeating.add(prefix)
            else:
                self._repeating.discard(prefix)

    def unregister(self, prefix: str) -> None:
        with self._lock:
            self._handlers.pop(prefix, None)
            self._repeating.discard(prefix)

    def repeats(self, arn: str) -> bool:
        """Whether the handler of `arn` is to be called again while its alarm stays put."""
        with self._lock:
            matching = [prefix for prefix in self._handlers if arn.startswith(prefix)]
            return bool(matching) and max(matching, key=len) in self._repeating

    def find(self, arn: str) -> Handler | None:
        with self._lock:
            matching = [prefix for prefix in self._handlers if arn.startswith(prefix)]
            return self._handlers[max(matching, key=len)] if matching else None

    def why_not(self, arn: str) -> str | None:
        """Why `arn` cannot be an alarm action here; None when a handler takes it."""
        if self.find(arn) is not None:
            return None
        if arn.startswith(AUTOSCALING_PREFIX):
            return (
                f"The action {arn[:256]} is an Application Auto Scaling policy, and this "
                "server's autoscaling service is not running, so nothing would act on it. "
                "polyhost runs SNS topic actions (arn:aws:sns:...); see docs/alarms.md."
            )
        return (
            f"The action {arn[:256]} is not one polyhost can run: alarm actions here are SNS "
            "topics (arn:aws:sns:<region>:<account>:<topic>) and, with the autoscaling "
            "service, Application Auto Scaling policies; see docs/alarms.md."
        )


def notification(
    event_alarm: dict[str, Any],
    old_state: str,
    new_state: str,
    reason: str,
    changed_at: str,
    region: str,
    account_id: str,
) -> dict[str, Any]:
    """The JSON CloudWatch publishes to an alarm's SNS topics."""
    trigger: dict[str, Any] = {
        "MetricName": event_alarm.get("MetricName"),
        "Namespace": event_alarm.get("Namespace"),
        "StatisticType": "ExtendedStatistic"
        if event_alarm.get("ExtendedStatistic")
        else "Statistic",
    }
    if event_alarm.get("ExtendedStatistic"):
        trigger["ExtendedStatistic"] = event_alarm["ExtendedStatistic"]
    else:
        trigger["Statistic"] = str(event_alarm.get("Statistic", "")).upper()
    trigger.update(
        {
            "Unit": event_alarm.get("Unit"),
            "Dimensions": [
                {"value": d["Value"], "name": d["Name"]} for d in event_alarm.get("Dimensions", [])
            ],
            "Period": event_alarm.get("Period"),
            "EvaluationPeriods": event_alarm.get("EvaluationPeriods"),
            "DatapointsToAlarm": event_alarm.get("DatapointsToAlarm"),
            "ComparisonOperator": event_alarm.get("ComparisonOperator"),
            "Threshold": event_alarm.get("Threshold"),
            "TreatMissingData": event_alarm.get("TreatMissingData", "missing"),
            "EvaluateLowSampleCountPercentile": event_alarm.get(
                "EvaluateLowSampleCountPercentile", ""
            ),
        }
    )
    return {
        "AlarmName": event_alarm["AlarmName"],
        "AlarmDescription": event_alarm.get("AlarmDescription"),
        "AWSAccountId": account_id,
        "AlarmConfigurationUpdatedTimestamp": event_alarm.get("_configured"),
        "NewStateValue": new_state,
        "NewStateReason": reason,
        "StateChangeTime": changed_at,
        "Region": REGION_NAMES.get(region, region),
        "AlarmArn": event_alarm["AlarmArn"],
        "OldStateValue": old_state,
        "OKActions": list(event_alarm.get("OKActions", [])),
        "AlarmActions": list(event_alarm.get("AlarmActions", [])),
        "InsufficientDataActions": list(event_alarm.get("InsufficientDataActions", [])),
        "Trigger": trigger,
    }


class SnsPublisher:
    """The SNS handler: publishes the notification to the topic, with CloudWatch's subject."""

    def __init__(self, region: str, timeout_s: float = 10.0) -> None:
        self._region = region
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: Any = None

    def _sns(self) -> Any:
        with self._lock:  # boto3 sessions are not thread-safe to build clients from
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "sns",
                    region_name=self._region,
                    config=Config(
                        connect_timeout=self._timeout_s,
                        read_timeout=self._timeout_s,
                        retries={"max_attempts": 2},
                    ),
                )
            return self._client

    def __call__(self, event: AlarmEvent) -> None:
        region = REGION_NAMES.get(self._region, self._region)
        subject = f'{event.new_state}: "{event.alarm_name}" in {region}'
        self._sns().publish(
            TopicArn=event.action_arn,
            Subject=subject[:100],
            Message=json.dumps(event.message),
        )


def failure_text(error: Exception) -> str:
    """A failed action's reason, as the history shows it."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".rstrip(": ")
    return str(error) or type(error).__name__
