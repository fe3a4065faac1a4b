"""Multi-model endpoints end to end: a real server, sklearn models under one S3 prefix (a local
S3 server), boto3. Many models answer right, the first call loads and later ones are warm,
concurrent first calls load once, a memory budget evicts the least recently used, and every
error is the caller's or the model's as SageMaker words it. The model-loading metrics read back
through CloudWatch's API and Prometheus, `polyhost invoke --target-model` reaches a model, and
an IAM policy on `sagemaker:TargetModel` decides which models a signed caller may reach."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from tests.support.endpoints import deploy
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import ACCOUNT, ECHO_IMAGE, REGION, PolyhostProcess, ServerFactory
from tests.support.waiting import eventually

MODELS = 6
PADDING = 16 * 1024 * 1024


def _archive(estimator: Any, script: str | None = None) -> bytes:
    buffer = io.BytesIO()
    joblib_bytes = io.BytesIO()
    joblib.dump(estimator, joblib_bytes)
    files = {"model.joblib": joblib_bytes.getvalue()}
    if script is not None:
        files["code/inference.py"] = script.encode()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def rows() -> list[list[float]]:
    rows: list[list[float]] = load_digits().data[1500:1504].astype(np.float32).tolist()
    return rows


@pytest.fixture(scope="module")
def prefix(s3_server: MotoS3, rows: list[list[float]]) -> tuple[str, dict[str, list[int]]]:  # noqa: F811
    """s3://bucket/models/ with MODELS small models, padded ones and a broken one."""
    data = load_digits()
    x, y = data.data.astype(np.float32), data.target
    bucket = s3_server.new_bucket()
    expected: dict[str, list[int]] = {}
    for index in range(MODELS):
        # Each model sees other digits, so each answers differently.
        keep = (y != index) | (np.arange(len(y)) % 2 == 0)
        estimator = LogisticRegression(max_iter=300).fit(x[keep][:600], y[keep][:600])
        name = f"team-a/m{index}.tar.gz"
        s3_server.put(bucket, f"models/{name}", _archive(estimator))
        expected[name] = estimator.predict(np.asarray(rows)).tolist()
        padded = LogisticRegression(max_iter=300).fit(x[keep][:600], y[keep][:600])
        padded.padding_ = np.random.default_rng(index).random(PADDING // 8)
        big = f"big/b{index}.tar.gz"
        s3_server.put(bucket, f"models/{big}", _archive(padded))
        expected[big] = padded.predict(np.asarray(rows)).tolist()
    s3_server.put(
        bucket,
        "models/broken.tar.gz",
        _archive(None, "def model_fn(model_dir):\n    raise RuntimeError('no weights here')\n"),
    )
    return f"s3://{bucket}/models/", expected


@pytest.fixture(scope="module")
def server(s3_server: MotoS3, start_server: ServerFactory) -> PolyhostProcess:  # noqa: F811
    return start_server("--model-load-wait", "20", name="mme", env=s3_server.env())


def _mme(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"Image": "polyhost/sklearn", "Mode": "MultiModel", "ModelDataUrl": prefix, **extra}


def _invoke(runtime: Any, endpoint: str, target: str, rows: list[list[float]]) -> Any:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps(rows),
        ContentType="application/json",
        TargetModel=target,
    )
    return json.loads(answer["Body"].read())


def _error(call: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    return (
        error["Error"]["Code"],
        error["ResponseMetadata"]["HTTPStatusCode"],
        str(error["Error"]["Message"]),
    )


@pytest.fixture(scope="module")
def endpoint(sagemaker: Any, prefix: tuple[str, dict[str, list[int]]]) -> str:
    assert deploy(sagemaker, "mme", [_mme(prefix[0])])["EndpointStatus"] == "InService"
    return "mme"


def test_many_models_answer_right_and_warm(
    runtime: Any, endpoint: str, prefix: tuple[str, dict[str, list[int]]], rows: Any
) -> None:
    _, expected = prefix
    names = [f"team-a/m{i}.tar.gz" for i in range(MODELS)]
    for _ in range(2):
        for name in names:
            assert _invoke(runtime, endpoint, name, rows) == expected[name]


def test_concurrent_first_calls_load_once(
    server: PolyhostProcess,
    runtime: Any,
    sagemaker: Any,
    prefix: tuple[str, dict[str, list[int]]],
    rows: Any,
) -> None:
    url, expected = prefix
    assert deploy(sagemaker, "mme-burst", [_mme(url)])["EndpointStatus"] == "InService"
    name = "team-a/m3.tar.gz"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _invoke(runtime, "mme-burst", name, rows), range(8)))
    assert all(answer == expected[name] for answer in answers)
    # Loaded once here (mme's own container loaded it in another test, or not yet).
    assert server.log().count(f"model {name} loaded into container mme-burst") == 1
    assert server.log().count("loaded into container") >= 1


