"""The principals file: what it accepts, what it refuses and how, and that no secret leaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from polyhost.auth.errors import PolicyError
from polyhost.auth.principals import (
    MAX_FILE_BYTES,
    MAX_POLICIES_PER_PRINCIPAL,
    MAX_PRINCIPALS,
    load_principals,
    parse_principals,
)
from tests.auth.helpers import AKID, SECRET, TOKEN, TOKEN_SECRET, allow_all, entry

BOB_AKID = "AKIAI44QH8DHBEXAMPLE"
BOB_SECRET = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKE2"


def refused(doc: Any) -> str:
    text = doc if isinstance(doc, str | bytes) else json.dumps(doc)
    with pytest.raises(PolicyError) as caught:
        parse_principals(text)
    message = str(caught.value)
    for secret in (SECRET, TOKEN, TOKEN_SECRET, BOB_SECRET):
        assert secret not in message
    return message


def bob(**extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"access_key_id": BOB_AKID, "secret_access_key": BOB_SECRET}
    fields.update(extra)
    return entry(str(fields.pop("name", "bob")), **fields)


def test_a_valid_file_loads_with_lookups_by_key_and_name(tmp_path: Path) -> None:
    path = tmp_path / "principals.json"
    doc = {"principals": [entry(), bob(session_token=TOKEN)]}
    path.write_text(json.dumps(doc))
    principals = load_principals(path)
    assert [p.name for p in principals.principals] == ["alice", "bob"]
    assert principals.lookup(AKID) is principals.by_name["alice"]
    assert principals.lookup(BOB_AKID) is principals.by_name["bob"]
    assert principals.by_name["bob"].session_token == TOKEN
    assert principals.lookup("AKIANOSUCHKEY0000000") is None


def test_a_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "principals.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"principals": [entry()]}).encode())
    assert load_principals(path).lookup(AKID) is not None


def test_an_empty_list_of_principals_refuses_everyone() -> None:
    assert parse_principals('{"principals": []}').principals == ()


def test_a_principal_without_policies_is_valid_and_denied_everything() -> None:
    principals = parse_principals(json.dumps({"principals": [entry(policies=[])]}))
    alice = principals.by_name["alice"]
    assert not alice.policies.allows and not alice.policies.denies


def test_reprs_and_strings_never_show_a_secret_or_token() -> None:
    principals = parse_principals(json.dumps({"principals": [entry(), bob(session_token=TOKEN)]}))
    for text in (
        repr(principals),
        str(principals),
        *map(repr, principals.principals),
        f"{principals.by_name['bob']}",
    ):
        assert SECRET not in text and BOB_SECRET not in text and TOKEN not in text
    assert repr(principals.by_name["bob"]) == (
        "Principal(name='bob', access_key_id='AKIAI44QH8DHBEXAMPLE', secret_access_key='***', "
        "session_token='***', statements=1)"
    )


# -- refusals: the whole file, naming the principal and the statement ------------------------------
@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            "{",
            "the principals file is not valid JSON: Expecting property name enclosed in double "
            "quotes at line 1 column 2",
        ),
        (b"\xff\xfe", "the principals file is not UTF-8 text"),
        ("[]", 'the principals file must be an object with one member, "principals"'),
        ({"principals": [], "extra": 1}, 'must be an object with one member, "principals"'),
        ({"principals": {}}, '"principals" must be a list'),
        ({"principals": ["alice"]}, "principal 0: a principal must be a JSON object"),
        (
            {"principals": [{**entry(), "name": "al ice"}]},
            "principal 0: name must be 1-64 characters",
        ),
        (
            {"principals": [{**entry(), "name": "x" * 65}]},
            "principal 0: name must be 1-64 characters",
        ),
        (
            {"principals": [entry(), bob(name="ALICE")]},
            'principal 1: the name "ALICE" is already used',
        ),
        (
            {"principals": [entry(), bob(access_key_id=AKID)]},
            f'principal "bob": access_key_id {AKID} is already the key of principal "alice"',
        ),
        (
            {"principals": [entry(access_key_id="AKIA-1")]},
            'principal "alice": access_key_id must be 16-128',
        ),
        (
            {"principals": [entry(secret_access_key="short")]},
            'principal "alice": secret_access_key must be 16-128',
        ),
        (
            {"principals": [entry(secret_access_key=None)]},
            'principal "alice": secret_access_key must be',
        ),
        (
            {"principals": [entry(session_token="with space in the token")]},
            'principal "alice": session_token',
        ),
        ({"principals": [entry(role="admin")]}, "principal \"alice\": unknown member 'role'"),
        (
            {"principals": [entry(policies=allow_all())]},
            'principal "alice": policies must be a list',
        ),
        (
            {"principals": [entry(policies=[allow_all()] * (MAX_POLICIES_PER_PRINCIPAL + 1))]},
            "more than 20 policies",
        ),
        (
            {
                "principals": [
                    entry(
                        policies=[
                            allow_all(),
                            {
                                "Statement": [
                                    {"Effect": "Allow", "Action": "*", "Resource": "*"},
                                    {
                                        "Sid": "DenySpecial",
                                        "Effect": "Deny",
                                        "Action": "*",
                                        "Resource": "*",
                                        "Condition": {
                                            "StringLike": {
                                                "sagemaker:TargetContainerHost": "special*"
                                            }
                                        },
                                    },
                                ]
                            },
                        ]
                    )
                ]
            },
            'principal "alice", policy 1, statement 1 (Sid "DenySpecial"): condition key '
            "'sagemaker:TargetContainerHost' is not one polyhost provides",
        ),
        (
            {
                "principals": [
                    entry(
                        policies=[
                            {
                                "Version": "2012-10-17",
                                "Statement": {"Effect": "Allow", "Action": "s3", "Resource": "*"},
                            }
                        ]
                    )
                ]
            },
            "principal \"alice\", policy 0, statement 0: Action 's3' is not '*' or service:action",
        ),
    ],
)
def test_every_refusal_says_where_and_what(doc: Any, message: str) -> None:
    assert message in refused(doc)


def test_duplicate_members_of_a_principal_are_refused() -> None:
    text = json.dumps({"principals": [entry()]}).replace(
        '"name": "alice"', '"name": "alice", "policies": []'
    )
    assert "principal \"alice\": has 'policies' more than once" in refused(text)


def test_a_secret_pasted_into_a_sid_never_reaches_the_message() -> None:
    bad = {"Sid": SECRET, "Effect": "Permit", "Action": "*", "Resource": "*"}
    message = refused({"principals": [entry(policies=[{"Statement": [bad]}])]})
    assert 'statement 0 (Sid "***"): Effect must be' in message


def test_another_principals_secret_is_scrubbed_too() -> None:
    bad = {"Sid": BOB_SECRET, "Effect": "Permit", "Action": "*", "Resource": "*"}
    message = refused({"principals": [entry(policies=[{"Statement": [bad]}]), bob()]})
    assert "***" in message


def test_the_counts_are_bounded() -> None:
    many = [
        entry(f"p{i}", access_key_id=f"AKIA{i:016d}", policies=[])
        for i in range(MAX_PRINCIPALS + 1)
    ]
    assert "more than 1000 principals" in refused({"principals": many})


def test_the_file_size_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (MAX_FILE_BYTES + 1))
    with pytest.raises(PolicyError, match="larger than 1048576 bytes"):
        load_principals(path)
    assert "larger than" in refused(" " * (MAX_FILE_BYTES + 1))


def test_deep_nesting_is_refused_not_a_crash() -> None:
    assert "nested too deeply" in refused("[" * 200_000)
