"""Which AWS identity an asynchronous request acts as: its model's role, as on SageMaker.

SageMaker reads an asynchronous request's input, writes its answer and publishes its
notification as the model's execution role. polyhost does the same with the credentials
`--role-credentials` maps that role to (`backends/role_credentials.py`, the ones the model's
containers get): the request is run on a variant, and that variant's model's ExecutionRoleArn
decides. A model without a role, or whose role the file does not map, is served with the
server's own credentials (boto3's default chain), as model data is; a mapped role whose source
fails (its file removed, say) fails the request with a reason naming the role, and never falls
back to the server's identity.

A role's credentials are read again once `refresh_s` has passed, so rotated keys are used
within a minute. Clients are kept per service and role (botocore's clients are thread-safe and
costly to make: about 20 ms of CPU each); one whose credentials changed is replaced. Calls are
blocking, from worker threads; one lock guards the caches, since boto3's sessions are not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from polyhost.backends.role_credentials import (
    AwsCredentials,
    RoleCredentials,
    RoleCredentialsError,
)

REFRESH_S = 60.0


class CredentialsUnavailable(Exception):
    """A mapped role's credentials could not be read; the message names the role, no secret."""


class AwsClients:
    """boto3 clients that act as a model's role, or as the server where the role is not mapped."""

    def __init__(
        self,
        roles: RoleCredentials,
        timeout_s: float,
        *,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
        connections: int = 32,
    ) -> None:
        """`connections`: the most calls one client makes at once (threads sharing it)."""
        self._roles = roles
        self._connections = connections
        self._timeout = timeout_s
        self._refresh = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._resolved: dict[str, tuple[float, AwsCredentials]] = {}
        self._clients: dict[tuple[str, str | None, str | None], tuple[AwsCredentials | None, Any]]
        self._clients = {}

    def credentials(self, role: str | None) -> AwsCredentials | None:
        """The credentials `role` maps to now; None where the server's own are used."""
        if not self._roles.knows(role):
            return None
        assert role is not None
        with self._lock:
            return self._credentials(role)

    def _credentials(self, role: str) -> AwsCredentials:
        now = self._clock()
        cached = self._resolved.get(role)
        if cached is not None and now < cached[0]:
            return cached[1]
        try:
            found = self._roles.resolve(role)
        except RoleCredentialsError as error:
            raise CredentialsUnavailable(str(error)) from None
        assert found is not None  # the role is mapped: `resolve` raises rather than None
        self._resolved[role] = (now + self._refresh, found)
        return found

    def client(self, service: str, role: str | None, region: str | None = None) -> Any:
        """A client of `service` acting as `role` (see the module's docstring). Raises
        CredentialsUnavailable for a mapped role whose credentials cannot be read."""
        mapped = self._roles.knows(role)
        key = (service, role if mapped else None, region)
        with self._lock:
            credentials = self._credentials(role) if mapped and role is not None else None
            kept = self._clients.get(key)
            if kept is not None and kept[0] == credentials:
                return kept[1]
            client = self._make(service, credentials, region)
            self._clients[key] = (credentials, client)
            return client

    def _make(self, service: str, credentials: AwsCredentials | None, region: str | None) -> Any:
        import boto3
        from botocore.config import Config

        session: Any  # boto3's stubs type `client` per literal service name
        if credentials is None:
            session = boto3.session.Session()
        else:
            # Explicit keys: the endpoint (AWS_ENDPOINT_URL_S3...) and region still come from
            # boto3's standard settings, only the identity is the role's.
            session = boto3.session.Session(
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key,
                aws_session_token=credentials.session_token,
            )
        return session.client(
            service,
            region_name=region,
            config=Config(
                connect_timeout=min(self._timeout, 10.0),
                read_timeout=self._timeout,
                retries={"max_attempts": 3, "mode": "standard"},
                # One connection per thread that may use the client at once (the worker's
                # pool): past botocore's default of 10, each call would open a new one.
                max_pool_connections=self._connections,
            ),
        )
