"""Wildcards and policy-variable templates: IAM's matching, in linear time."""

from __future__ import annotations

import time

import pytest

from polyhost.auth.context import KNOWN_KEYS
from polyhost.auth.patterns import (
    ArnPattern,
    Template,
    Unresolved,
    Variable,
    Wild,
    Wildcard,
    parse_template,
    render,
)


def like(pattern: str, *, fold: bool = False) -> Wildcard:
    return Wildcard(
        parse_template(pattern, wildcards=True, variables=True, known_keys=KNOWN_KEYS), fold=fold
    )


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("", "", True),
        ("", "a", False),
        ("*", "", True),
        ("*", "anything at all", True),
        ("**", "x", True),
        ("a", "a", True),
        ("a", "A", False),
        ("?", "", False),
        ("?", "x", True),
        ("??", "x", False),
        ("a*", "a", True),
        ("*a", "ba", True),
        ("*a", "ab", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "acb", False),
        ("a*a", "a", False),  # prefix and suffix may not overlap
        ("a*a", "aa", True),
        ("*ab*ab*", "xabyab", True),
        ("*ab*ab*", "xaby", False),
        ("a?c*", "abcdef", True),
        ("*?b?", "xxaby", True),
        ("*.*", "a.b", True),  # regex characters are literal
        ("[a]", "a", False),
        ("[a]", "[a]", True),
        ("line*", "line\nbreak", True),
    ],
)
def test_wildcards(pattern: str, text: str, expected: bool) -> None:
    assert like(pattern).matches(text) is expected


def test_folding_ignores_case_on_both_sides() -> None:
    assert like("SageMaker:Invoke*", fold=True).matches("sagemaker:INVOKEENDPOINT")
    assert not like("SageMaker:Invoke*").matches("sagemaker:InvokeEndpoint")


def test_a_hostile_pattern_cannot_stall_the_matcher() -> None:
    # A backtracking regex would take exponential time here; the segment matcher is linear.
    pattern = like("*a" * 30 + "*b")
    started = time.perf_counter()
    assert not pattern.matches("a" * 20_000)
    assert time.perf_counter() - started < 5  # generous: it takes milliseconds


def test_templates_parse_variables_and_escapes() -> None:
    tokens = parse_template(
        "home/${aws:username}/${*}${?}${$}/${aws:SourceIp, 'none'}*",
        wildcards=True,
        variables=True,
        known_keys=KNOWN_KEYS,
    )
    assert tokens == (
        "home/",
        Variable("aws:username", None),
        "/*?$/",
        Variable("aws:sourceip", "none"),
        Wild.STAR,
    )


def test_rendering_a_template() -> None:
    tokens = parse_template(
        "${aws:username}-*", wildcards=True, variables=True, known_keys=KNOWN_KEYS
    )
    assert render(tokens, lambda key: ("alice",) if key == "aws:username" else None) == (
        "alice",
        "-",
        Wild.STAR,
    )
    with pytest.raises(Unresolved):
        render(tokens, lambda key: None)
    with pytest.raises(Unresolved):  # a multivalued key cannot be a variable
        render(tokens, lambda key: ("a", "b"))


def test_a_template_without_variables_is_compiled_once() -> None:
    template = Template(parse_template("a*", wildcards=True, variables=True, known_keys=KNOWN_KEYS))
    assert template.matches("abc", lambda key: None)
    assert not template.keys


@pytest.mark.parametrize(
    ("pattern", "arn", "expected"),
    [
        ("*", "arn:aws:sagemaker:us-east-1:1:endpoint/e", True),
        ("*", "*", True),
        ("arn:aws:sagemaker:*:*:endpoint/*", "arn:aws:sagemaker:us-east-1:1:endpoint/e", True),
        ("arn:aws:sagemaker:*:*:*", "*", False),
        ("arn:aws:logs:*:*:log-group:/x/*", "arn:aws:logs:r:1:log-group:/x/y:z", True),
        ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/k", True),
        ("arn:aws:s3:::bucket/*", "arn:aws:s3:::other/k", False),
    ],
)
def test_arn_patterns(pattern: str, arn: str, expected: bool) -> None:
    compiled = ArnPattern(pattern, variables=True, known_keys=KNOWN_KEYS)
    assert compiled.matches(arn.split(":", 5), lambda key: None) is expected
