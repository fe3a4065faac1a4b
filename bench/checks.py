"""A request before the load: the answer must be right, or the numbers would mean nothing."""

from __future__ import annotations

import urllib.error
import urllib.request


class WrongAnswer(RuntimeError):
    """The system under test answered, but not what the benchmark expects."""


def post(
    url: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def expect_ok(
    url: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
    same_body: bool = False,
) -> bytes:
    status, answer = post(url, body, content_type, headers)
    if status != 200:
        raise WrongAnswer(f"{url} answered {status}: {answer[:500]!r}")
    if same_body and answer != body:
        raise WrongAnswer(
            f"{url} did not echo the body ({len(answer)} bytes back, {len(body)} sent)"
        )
    return answer
