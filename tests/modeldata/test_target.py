"""TargetModel paths: what is a path below the prefix and what is refused before any fetch."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from polyhost.modeldata.target import (
    MAX_TARGET_CHARS,
    TargetModelRefused,
    check_target,
    target_refusal,
    target_url,
)

ACCEPTED = [
    "model.tar.gz",
    "team-a/churn/v1.tar.gz",
    "a b/c d.tar.gz",
    "name..with..dots.tar.gz",
    "...tar.gz",
    "%20space.tar.gz",
    "ümlaut/modèle.tar.gz",
    "x" * MAX_TARGET_CHARS,
    "a@b+c=d.tar.gz",
]

REFUSED = [
    ("", "empty"),
    ("x" * (MAX_TARGET_CHARS + 1), "longer"),
    ("../secret.tar.gz", "'..'"),
    ("a/../../b", "'..'"),
    ("a/..", "'..'"),
    ("./a", "'.'"),
    ("a//b", "empty"),
    ("a/", "empty"),
    ("/etc/passwd", "absolute"),
    ("\\\\server\\share", "backslash"),
    ("a\\..\\b", "backslash"),
    ("a\x00b", "control"),
    ("a\nb", "control"),
    ("a\x7fb", "control"),
    ("a\x85b", "control"),
    ("%2e%2e/x", "%2e"),
    ("%2E%2E%2Fx", "%2E"),
    ("a%2fb", "%2f"),
    ("a%5cb", "%5c"),
    ("a%00b", "%00"),
    ("a%0Ab", "%0A"),
    ("%252e%252e/x", "%25"),
    ("a?b", "'?'"),
    ("a#b", "'#'"),
    ("s3://other-bucket/model.tar.gz", "URL"),
    ("https://evil.example/m.tar.gz", "URL"),
    ("file:/etc/passwd", "URL"),
    ("C:model.tar.gz", "URL"),
]


@pytest.mark.parametrize("target", ACCEPTED)
def test_accepted(target: str) -> None:
    assert target_refusal(target) is None
    assert check_target(target) == target


@pytest.mark.parametrize(("target", "words"), REFUSED)
def test_refused(target: str, words: str) -> None:
    reason = target_refusal(target)
    assert reason is not None and words in reason, reason
    with pytest.raises(TargetModelRefused, match="TargetModel must be a path below"):
        target_url("s3://bucket/prefix/", target)


def test_s3_keys_are_literal() -> None:
    assert target_url("s3://b/models/", "a/%20b.tar.gz") == "s3://b/models/a/%20b.tar.gz"
    assert target_url("s3://b/models", "m.tar.gz") == "s3://b/models/m.tar.gz"


@pytest.mark.parametrize("target", ACCEPTED)
def test_file_and_https_urls_decode_back_to_the_target(target: str) -> None:
    for prefix in ("file:///srv/models/", "https://models.example.com/all/"):
        url = target_url(prefix, target)
        parts = urlsplit(url)
        assert parts.query == "" and parts.fragment == ""
        path = unquote(parts.path)
        assert path == unquote(urlsplit(prefix).path) + target
