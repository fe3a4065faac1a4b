"""Policy documents: matching of Action/Resource and their Not forms, precedence, variables,
the decision's statement reference, and validation that names the statement."""

from __future__ import annotations

import json
from typing import Any

import pytest

from polyhost.auth.actions import invoke_endpoint_target
from polyhost.auth.errors import PolicyError
from polyhost.auth.policy import Outcome, StatementRef, json_object, parse_policy
from tests.auth.helpers import ACCOUNT, REGION, context, policy_set

EP = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint"
INVOKE = "sagemaker:InvokeEndpoint"


def doc(*statements: dict[str, Any], version: str | None = "2012-10-17") -> dict[str, Any]:
    out: dict[str, Any] = {"Statement": list(statements)}
    if version:
        out["Version"] = version
    return out


def allow(action: Any = "*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any = "*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def outcome(document: dict[str, Any], action: str, resource: str, **keys: Any) -> Outcome:
    return policy_set(document).evaluate(action, resource, context(**keys).get).outcome


# -- actions -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "action", "allowed"),
    [
        ("*", INVOKE, True),
        ("sagemaker:*", INVOKE, True),
        ("sagemaker:InvokeEndpoint", INVOKE, True),
        ("SageMaker:invokeendpoint", INVOKE, True),  # service and action are case-insensitive
        ("sagemaker:Invoke*", INVOKE, True),
        ("sagemaker:invoke*", "sagemaker:InvokeEndpointAsync", True),
        ("sagemaker:Invoke?ndpoint", INVOKE, True),
        ("sagemaker:Describe*", INVOKE, False),
        ("sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointAsync", False),
        ("cloudwatch:*", INVOKE, False),
        ("sagemaker:*Endpoint", "sagemaker:DeleteEndpoint", True),
        ("sagemaker:*Endpoint", "sagemaker:DeleteEndpointConfig", False),
    ],
)
def test_action_patterns(pattern: str, action: str, allowed: bool) -> None:
    result = outcome(doc(allow(pattern)), action, f"{EP}/e")
    assert (result is Outcome.ALLOWED) is allowed


def test_not_action_applies_to_every_other_action() -> None:
    document = doc({"Effect": "Allow", "NotAction": "sagemaker:Delete*", "Resource": "*"})
    assert outcome(document, "sagemaker:DescribeModel", "*") is Outcome.ALLOWED
    assert outcome(document, "sagemaker:DeleteModel", "*") is Outcome.IMPLICIT_DENY


