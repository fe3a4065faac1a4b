"""The worked example of docs/auth.md loads and decides as its table says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from polyhost.auth.actions import invoke_endpoint_target
from polyhost.auth.authorizer import Authorizer
from polyhost.auth.principals import PrincipalSet, parse_principals
from tests.auth.helpers import context

FIRST = "allowed: allowed by policy 0, statement 0"
DENY_SPECIAL = "explicitDeny: explicitly denied by policy 0, statement 1"
DOC = Path(__file__).resolve().parents[2] / "docs" / "auth.md"


def example() -> PrincipalSet:
    text = DOC.read_text()
    section = text[text.index("## Worked example") :]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return parse_principals(block.group(1))


@pytest.mark.parametrize(
    ("hostname", "endpoint", "analyst", "operator"),
    [
        ("customIps1", "endpoint_name", FIRST, FIRST),
        ("common", "endpoint_name", "allowed", "allowed"),
        ("customips1", "endpoint_name", "implicitDeny", "allowed"),
        ("myCustomIps", "endpoint_name", "implicitDeny", "allowed"),
        ("special1", "endpoint_name", "implicitDeny", DENY_SPECIAL),
        ("notspecial", "endpoint_name", "implicitDeny", "allowed"),
        (None, "endpoint_name", "implicitDeny", "implicitDeny"),
        ("customIps1", "other", "implicitDeny", "implicitDeny"),
    ],
)  # fmt: skip
def test_the_worked_example_table(
    hostname: str | None, endpoint: str, analyst: str, operator: str
) -> None:
    principals = example()
    target = invoke_endpoint_target(endpoint, region="us-east-1", account_id="111122223333")
    authorizer = Authorizer()
    for name, expected in (("analyst", analyst), ("operator", operator)):
        ctx = context(username=name, target_container_hostname=hostname)
        decision = authorizer.decide(principals.by_name[name], target.action, target.resource, ctx)
        assert decision.explain().startswith(expected)