def test_budget_evicts_least_recently_used(
    runtime: Any, sagemaker: Any, prefix: tuple[str, dict[str, list[int]]], rows: Any
) -> None:
    url, expected = prefix
    budget = {"POLYHOST_MULTI_MODEL_MEMORY_BYTES": str(int(PADDING * 2.6))}
    assert (
        deploy(sagemaker, "mme-budget", [_mme(url, Environment=budget)])["EndpointStatus"]
        == "InService"
    )
    names = [f"big/b{i}.tar.gz" for i in range(4)]
    for _ in range(2):  # four models, room for two: every call past the second evicts
        for name in names:
            assert _invoke(runtime, "mme-budget", name, rows) == expected[name]
    described = sagemaker.describe_endpoint(EndpointName="mme-budget")
    assert described["EndpointStatus"] == "InService"


def test_errors(runtime: Any, endpoint: str, sagemaker: Any, rows: Any) -> None:
    code, status, message = _error(
        lambda: runtime.invoke_endpoint(EndpointName=endpoint, Body=b"[]")
    )
    assert (code, status) == ("ValidationError", 400) and "TargetModel is required" in message
    code, status, message = _error(lambda: _invoke(runtime, endpoint, "nothing.tar.gz", rows))
    assert (code, status) == ("ValidationError", 400)
    assert "/models/nothing.tar.gz" in message
    for bad in ("../m0.tar.gz", "/abs.tar.gz", "a%2e%2e/x", "s3://elsewhere/x.tar.gz"):
        code, status, message = _error(lambda bad=bad: _invoke(runtime, endpoint, bad, rows))
        assert (code, status) == ("ValidationError", 400), (bad, message)
        assert "TargetModel must be a path below" in message
    code, status, message = _error(lambda: _invoke(runtime, endpoint, "broken.tar.gz", rows))
    assert (code, status) == ("ModelError", 424) and "no weights here" in message
    assert _invoke(runtime, endpoint, "team-a/m0.tar.gz", rows)  # still serving the rest


def test_refused_at_create_model(sagemaker: Any) -> None:
    code, _, message = _error(
        lambda: sagemaker.create_model(
            ModelName="mme-single",
            PrimaryContainer=_mme("s3://b/p/", Image=ECHO_IMAGE),
        )
    )
    assert code == "ValidationException" and "serves multiple models" in message


# -- metrics -------------------------------------------------------------------------------------

SM = "AWS/SageMaker"
RESOURCES = "/aws/sagemaker/Endpoints"
PER_CONTAINER = {"EndpointName", "VariantName", "ContainerName"}


def _statistics(cloudwatch: Any, endpoint: str, namespace: str, metric: str) -> dict[str, Any]:
    """The per-container series `metric` of `endpoint` over the last minutes, as one set of
    statistics ({} while the recorder has not written it yet)."""
    listed = cloudwatch.list_metrics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
    )["Metrics"]
    found = [m for m in listed if {d["Name"] for d in m["Dimensions"]} == PER_CONTAINER]
    if not found:
        return {}
    now = datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=found[0]["Dimensions"],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum"],
    )["Datapoints"]
    if not points:
        return {}
    return {
        "SampleCount": sum(p["SampleCount"] for p in points),
        "Sum": sum(p["Sum"] for p in points),
        "Minimum": min(p["Minimum"] for p in points),
        "Maximum": max(p["Maximum"] for p in points),
        "Unit": {p["Unit"] for p in points},
    }


def _prometheus(server: PolyhostProcess, endpoint: str) -> dict[str, float]:
    """The admin listener's samples of `endpoint`, by metric name (one container each)."""
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=30) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if f'endpoint_name="{endpoint}"' in line and not line.startswith("#"):
            name = line.split("{", 1)[0]
            if "_bucket" not in name:
                samples[name] = float(line.rsplit(" ", 1)[1])
    return samples


