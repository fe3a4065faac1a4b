"""Values CloudWatch's read API and its alarms check and answer alike: namespaces, periods,
percentile names, timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from polyhost.errors import InvalidParameterValue
from polyhost.metrics.query import COMPONENT_NAMESPACE, RESOURCE_NAMESPACE

HIGH_RESOLUTION_PERIODS = (10, 20, 30)
_PERCENTILE = re.compile(r"p(\d{1,3}(?:\.\d{1,10})?)")
_NAMESPACE_ALIASES = {
    RESOURCE_NAMESPACE.lstrip("/"): RESOURCE_NAMESPACE,
    COMPONENT_NAMESPACE.lstrip("/"): COMPONENT_NAMESPACE,
}


def canonical_namespace(namespace: str) -> str:
    """SageMaker's guide writes `aws/sagemaker/Endpoints`; the metrics live under the slashed
    name. Both find them."""
    return _NAMESPACE_ALIASES.get(namespace, namespace)


class Timestamp(float):
    """Epoch seconds that each protocol writes as its own timestamp type (a JSON number, a
    CBOR tag 1, ISO 8601 text). A float rather than a datetime: a day of datapoints is tens of
    thousands of them, and JSON, the protocol botocore speaks, wants the number anyway."""

    __slots__ = ()

    def as_datetime(self) -> datetime:
        return datetime.fromtimestamp(self, UTC)


def percentile(name: str, where: str) -> float:
    """The percent of `pNN.NN`, or InvalidParameterValue saying what is accepted."""
    match = _PERCENTILE.fullmatch(name)
    if match is None or not 0.0 <= float(match.group(1)) <= 100.0:
        raise InvalidParameterValue(
            f"The value {name[:64]} for parameter {where} is not supported: polyhost answers "
            "SampleCount, Average, Sum, Minimum, Maximum and percentiles p0 to p100 "
            "(e.g. p50, p99, p99.9)."
        )
    return float(match.group(1))


def check_period(period: int, where: str) -> None:
    if period in HIGH_RESOLUTION_PERIODS or (period >= 60 and period % 60 == 0):
        return
    raise InvalidParameterValue(
        f"The parameter {where} must be 10, 20, 30 or a multiple of 60, not {period}: polyhost "
        "records every 10 seconds and keeps 1-minute roll-ups."
    )
