"""URLs in messages and logs never carry credentials or presigned signatures."""

from __future__ import annotations

import pytest

from polyhost.modeldata.errors import quote_member, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://bucket/path/model.tar.gz", "s3://bucket/path/model.tar.gz"),
        ("s3://bucket/prefix/", "s3://bucket/prefix/"),
        ("file:///srv/models/m.tar.gz", "file:///srv/models/m.tar.gz"),
        (
            "https://host/m.tar.gz?X-Amz-Signature=abc&X-Amz-Credential=AKIA",
            "https://host/m.tar.gz?…",
        ),
        ("https://user:pa55@host:8443/m.tar.gz#frag", "https://host:8443/m.tar.gz"),
        ("https://[::1", "<unparseable URL>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_quote_member_bounds_and_escapes() -> None:
    assert quote_member("a\nb") == "'a\\nb'"
    long = quote_member("x" * 500)
    assert len(long) <= 200 and long.startswith("'xxx") and long.endswith("…'")
