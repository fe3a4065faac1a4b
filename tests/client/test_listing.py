"""`polyhost ls`'s scalable-target table when the server cannot answer for it."""

from __future__ import annotations

import io
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from polyhost.client.listing import target_rows


class Refusing:
    """An `application-autoscaling` client whose every Describe fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def describe_scalable_targets(self, **_: Any) -> dict[str, Any]:
        raise self.error


def _client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeScalableTargets")


def test_a_server_without_the_service_leaves_the_table_out_quietly() -> None:
    err = io.StringIO()
    unserved = _client_error("UnknownOperationException", "Missing or malformed X-Amz-Target")
    assert target_rows(Refusing(unserved), lambda _: "-", err) == []
    assert err.getvalue() == ""


def test_a_refused_or_failed_call_leaves_the_table_out_and_says_why() -> None:
    err = io.StringIO()
    denied = _client_error("AccessDeniedException", "not allowed: DescribeScalableTargets")
    assert target_rows(Refusing(denied), lambda _: "-", err) == []
    assert "scalable targets not shown: AccessDeniedException: not allowed" in err.getvalue()
    gone = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert target_rows(Refusing(gone), lambda _: "-", err) == []
    assert "Could not connect" in err.getvalue()


def test_policies_are_listed_by_target_and_pages_are_followed() -> None:
    class Paged:
        def describe_scalable_targets(self, **kwargs: Any) -> dict[str, Any]:
            if kwargs.get("NextToken") != "2":
                return {"ScalableTargets": [_target("inference-component/a")], "NextToken": "2"}
            return {"ScalableTargets": [_target("inference-component/b")]}

        def describe_scaling_policies(self, **_: Any) -> dict[str, Any]:
            return {"ScalingPolicies": [_policy("inference-component/b", n) for n in "yx"]}

    rows = target_rows(
        Paged(), lambda resource: "2" if resource.endswith("b") else "0", io.StringIO()
    )
    assert [row[0] for row in rows] == ["inference-component/a", "inference-component/b"]
    assert rows[0][2:] == ("0", "4", "0", "-")
    assert rows[1][2:] == ("0", "4", "2", "x,y")


DIMENSION = "sagemaker:inference-component:DesiredCopyCount"


def _target(resource: str) -> dict[str, Any]:
    return {
        "ResourceId": resource,
        "ScalableDimension": DIMENSION,
        "MinCapacity": 0,
        "MaxCapacity": 4,
    }


def _policy(resource: str, name: str) -> dict[str, Any]:
    return {"ResourceId": resource, "ScalableDimension": DIMENSION, "PolicyName": name}
