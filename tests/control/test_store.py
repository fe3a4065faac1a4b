"""Persistence and concurrency of the store, observed through a real server process.

What a client was told must hold after a restart, a `kill -9` included: every answered write is
committed before the answer leaves.
"""

from __future__ import annotations

import http.client
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.control.helpers import make_config, make_endpoint, make_model, raw_call, unique
from tests.support.server import ACCOUNT, ECHO_IMAGE, REGION, PolyhostProcess

ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
VOLATILE = ("EndpointStatus", "LastModifiedTime", "ProductionVariants", "FailureReason")


def _snapshot(server: PolyhostProcess, marker: str, names: dict[str, str]) -> dict[str, Any]:
    """Every Describe and List answer about the resources of one test, as raw JSON."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("DescribeModel", {"ModelName": names["model"]}),
        ("DescribeModel", {"ModelName": names["pipeline"]}),
        ("DescribeEndpointConfig", {"EndpointConfigName": names["config"]}),
        ("ListModels", {"NameContains": marker, "SortBy": "Name"}),
        ("ListEndpointConfigs", {"NameContains": marker}),
        ("ListTags", {"ResourceArn": f"{ARN}:model/{names['model']}"}),
        ("ListTags", {"ResourceArn": f"{ARN}:endpoint/{names['endpoint']}"}),
    ]
    snapshot: dict[str, Any] = {}
    for operation, params in calls:
        status, body = raw_call(server, operation, params)
        assert status == 200, body
        snapshot[f"{operation} {params}"] = body
    status, endpoint = raw_call(server, "DescribeEndpoint", {"EndpointName": names["endpoint"]})
    assert status == 200
    snapshot["endpoint"] = {k: v for k, v in endpoint.items() if k not in VOLATILE}
    status, listed = raw_call(server, "ListEndpoints", {"NameContains": marker})
    snapshot["endpoints"] = [
        {k: v for k, v in e.items() if k not in VOLATILE} for e in listed["Endpoints"]
    ]
    status, missing = raw_call(server, "DescribeModel", {"ModelName": names["deleted"]})
    snapshot["deleted"] = (status, missing)
    return snapshot


def _populate(sagemaker: Any) -> tuple[str, dict[str, str]]:
    marker = unique("keep")
    names = {
        "model": make_model(
            sagemaker,
            f"{marker}-model",
            PrimaryContainer={"Image": ECHO_IMAGE, "Environment": {"A": "1"}},
            Tags=[{"Key": "k", "Value": "v"}],
        ),
        "pipeline": make_model(
            sagemaker,
            f"{marker}-pipe",
            Containers=[{"Image": ECHO_IMAGE}, {"Image": ECHO_IMAGE}],
        ),
        "deleted": make_model(sagemaker, f"{marker}-gone"),
    }
    names["config"] = make_config(sagemaker, names["model"], f"{marker}-config")
    names["endpoint"], _, _ = make_endpoint(sagemaker, f"{marker}-ep")
    sagemaker.add_tags(
        ResourceArn=f"{ARN}:endpoint/{names['endpoint']}", Tags=[{"Key": "e", "Value": "1"}]
    )
    sagemaker.delete_model(ModelName=names["deleted"])
    return marker, names


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
def test_answers_survive_a_restart(server: PolyhostProcess, sagemaker: Any, how: str) -> None:
    marker, names = _populate(sagemaker)
    before = _snapshot(server, marker, names)
    if how == "kill -9":
        server.kill9()
    else:
        server.stop()
    server.restart()
    assert _snapshot(server, marker, names) == before
    sagemaker.delete_endpoint(EndpointName=names["endpoint"])


def test_every_answered_write_survives_kill_9_mid_burst(server: PolyhostProcess) -> None:
    """Writers race a SIGKILL: whatever got its 200 must be there after the restart."""
    marker = unique("burst")
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    enough = threading.Event()

    def writer(worker: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for i in range(200):
            if stop.is_set():
                return
            name = f"{marker}-{worker}-{i}"
            try:
                status, _ = raw_call(
                    server,
                    "CreateModel",
                    {"ModelName": name, "PrimaryContainer": {"Image": ECHO_IMAGE}},
                    connection=conn,
                )
            except (OSError, http.client.HTTPException):
                return  # the server is gone
            if status == 200:
                with lock:
                    answered.append(name)
                    if len(answered) >= 40:
                        enough.set()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    assert enough.wait(timeout=60)
    server.kill9()
    stop.set()
    for thread in threads:
        thread.join()
    server.restart()
    _status, body = raw_call(server, "ListModels", {"NameContains": marker, "MaxResults": 100})
    listed = {m["ModelName"] for m in body["Models"]}
    token = body.get("NextToken")
    while token:
        _, body = raw_call(
            server, "ListModels", {"NameContains": marker, "MaxResults": 100, "NextToken": token}
        )
        listed |= {m["ModelName"] for m in body["Models"]}
        token = body.get("NextToken")
    assert set(answered) <= listed


def test_concurrent_creates_lists_and_name_races(server: PolyhostProcess) -> None:
    marker = unique("conc")
    contested = f"{marker}-same"

    def work(worker: int) -> list[tuple[str, int, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        results: list[tuple[str, int, str]] = []
        for i in range(10):
            name = f"{marker}-{worker}-{i}"
            status, body = raw_call(
                server,
                "CreateModel",
                {"ModelName": name, "PrimaryContainer": {"Image": ECHO_IMAGE}},
                connection=conn,
            )
            results.append(("model", status, name))
            status, body = raw_call(
                server,
                "CreateEndpointConfig",
                {
                    "EndpointConfigName": name,
                    "ProductionVariants": [{"VariantName": "v", "ModelName": name}],
                },
                connection=conn,
            )
            results.append(("config", status, name))
            status, body = raw_call(server, "ListModels", {"NameContains": marker}, connection=conn)
            results.append(("list", status, ""))
        # Everyone at once for one name (case differs): exactly one may win.
        status, body = raw_call(
            server,
            "CreateModel",
            {
                "ModelName": contested.upper() if worker % 2 else contested,
                "PrimaryContainer": {"Image": ECHO_IMAGE},
            },
            connection=conn,
        )
        results.append(("contested", status, body.get("message", "")))
        return results

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [r for rs in pool.map(work, range(8)) for r in rs]
    assert all(status == 200 for kind, status, _ in results if kind != "contested")
    contest = [(status, message) for kind, status, message in results if kind == "contested"]
    assert sum(status == 200 for status, _ in contest) == 1
    assert all(
        message == f'Cannot create already existing model "{ARN}:model/{contested}".'
        for status, message in contest
        if status != 200
    )
    for operation, key in (("ListModels", "Models"), ("ListEndpointConfigs", "EndpointConfigs")):
        seen: set[str] = set()
        token = None
        while True:
            params: dict[str, Any] = {"NameContains": marker, "MaxResults": 100}
            if token:
                params["NextToken"] = token
            _, body = raw_call(server, operation, params)
            seen |= {next(v for k, v in item.items() if k.endswith("Name")) for item in body[key]}
            token = body.get("NextToken")
            if not token:
                break
        created = {name for kind, _, name in results if kind == "model"}
        assert created <= seen
