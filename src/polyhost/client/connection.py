"""Where the server is and how to talk to it: boto3 clients and the one polyhost-only route.

polyhost does not need AWS credentials today, but botocore signs every request and refuses to
run without any, so dummy ones are used when none are configured. When credentials *are*
configured (environment, profile) they are used as they are, so a server that verifies SigV4
signatures sees the caller's own keys. Instance-metadata and container-role providers are left
out of the lookup: they would cost seconds of network timeouts on a machine outside AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

DEFAULT_URL = "http://127.0.0.1:7080"
URL_ENV = "POLYHOST_URL"
DUMMY_KEY = "polyhost"
# Control-plane calls are quick; an invocation may take the server's 60 s container timeout.
CONTROL_TIMEOUT_S = 30.0
INVOKE_TIMEOUT_S = 120.0


def default_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_URL


class ServerError(Exception):
    """A non-2xx answer from a polyhost-only route, with its `__type` code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Unreachable(Exception):
    """The server did not answer at all (not running, wrong URL)."""


def _local_credentials(session: botocore.session.Session) -> Credentials:
    resolver = session.get_component("credential_provider")
    for slow in ("iam-role", "container-role"):
        # Provider names differ across botocore versions; a missing one is nothing to remove.
        with contextlib.suppress(Exception):
            resolver.remove(slow)
    found = session.get_credentials()
    if found is None:
        return Credentials(DUMMY_KEY, DUMMY_KEY)
    frozen = found.get_frozen_credentials()
    return Credentials(frozen.access_key or DUMMY_KEY, frozen.secret_key or DUMMY_KEY, frozen.token)


@dataclass(frozen=True)
class Connection:
    """The server's URL plus the region and credentials every request is signed with."""

    url: str
    region: str
    credentials: Credentials

    @classmethod
    def resolve(cls, url: str | None = None) -> Connection:
        session = botocore.session.get_session()
        region = session.get_config_variable("region") or "us-east-1"
        url = (url or default_url()).rstrip("/")
        if "://" not in url:  # `--url 127.0.0.1:7080` means what it says
            url = f"http://{url}"
        return cls(url, region, _local_credentials(session))

    def _client(self, service: str, read_timeout: float) -> Any:
        import boto3  # imported here: it takes a noticeable part of the command's start time

        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.credentials.access_key,
            aws_secret_access_key=self.credentials.secret_key,
            aws_session_token=self.credentials.token,
            # One attempt: a retried CreateModel or InvokeEndpoint is not what the user asked for.
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=read_timeout,
            ),
        )

    def sagemaker(self) -> SageMakerClient:
        client: SageMakerClient = self._client("sagemaker", CONTROL_TIMEOUT_S)
        return client

    def autoscaling(self) -> Any:
        """An `application-autoscaling` client (`polyhost ls` lists the scalable targets)."""
        return self._client("application-autoscaling", CONTROL_TIMEOUT_S)

    def runtime(self) -> SageMakerRuntimeClient:
        client: SageMakerRuntimeClient = self._client("sagemaker-runtime", INVOKE_TIMEOUT_S)
        return client

    def get_json(self, path: str, params: dict[str, str | int]) -> dict[str, Any]:
        """GET a polyhost route, signed like the boto3 calls; raises ServerError / Unreachable."""
        query = urlencode({k: str(v) for k, v in params.items()}, quote_via=quote)
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        request = AWSRequest(method="GET", url=url, headers={"Accept": "application/json"})
        SigV4Auth(self.credentials, "sagemaker", self.region).add_auth(request)
        prepared = urllib.request.Request(url, headers=dict(request.headers.items()))
        try:
            with urllib.request.urlopen(prepared, timeout=CONTROL_TIMEOUT_S) as answer:
                return dict(json.loads(answer.read()))
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                body = json.loads(raw)
                code, message = str(body["__type"]), str(body["message"])
            except (ValueError, KeyError, TypeError):
                code, message = f"HTTP {error.code}", raw.decode("utf-8", "replace")[:500]
            raise ServerError(error.code, code, message) from None
        except (urllib.error.URLError, OSError) as error:
            raise Unreachable(str(getattr(error, "reason", error))) from None
        except ValueError as error:
            raise ServerError(200, "InvalidResponse", f"not JSON: {error}") from None


def endpoint_path(prefix: str, name: str, suffix: str) -> str:
    return f"{prefix}/{quote(name, safe='')}/{suffix}"