def test_model_metrics_reach_cloudwatch_and_prometheus(
    server: PolyhostProcess,
    runtime: Any,
    sagemaker: Any,
    prefix: tuple[str, dict[str, list[int]]],
    rows: Any,
) -> None:
    url, expected = prefix
    assert deploy(sagemaker, "mme-metrics", [_mme(url)])["EndpointStatus"] == "InService"
    disabled = _mme(url, MultiModelConfig={"ModelCacheSetting": "Disabled"})
    assert deploy(sagemaker, "mme-metrics-off", [disabled])["EndpointStatus"] == "InService"
    calls = ["m0", "m0", "m1", "m0", "m1"]  # two cold, three warm
    for name in calls:
        target = f"team-a/{name}.tar.gz"
        assert _invoke(runtime, "mme-metrics", target, rows) == expected[target]
    # Cache disabled: loaded, invoked, unloaded.
    assert (
        _invoke(runtime, "mme-metrics-off", "team-a/m2.tar.gz", rows)
        == (expected["team-a/m2.tar.gz"])
    )

    promql = _prometheus(server, "mme-metrics")
    assert promql["polyhost_model_cache_hits_total"] == 3
    assert promql["polyhost_model_cache_misses_total"] == 2
    assert promql["polyhost_loaded_models"] == 2
    for histogram in ("loading_wait_time", "downloading_time", "loading_time"):
        assert promql[f"polyhost_model_{histogram}_microseconds_count"] == 2, histogram
        assert promql[f"polyhost_model_{histogram}_microseconds_sum"] > 0, histogram
    assert promql["polyhost_model_unloading_time_microseconds_count"] == 0
    off = _prometheus(server, "mme-metrics-off")
    assert off["polyhost_model_unloading_time_microseconds_count"] == 1
    assert off["polyhost_loaded_models"] == 0

    cloudwatch = server.cloudwatch()
    hits = eventually(
        lambda: _statistics(cloudwatch, "mme-metrics", SM, "ModelCacheHit"),
        "ModelCacheHit in CloudWatch",
        timeout=90,
        interval=0.5,
        # The five calls may straddle the recorder's 10-second boundary: wait for all of them.
        until=lambda stats: stats.get("SampleCount", 0) >= 5,
    )
    assert (hits["SampleCount"], hits["Sum"], hits["Unit"]) == (5, 3, {"None"})
    for metric in ("ModelLoadingWaitTime", "ModelDownloadingTime", "ModelLoadingTime"):
        stats = eventually(
            lambda m=metric: _statistics(cloudwatch, "mme-metrics", SM, m),
            metric,
            until=lambda stats: stats.get("SampleCount", 0) >= 2,
        )
        assert stats["SampleCount"] == 2 and stats["Minimum"] > 0, (metric, stats)
        assert stats["Unit"] == {"Microseconds"}
    # Each cold call waited at least as long as its model's container load took.
    wait = _statistics(cloudwatch, "mme-metrics", SM, "ModelLoadingWaitTime")
    load = _statistics(cloudwatch, "mme-metrics", SM, "ModelLoadingTime")
    assert wait["Sum"] >= load["Sum"]
    count = eventually(
        lambda: _statistics(cloudwatch, "mme-metrics", RESOURCES, "LoadedModelCount"),
        "LoadedModelCount",
        until=lambda stats: stats.get("Maximum") == 2,
        timeout=30,
        interval=0.5,
    )
    assert count["Unit"] == {"None"}
    assert _statistics(cloudwatch, "mme-metrics", SM, "ModelUnloadingTime") == {}
    unloading = eventually(
        lambda: _statistics(cloudwatch, "mme-metrics-off", SM, "ModelUnloadingTime"),
        "ModelUnloadingTime",
    )
    assert unloading["SampleCount"] == 1 and unloading["Minimum"] > 0
    cold = _statistics(cloudwatch, "mme-metrics-off", SM, "ModelCacheHit")
    assert (cold["SampleCount"], cold["Sum"]) == (1, 0)
    # ListMetrics names them beside the series every endpoint has.
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=SM)["Metrics"]}
    assert {"ModelCacheHit", "ModelLoadingTime", "ContainerLatency"} <= names


# -- the CLI -------------------------------------------------------------------------------------


def test_cli_invoke_reaches_the_target_model(
    server: PolyhostProcess, endpoint: str, prefix: tuple[str, dict[str, list[int]]], rows: Any
) -> None:
    _, expected = prefix
    target = "team-a/m4.tar.gz"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "polyhost", "invoke", endpoint, json.dumps(rows)),
            *("--content-type", "application/json", "--target-model", target),
        ],
        capture_output=True,
        env={**os.environ, "POLYHOST_URL": server.url},
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == expected[target]


