"""`polyhost rm ENDPOINT [--all]`: delete an endpoint, and with --all what it was built from.

With --all the order is the SageMaker Python SDK's (`predictor.delete_model()` then
`predictor.delete_endpoint()`): read the endpoint and its config to learn the model names,
delete the models, then the endpoint config, then the endpoint. SageMaker (and polyhost) allow
deleting a model or config a live endpoint uses; the endpoint serves on until it is deleted.
Deleting something already gone counts as done, so an interrupted `rm` can simply be re-run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from botocore.exceptions import ClientError

from polyhost.client.errors import CommandFailed, is_not_found
from polyhost.client.resources import describe_config, describe_endpoint
from polyhost.client.wait import Poller, wait_deleted

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient


def _delete(kind: str, name: str, call: Callable[[], object], out: TextIO) -> None:
    try:
        call()
    except ClientError as error:
        if not is_not_found(error):
            raise
        print(f"{kind} {name}: already gone", file=out)
        return
    print(f"{kind} {name}: deleted", file=out)


def remove(
    sm: SageMakerClient,
    name: str,
    out: TextIO,
    everything: bool = False,
    wait: bool = True,
    timeout_s: float = 300.0,
) -> None:
    endpoint = describe_endpoint(sm, name)
    if endpoint is None:
        raise CommandFailed(f"endpoint {name} not found (`polyhost ls` lists the endpoints)")
    if everything:
        config_name = str(endpoint.get("EndpointConfigName") or "")
        config = describe_config(sm, config_name) if config_name else None
        models = dict.fromkeys(
            str(v["ModelName"]) for v in (config or {}).get("ProductionVariants") or []
        )
        for model in models:
            _delete("model", model, functools.partial(sm.delete_model, ModelName=model), out)
        if config_name:
            _delete(
                "endpoint config",
                config_name,
                lambda: sm.delete_endpoint_config(EndpointConfigName=config_name),
                out,
            )
    _delete("endpoint", name, lambda: sm.delete_endpoint(EndpointName=name), out)
    if wait:
        wait_deleted(sm, name, Poller(timeout_s))
        print(f"endpoint {name} is gone", file=out)
