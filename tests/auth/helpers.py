"""Shared builders: principals files, request contexts, and requests signed by real botocore."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.auth import _host_from_url as host_from_url  # type: ignore[attr-defined]
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.credentials import Credentials

from polyhost.auth.context import RequestContext, request_context
from polyhost.auth.policy import PolicySet, compile_policies, parse_policy
from polyhost.auth.principals import PrincipalSet, parse_principals

REGION = "us-east-1"
ACCOUNT = "111122223333"
AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN_AKID = "ASIAIOSFODNN7EXAMPLE"
TOKEN_SECRET = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLETOKENaGVsbG8td29ybGQtc2Vzc2lvbi10b2tlbg=="
SIGNED_AT = dt.datetime(2024, 5, 17, 12, 0, 0, tzinfo=dt.UTC)
URL = "http://127.0.0.1:7080"


def allow_all() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }


def principals_doc(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"principals": list(entries)}


def entry(name: str = "alice", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "access_key_id": AKID,
        "secret_access_key": SECRET,
        "policies": [allow_all()],
    }
    base.update(extra)
    return base


def default_principals() -> PrincipalSet:
    """alice (long-term key) and tom (with a session token), both allowed everything."""
    return parse_principals(
        json.dumps(
            principals_doc(
                entry("alice"),
                entry(
                    "tom",
                    access_key_id=TOKEN_AKID,
                    secret_access_key=TOKEN_SECRET,
                    session_token=TOKEN,
                ),
            )
        )
    )


def policy_set(*documents: dict[str, Any]) -> PolicySet:
    return compile_policies(parse_policy(d, policy_index=i) for i, d in enumerate(documents))


def context(**keys: Any) -> RequestContext:
    """A context for user alice; keyword names are the snake-case context parameters."""
    args: dict[str, Any] = {"username": "alice", "now": SIGNED_AT.timestamp()}
    args.update(keys)
    return request_context(**args)


@dataclass
class Wire:
    """A request as the server receives it: raw path, raw query, header pairs and body."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    signer: SigV4Auth | None = field(default=None, repr=False)
    request: AWSRequest | None = field(default=None, repr=False)

    def with_header(self, name: str, value: str) -> Wire:
        return Wire(self.method, self.path, self.query, [*self.headers, (name, value)], self.body)

    def replacing(self, name: str, value: str) -> Wire:
        headers = [(n, value if n.lower() == name.lower() else v) for n, v in self.headers]
        return Wire(self.method, self.path, self.query, headers, self.body)

    def without(self, name: str) -> Wire:
        headers = [(n, v) for n, v in self.headers if n.lower() != name.lower()]
        return Wire(self.method, self.path, self.query, headers, self.body)


@contextmanager
def frozen_signing_time(when: dt.datetime) -> Iterator[None]:
    """Make botocore sign as if the clock read `when`."""
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        yield


def sign(
    path: str = "/endpoints/My-Endpoint/invocations",
    *,
    method: str = "POST",
    query: str = "",
    body: bytes = b'{"instances": [1, 2, 3]}',
    headers: dict[str, str] | None = None,
    access_key: str = AKID,
    secret: str = SECRET,
    token: str | None = None,
    service: str = "sagemaker",
    region: str = REGION,
    when: dt.datetime = SIGNED_AT,
) -> Wire:
    """A request signed by botocore's own SigV4 signer, as the server would receive it."""
    url = f"{URL}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers=headers or {"Content-Type": "application/json"},
    )
    signer = SigV4Auth(Credentials(access_key, secret, token), service, region)
    with frozen_signing_time(when):
        signer.add_auth(request)
    parts = urlsplit(url)
    # The HTTP client adds Host from the URL; botocore signed that same value.
    pairs = [*request.headers.items(), ("Host", host_from_url(url))]
    return Wire(method, parts.path, parts.query, pairs, body, signer, request)


class _Captured(Exception):
    def __init__(self, request: AWSPreparedRequest) -> None:
        super().__init__("captured")
        self.request = request


def capture_boto3(
    service: str,
    operation: str,
    params: dict[str, Any],
    *,
    access_key: str = AKID,
    secret: str = SECRET,
    token: str | None = None,
    when: dt.datetime = SIGNED_AT,
) -> Wire:
    """What an unmodified boto3 client sends for `operation`, captured just before the wire."""
    client = boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=URL,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )

    def stop(request: AWSPreparedRequest, **_: Any) -> None:
        raise _Captured(request)

    client.meta.events.register("before-send", stop)
    try:
        with frozen_signing_time(when):
            getattr(client, operation)(**params)
    except _Captured as captured:
        prepared = captured.request
    else:  # pragma: no cover - the hook always fires
        raise AssertionError("boto3 sent nothing")
    parts = urlsplit(prepared.url)
    pairs = [*prepared.headers.items(), ("Host", host_from_url(prepared.url))]
    raw = prepared.body
    body = raw if isinstance(raw, bytes) else str(raw or "").encode()
    return Wire(prepared.method, parts.path, parts.query, [(k, _str(v)) for k, v in pairs], body)


def _str(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value