def test_ls_instances_and_the_admin_api_show_the_models_a_container_holds(
    server: PolyhostProcess, endpoint: str, runtime: Any, rows: Any
) -> None:
    _invoke(runtime, endpoint, "team-a/m1.tar.gz", rows)  # at least one model is loaded
    with urllib.request.urlopen(server.admin_url + "/api/containers", timeout=30) as answer:
        containers = json.loads(answer.read())["containers"]
    (row,) = [c for c in containers if c["endpoint"] == endpoint]
    loaded = row["loaded_models"]
    assert isinstance(loaded, int) and loaded >= 1, row
    result = subprocess.run(
        [sys.executable, "-m", "polyhost", "ls", "--instances", "--url", server.url,
         "--admin-url", server.admin_url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("ENDPOINT ")))
    line = next(line for line in lines[header:] if line.startswith(f"{endpoint} "))
    assert line.split()[-1] == f"{row['hostname']}(models={loaded})", line


# -- IAM on TargetModel -------------------------------------------------------------------------

AUTH_ENDPOINT = "mme-auth"
KEYS = {
    "admin": ("AKIAMMEADMIN00000001", "admin-secret-key-0123456789abcdef"),
    "team-a": ("AKIAMMETEAMA00000001", "team-a-secret-key-0123456789abcdef"),
}
POLICIES = {
    "admin": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    },
    "team-a": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["sagemaker:InvokeEndpoint"],
                "Resource": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{AUTH_ENDPOINT}",
                "Condition": {"StringLike": {"sagemaker:TargetModel": "team-a/*"}},
            }
        ],
    },
}


@pytest.fixture(scope="module")
def auth_server(
    s3_server: MotoS3,  # noqa: F811
    start_server: ServerFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> PolyhostProcess:
    principals = {
        "principals": [
            {
                "name": name,
                "access_key_id": key,
                "secret_access_key": secret,
                "policies": [POLICIES[name]],
            }
            for name, (key, secret) in KEYS.items()
        ]
    }
    path: Path = tmp_path_factory.mktemp("mme-auth") / "principals.json"
    path.write_text(json.dumps(principals), encoding="utf-8")
    # Isolation is not what this test is about.
    return start_server(
        "--auth-file", str(path), "--no-isolate", name="mme-auth", env=s3_server.env()
    )


def _signed(server: PolyhostProcess, service: str, who: str) -> Any:
    key, secret = KEYS[who]
    make: Any = boto3.client  # the service is a plain string here, not one of its literals
    return make(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def test_a_target_model_condition_decides_which_models_a_caller_reaches(
    auth_server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    prefix: tuple[str, dict[str, list[int]]],
    rows: Any,
) -> None:
    url, expected = prefix
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    # team-b's model is the same archive as team-a's m1: only the policy tells them apart.
    original = s3_server.client().get_object(Bucket=bucket, Key="models/team-a/m1.tar.gz")
    s3_server.put(bucket, "models/team-b/m1.tar.gz", original["Body"].read())
    admin = _signed(auth_server, "sagemaker", "admin")
    assert deploy(admin, AUTH_ENDPOINT, [_mme(url)])["EndpointStatus"] == "InService"
    team_a = _signed(auth_server, "sagemaker-runtime", "team-a")
    target = "team-a/m1.tar.gz"
    assert _invoke(team_a, AUTH_ENDPOINT, target, rows) == expected[target]
    code, status, message = _error(lambda: _invoke(team_a, AUTH_ENDPOINT, "team-b/m1.tar.gz", rows))
    assert code == "AccessDeniedException", (code, status, message)
    assert "sagemaker:InvokeEndpoint" in message
    # The admin reaches team-b's copy, so the refusal above was the policy's, not a missing model.
    runtime_admin = _signed(auth_server, "sagemaker-runtime", "admin")
    assert _invoke(runtime_admin, AUTH_ENDPOINT, "team-b/m1.tar.gz", rows) == expected[target]
    # A path that matches "team-a/*" but climbs out of it is refused before anything is fetched.
    code, _, message = _error(
        lambda: _invoke(team_a, AUTH_ENDPOINT, "team-a/../team-b/m1.tar.gz", rows)
    )
    assert code == "ValidationError" and "TargetModel must be a path below" in message
