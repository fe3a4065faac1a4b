"""Generated key pairs look like AWS's, are accepted by the loader and sign real requests."""

from __future__ import annotations

import json
import re

import pytest

from polyhost.auth.keys import new_access_key_id, new_principal, new_secret_access_key
from polyhost.auth.principals import parse_principals
from polyhost.auth.sigv4 import SigV4Verifier
from tests.auth.helpers import REGION, SIGNED_AT, sign


def test_an_access_key_id_looks_like_awss() -> None:
    assert re.fullmatch(r"AKIA[A-Z2-7]{16}", new_access_key_id())


def test_a_secret_is_40_characters_of_the_base64_alphabet() -> None:
    assert re.fullmatch(r"[A-Za-z0-9+/]{40}", new_secret_access_key())


def test_keys_do_not_repeat() -> None:
    assert len({new_access_key_id() for _ in range(200)}) == 200
    assert len({new_secret_access_key() for _ in range(200)}) == 200


def test_a_new_principal_loads_and_its_keys_sign_a_verifiable_request() -> None:
    policy = {"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}
    created = new_principal("ci-bot", [policy])
    assert set(created) == {"name", "access_key_id", "secret_access_key", "policies"}
    principals = parse_principals(json.dumps({"principals": [created]}))
    wire = sign(access_key=str(created["access_key_id"]), secret=str(created["secret_access_key"]))
    verifier = SigV4Verifier(principals.lookup, region=REGION, clock=SIGNED_AT.timestamp)
    verified = verifier.verify(
        wire.method, wire.path, wire.query, wire.headers, services={"sagemaker"}, body=wire.body
    )
    assert verified.principal.name == "ci-bot"


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "slash/y"])
def test_an_invalid_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a valid principal name"):
        new_principal(name)