# -- resources -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "resource", "allowed"),
    [
        ("*", f"{EP}/e", True),
        ("*", "*", True),
        (f"{EP}/e", f"{EP}/e", True),
        (f"{EP}/e", f"{EP}/E", False),  # ARNs compare case-sensitively
        (f"{EP}/*", f"{EP}/anything", True),
        (f"{EP}/*", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/m", False),
        (f"{EP}/e?", f"{EP}/e1", True),
        ("arn:aws:sagemaker:*:*:endpoint/*", f"{EP}/e", True),
        ("arn:aws:sagemaker:us-*:*:*", f"{EP}/e", True),
        ("arn:aws:sagemaker:eu-*:*:*", f"{EP}/e", False),
        (f"arn:aws:*:{REGION}:{ACCOUNT}:endpoint/e", f"{EP}/e", True),
        # a wildcard in the first five parts never spans a colon
        ("arn:aws:sagemaker:*:endpoint/e", f"{EP}/e", None),
        # actions without a resource act on "*": only a "*" pattern grants them
        (f"{EP}/*", "*", False),
        ("arn:*:*:*:*:*", "*", False),
        (
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/*",
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/e",
            True,
        ),
    ],
)
def test_resource_patterns(pattern: str, resource: str, allowed: bool | None) -> None:
    if allowed is None:
        with pytest.raises(PolicyError, match="is neither"):
            policy_set(doc(allow(INVOKE, pattern)))
        return
    assert (outcome(doc(allow(INVOKE, pattern)), INVOKE, resource) is Outcome.ALLOWED) is allowed


def test_a_principal_scoped_by_lowercased_arn_reaches_an_endpoint_named_with_capitals() -> None:
    target = invoke_endpoint_target("My-Endpoint", region=REGION, account_id=ACCOUNT)
    assert target.resource == f"{EP}/my-endpoint"
    scoped = doc(allow(INVOKE, f"{EP}/my-endpoint"))
    assert outcome(scoped, target.action, target.resource) is Outcome.ALLOWED
    # Naming it with its capitals scopes to nothing: SageMaker's ARNs are lowercase.
    capitals = doc(allow(INVOKE, f"{EP}/My-Endpoint"))
    assert outcome(capitals, target.action, target.resource) is Outcome.IMPLICIT_DENY
    other = invoke_endpoint_target("My-Endpoint-2", region=REGION, account_id=ACCOUNT)
    assert outcome(scoped, other.action, other.resource) is Outcome.IMPLICIT_DENY


def test_not_resource_applies_to_every_other_resource() -> None:
    document = doc(allow(), {"Effect": "Deny", "Action": "*", "NotResource": f"{EP}/prod"})
    assert outcome(document, INVOKE, f"{EP}/prod") is Outcome.ALLOWED
    assert outcome(document, INVOKE, f"{EP}/dev") is Outcome.EXPLICIT_DENY


# -- precedence and the deciding statement ---------------------------------------------------------
def test_explicit_deny_beats_allow_beats_implicit_deny() -> None:
    policies = policy_set(
        doc(allow(INVOKE, f"{EP}/*", Sid="AllowAll")),
        doc(
            allow("sagemaker:Describe*", "*"),
            deny(INVOKE, f"{EP}/prod", Sid="NoProd"),
        ),
    )
    prod = policies.evaluate(INVOKE, f"{EP}/prod", context().get)
    assert prod.outcome is Outcome.EXPLICIT_DENY and not prod.allowed
    assert prod.statement == StatementRef(1, 1, "NoProd")
    assert (
        prod.explain() == 'explicitDeny: explicitly denied by policy 1, statement 1 (Sid "NoProd")'
    )
    dev = policies.evaluate(INVOKE, f"{EP}/dev", context().get)
    assert dev.allowed and dev.statement == StatementRef(0, 0, "AllowAll")
    assert dev.explain() == 'allowed: allowed by policy 0, statement 0 (Sid "AllowAll")'
    described = policies.evaluate("sagemaker:DescribeModel", "*", context().get)
    assert described.statement == StatementRef(1, 0, None)
    assert described.explain() == "allowed: allowed by policy 1, statement 0"
    nothing = policies.evaluate("sagemaker:DeleteModel", "*", context().get)
    assert nothing.outcome is Outcome.IMPLICIT_DENY and nothing.statement is None
    assert nothing.explain() == "implicitDeny: no statement allows this request"


def test_no_policies_deny_everything() -> None:
    assert policy_set().evaluate(INVOKE, "*", context().get).outcome is Outcome.IMPLICIT_DENY


def test_a_single_statement_object_and_single_values_are_accepted() -> None:
    document = {"Version": "2012-10-17", "Statement": allow(INVOKE, f"{EP}/e")}
    assert outcome(document, INVOKE, f"{EP}/e") is Outcome.ALLOWED
    listed = doc(allow([INVOKE, "sagemaker:Describe*"], [f"{EP}/a", f"{EP}/e"]))
    assert outcome(listed, INVOKE, f"{EP}/e") is Outcome.ALLOWED


def test_keys_and_operators_and_while_values_or() -> None:
    document = doc(
        allow(
            INVOKE,
            "*",
            Condition={
                "StringLike": {
                    "sagemaker:TargetContainerHostname": ["a*", "b*"],
                    "sagemaker:TargetVariant": "v1",
                },
                "IpAddress": {"aws:SourceIp": "10.0.0.0/8"},
            },
        )
    )
    ok = {"target_container_hostname": "b1", "target_variant": "v1", "source_ip": "10.1.2.3"}
    assert outcome(document, INVOKE, "*", **ok) is Outcome.ALLOWED
    for key, bad in [
        ("target_container_hostname", "c1"),
        ("target_variant", "v2"),
        ("source_ip", "192.0.2.1"),
        ("target_variant", None),
    ]:
        assert outcome(document, INVOKE, "*", **(ok | {key: bad})) is Outcome.IMPLICIT_DENY


def test_json_booleans_and_numbers_are_read_as_text() -> None:
    document = doc(deny(INVOKE, "*", Condition={"Bool": {"aws:SecureTransport": False}}), allow())
    assert outcome(document, INVOKE, "*", secure_transport=False) is Outcome.EXPLICIT_DENY
    assert outcome(document, INVOKE, "*", secure_transport=True) is Outcome.ALLOWED


# -- policy variables ----------------------------------------------------------------------------
def test_username_variable_in_a_resource() -> None:
    document = doc(allow(INVOKE, f"{EP}/${{aws:username}}-*"))
    assert outcome(document, INVOKE, f"{EP}/alice-dev") is Outcome.ALLOWED
    assert outcome(document, INVOKE, f"{EP}/bob-dev") is Outcome.IMPLICIT_DENY


def test_username_variable_in_a_condition() -> None:
    document = doc(
        allow(
            INVOKE,
            "*",
            Condition={"StringEquals": {"sagemaker:TargetModel": "${aws:username}.tar.gz"}},
        )
    )
    assert outcome(document, INVOKE, "*", target_model="alice.tar.gz") is Outcome.ALLOWED
    assert outcome(document, INVOKE, "*", target_model="bob.tar.gz") is Outcome.IMPLICIT_DENY


def test_a_variable_the_request_lacks_makes_its_statement_not_apply() -> None:
    variable = "${sagemaker:TargetVariant}"
    document = doc(
        allow(),
        deny(INVOKE, "*", Condition={"StringNotEquals": {"sagemaker:TargetModel": variable}}),
    )
    # With the variant present the Deny is evaluated; without it, the Deny is invalid (IAM).
    result = outcome(document, INVOKE, "*", target_model="m", target_variant="v")
    assert result is Outcome.EXPLICIT_DENY
    assert outcome(document, INVOKE, "*", target_model="m") is Outcome.ALLOWED


def test_a_variable_default_stands_in_for_a_missing_key() -> None:
    document = doc(
        allow(
            INVOKE,
            "*",
            Condition={
                "StringEquals": {"sagemaker:TargetModel": "${sagemaker:TargetVariant, 'none'}"}
            },
        )
    )
    assert outcome(document, INVOKE, "*", target_model="none") is Outcome.ALLOWED
    assert outcome(document, INVOKE, "*", target_model="v", target_variant="v") is Outcome.ALLOWED
    assert outcome(document, INVOKE, "*", target_model="v") is Outcome.IMPLICIT_DENY


def test_a_variables_value_is_literal_never_a_wildcard() -> None:
    document = doc(
        allow(
            INVOKE,
            "*",
            Condition={"StringLike": {"sagemaker:TargetModel": "${sagemaker:TargetVariant}"}},
        )
    )
    assert outcome(document, INVOKE, "*", target_model="a*", target_variant="a*") is Outcome.ALLOWED
    result = outcome(document, INVOKE, "*", target_model="abc", target_variant="a*")
    assert result is Outcome.IMPLICIT_DENY


@pytest.mark.parametrize(
    ("pattern", "value", "allowed"),
    [("a${*}", "a*", True), ("a${*}", "ab", False), ("a${?}", "a?", True), ("${$}x", "$x", True)],
)
def test_escapes_for_literal_wildcards_and_dollar(pattern: str, value: str, allowed: bool) -> None:
    document = doc(allow(INVOKE, "*", Condition={"StringLike": {"sagemaker:TargetModel": pattern}}))
    result = outcome(document, INVOKE, "*", target_model=value)
    assert (result is Outcome.ALLOWED) is allowed


# -- validation, each error naming the statement ---------------------------------------------------
@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("nope", "policy 0: a policy must be a JSON object with a Statement"),
        ({"Version": "2012-10-17"}, "policy 0: the policy has no Statement"),
        ({"Statement": []}, "policy 0: Statement must be a statement object or a non-empty list"),
        ({"Version": "2019-01-01", "Statement": allow()}, "Version must be one of"),
        ({"Statement": allow(), "Extra": 1}, "unknown policy element 'Extra'"),
        ({"statement": allow()}, "(did you mean 'Statement'?"),
        (
            doc(
                allow(),
                allow(Sid="A"),
                {"Sid": "B", "Effect": "Permit", "Action": "*", "Resource": "*"},
            ),
            'policy 0, statement 2 (Sid "B"): Effect must be "Allow" or "Deny", not \'Permit\'',
        ),
        (
            doc({"Sid": "P", "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}),
            'statement 0 (Sid "P"): identity-based policies have no Principal',
        ),
        (
            doc(allow() | {"NotAction": "x:y"}),
            "statement 0: give exactly one of Action and NotAction",
        ),
        (
            doc({"Effect": "Allow", "Action": "*"}),
            "statement 0: give exactly one of Resource and NotResource",
        ),
        (doc(allow("InvokeEndpoint")), "Action 'InvokeEndpoint' is not '*' or service:action"),
        (doc(allow([])), "statement 0: Action is an empty list"),
        (
            doc(allow(resource="arn:aws:sagemaker")),
            "Resource 'arn:aws:sagemaker' is neither '*' nor an ARN",
        ),
        (
            doc(allow(resource="arn:aws:${aws:username}:r:a:x")),
            "policy variable before the resource part",
        ),
        (doc(allow(Sid="S"), allow(Sid="S")), "statement 1: Sid 'S' is used twice"),
        (doc(allow(Sid="")), "statement 0: Sid must be a non-empty string"),
        (doc(allow(Action={"a": 1})), "Action values must be strings"),
        (doc(allow(Condition={"StringLike": {}})), "must map condition keys to values"),
        (doc(allow(Condition=["StringLike"])), "Condition must be an object"),
        (
            doc(allow(Sid="C", Condition={"StringLikeX": {"aws:username": "a"}})),
            "statement 0 (Sid \"C\"): unknown condition operator 'StringLikeX'",
        ),
        (
            doc(allow(resource="arn:aws:s3:::b/${aws:username}"), version=None),
            'needs "Version": "2012-10-17"',
        ),
        (
            doc(allow(Effect="Allow", Condition={"StringLike": {"aws:username": "a"}}, Extra=1)),
            "unknown statement element 'Extra'",
        ),
    ],
)
def test_validation_errors_name_the_policy_statement_and_element(
    document: Any, message: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(document, policy_index=0)
    assert message in str(caught.value)


def test_duplicate_json_keys_are_refused() -> None:
    text = (
        '{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",'
        ' "Condition": {"StringLike": {"aws:username": "a"}, "StringLike": {"aws:username": "b"}}}}'
    )
    document = json.loads(text, object_pairs_hook=json_object)
    with pytest.raises(PolicyError, match="Condition has key 'StringLike' more than once"):
        parse_policy(document)


def test_a_policy_without_version_and_without_variables_is_fine() -> None:
    assert (
        outcome(doc(allow(INVOKE, f"{EP}/e"), version=None), INVOKE, f"{EP}/e") is Outcome.ALLOWED
    )
