"""CloudWatch Logs on `POST /` with `X-Amz-Target: Logs_20140328.<Op>`: AWS JSON 1.1's adapter
(http/aws/json_protocol.py) over `LogsApi` (logs/api.py).

So `boto3.client("logs", endpoint_url=...)` reads containers' logs from polyhost as it would
from CloudWatch. What is this service's own: its target prefix, its body cap and its words for a
body nested too deep, and that the list of streams is taken on the event loop (the deployer's
state lives there and costs no I/O to read) while decoding, file reading and encoding run on the
worker thread, so a large scan never stalls invocations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from polyhost.http.aws.json_protocol import AwsJsonAdapter, JsonService, ServiceCall
from polyhost.logs.api import Catalog, LogsApi

LOGS_TARGET = "Logs_20140328"  # the service part of X-Amz-Target, as PolyhostApp routes it
LOGS_SERVICE = JsonService(
    "CloudWatch Logs", LOGS_TARGET + ".", "no CloudWatch Logs request needs that many."
)
# Far above any request of these four operations (a hundred stream names and a token).
MAX_BODY_BYTES = 256 * 1024

CatalogSource = Callable[[], Catalog]


def cloudwatch_logs_adapter(
    api: LogsApi, catalog: CatalogSource, max_body_bytes: int = MAX_BODY_BYTES
) -> AwsJsonAdapter:
    """Serves CloudWatch Logs' read operations over the streams `catalog()` lists."""

    def bind() -> ServiceCall:
        streams = catalog()  # on the event loop, where the deployer's state lives

        def call(operation: str, params: dict[str, Any]) -> Mapping[str, Any]:
            return api.call(operation, params, streams)

        return call

    return AwsJsonAdapter(LOGS_SERVICE, bind, max_body_bytes)
