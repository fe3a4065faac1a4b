"""The two policies of SageMaker's guide, "Security with multi-container endpoints with direct
invocation", verbatim but for the region/account/endpoint placeholders, evaluated against
container names chosen to take every branch."""

from __future__ import annotations

from typing import Any

import pytest

from polyhost.auth.actions import invoke_endpoint_target
from polyhost.auth.authorizer import Authorizer
from polyhost.auth.policy import Outcome, StatementRef
from polyhost.auth.principals import Principal
from tests.auth.helpers import ACCOUNT, REGION, context, policy_set

RESOURCE = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/endpoint_name"

# "The following policy allows invoke_endpoint requests only when the value of the
# TargetContainerHostname field matches one of the specified regular expressions."
ONLY_MATCHING: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Action": ["sagemaker:InvokeEndpoint"],
            "Effect": "Allow",
            "Resource": RESOURCE,
            "Condition": {
                "StringLike": {"sagemaker:TargetContainerHostname": ["customIps*", "common*"]}
            },
        }
    ],
}

# "The following policy denies invoke_endpoint requests when the value of the
# TargetContainerHostname field matches one of the specified regular expressions in the Deny
# statement."
ALL_BUT_SPECIAL: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Action": ["sagemaker:InvokeEndpoint"],
            "Effect": "Allow",
            "Resource": RESOURCE,
            "Condition": {"StringLike": {"sagemaker:TargetContainerHostname": ["*"]}},
        },
        {
            "Action": ["sagemaker:InvokeEndpoint"],
            "Effect": "Deny",
            "Resource": RESOURCE,
            "Condition": {"StringLike": {"sagemaker:TargetContainerHostname": ["special*"]}},
        },
    ],
}

ALLOWED = Outcome.ALLOWED
DENIED = Outcome.EXPLICIT_DENY
IMPLICIT = Outcome.IMPLICIT_DENY


def invoke(endpoint: str = "endpoint_name") -> tuple[str, str]:
    target = invoke_endpoint_target(endpoint, region=REGION, account_id=ACCOUNT)
    return target.action, target.resource


@pytest.mark.parametrize(
    ("hostname", "expected", "statement"),
    [
        ("customIps1", ALLOWED, 0),  # the first value
        ("customIps", ALLOWED, 0),  # "*" matches the empty run
        ("common", ALLOWED, 0),  # the second value
        ("commonModel", ALLOWED, 0),
        ("customips1", IMPLICIT, None),  # StringLike is case-sensitive
        ("CommonModel", IMPLICIT, None),
        ("myCustomIps", IMPLICIT, None),  # the pattern must match the whole name
        ("special1", IMPLICIT, None),
        (None, IMPLICIT, None),  # no TargetContainerHostname: a missing key is false
    ],
)
def test_allow_only_matching_containers(
    hostname: str | None, expected: Outcome, statement: int | None
) -> None:
    decision = policy_set(ONLY_MATCHING).evaluate(
        *invoke(), context(target_container_hostname=hostname).get
    )
    assert decision.outcome is expected
    assert decision.statement == (None if statement is None else StatementRef(0, statement, None))


def test_allow_only_matching_containers_covers_nothing_else() -> None:
    policies = policy_set(ONLY_MATCHING)
    ctx = context(target_container_hostname="customIps1").get
    assert policies.evaluate(*invoke("other-endpoint"), ctx).outcome is IMPLICIT
    assert policies.evaluate("sagemaker:DescribeEndpoint", RESOURCE, ctx).outcome is IMPLICIT


@pytest.mark.parametrize(
    ("hostname", "expected", "statement"),
    [
        ("customIps1", ALLOWED, 0),
        ("notspecial", ALLOWED, 0),  # the Deny pattern must match from the start
        ("Special1", ALLOWED, 0),  # ... and case-sensitively
        ("special", DENIED, 1),  # "special*" matches "special" itself
        ("specialModel", DENIED, 1),  # the explicit Deny beats the Allow
        (None, IMPLICIT, None),  # Allow "*" needs the key present; the Deny is false too
    ],
)
def test_allow_all_but_special_containers(
    hostname: str | None, expected: Outcome, statement: int | None
) -> None:
    decision = policy_set(ALL_BUT_SPECIAL).evaluate(
        *invoke(), context(target_container_hostname=hostname).get
    )
    assert decision.outcome is expected
    assert decision.statement == (None if statement is None else StatementRef(0, statement, None))


@pytest.mark.parametrize(
    ("hostname", "expected", "statement"),
    [
        ("customIps1", ALLOWED, StatementRef(0, 0, None)),  # the first policy allows first
        ("other", ALLOWED, StatementRef(1, 0, None)),
        ("specialModel", DENIED, StatementRef(1, 1, None)),
        # An Allow elsewhere never overrides an explicit Deny.
        ("special-customIps", DENIED, StatementRef(1, 1, None)),
    ],
)
def test_both_policies_on_one_principal(
    hostname: str, expected: Outcome, statement: StatementRef
) -> None:
    decision = policy_set(ONLY_MATCHING, ALL_BUT_SPECIAL).evaluate(
        *invoke(), context(target_container_hostname=hostname).get
    )
    assert (decision.outcome, decision.statement) == (expected, statement)


def test_the_authorizer_caches_per_container_and_agrees_with_evaluation() -> None:
    principal = Principal(
        "alice", "AKIAIOSFODNN7EXAMPLE", "s" * 40, None, policy_set(ALL_BUT_SPECIAL)
    )
    authorizer = Authorizer()
    for _ in range(3):
        for hostname in ("customIps1", "special1", None):
            ctx = context(target_container_hostname=hostname)
            cached = authorizer.decide(principal, *invoke(), ctx)
            assert cached == authorizer.simulate(principal, *invoke(), ctx)
    assert (authorizer.cache.misses, authorizer.cache.hits) == (3, 6)
