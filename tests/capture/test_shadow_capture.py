"""Data capture of shadow variants (ShadowProductionVariants): a real server whose endpoint
has a shadow and a DataCaptureConfig, a real S3 (moto's server).

As SageMaker does, the shadow's copies are captured under the shadow variant's name
(`{prefix}/{endpoint}/{shadow variant}/...`), their input and the shadow's own answer, beside
the production variant's records; the caller only ever sees the production answer."""

from __future__ import annotations

from typing import Any

from tests.capture.test_data_capture import capture_config, metric, records
from tests.control.helpers import unique
from tests.support.endpoints import create_model, echo_container, wait_status
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import ServerFactory
from tests.support.waiting import eventually


def _variant(name: str, model: str) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }


def _deploy(sagemaker: Any, capture: dict[str, Any]) -> str:
    name = unique("shcap")
    create_model(sagemaker, f"{name}-prod", [echo_container(None, ECHO_NAME="prod")])
    create_model(sagemaker, f"{name}-cand", [echo_container(None, ECHO_NAME="cand")])
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[_variant("prod", f"{name}-prod")],
        ShadowProductionVariants=[_variant("cand", f"{name}-cand")],
        DataCaptureConfig=capture,
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    return name


def _data(found: list[tuple[str, dict[str, Any]]], side: str) -> list[str]:
    return sorted(record["captureData"][side]["data"] for _, record in found)


def test_shadow_copies_are_captured_under_the_shadow_variant(
    start_server: ServerFactory,
    s3_server: MotoS3,  # noqa: F811
) -> None:
    bucket = s3_server.new_bucket("shadow")
    server = start_server("--data-capture-flush-s", "0.5", name="shcap", env=s3_server.env())
    sagemaker, runtime = server.sagemaker(), server.runtime()
    name = _deploy(sagemaker, capture_config(f"s3://{bucket}/mirror"))
    bodies = [f"r{index}" for index in range(10)]
    for body in bodies:
        answer = runtime.invoke_endpoint(
            EndpointName=name, Body=body.encode(), ContentType="text/csv"
        )
        assert answer["InvokedProductionVariant"] == "prod"
        assert answer["Body"].read() == b"prod:" + body.encode()

    # A streamed call is not captured, nor its shadow's copy.
    streamed = runtime.invoke_endpoint_with_response_stream(
        EndpointName=name, Body=b"streamed", ContentType="text/csv"
    )
    assert b"".join(e["PayloadPart"]["Bytes"] for e in streamed["Body"]) == b"prod:streamed"
    eventually(
        lambda: metric(server, "polyhost_invocations_total", name) >= 22,
        "the shadow to have served every copy",
    )

    production = records(s3_server, bucket, f"mirror/{name}/prod", at_least=10)
    shadow = records(s3_server, bucket, f"mirror/{name}/cand", at_least=10)
    assert _data(production, "endpointInput") == _data(shadow, "endpointInput") == sorted(bodies)
    assert _data(production, "endpointOutput") == sorted(f"prod:{b}" for b in bodies)
    assert _data(shadow, "endpointOutput") == sorted(f"cand:{b}" for b in bodies)
    for key, record in shadow:
        assert key.startswith(f"mirror/{name}/cand/") and key.endswith(".jsonl")
        assert record["captureData"]["endpointInput"]["encoding"] == "CSV"
        assert record["eventVersion"] == "0"

    def counted(variant: str) -> bool:
        return metric_of(server, name, variant) == 10

    eventually(lambda: counted("prod") and counted("cand"), "both variants' records counted")


def test_a_shadow_is_sampled_as_production_is(
    start_server: ServerFactory,
    s3_server: MotoS3,  # noqa: F811
) -> None:
    """0 % captures neither variant; Input only captures the shadow's input only."""
    bucket = s3_server.new_bucket("shadowsample")
    server = start_server("--data-capture-flush-s", "0.3", name="shsample", env=s3_server.env())
    sagemaker, runtime = server.sagemaker(), server.runtime()
    inputs = capture_config(f"s3://{bucket}/in", CaptureOptions=[{"CaptureMode": "Input"}])
    name = _deploy(sagemaker, inputs)
    for index in range(5):
        runtime.invoke_endpoint(EndpointName=name, Body=f"{index}".encode(), ContentType="text/csv")
    shadow = records(s3_server, bucket, f"in/{name}/cand", at_least=5)
    assert len(shadow) == 5
    assert all(list(record["captureData"]) == ["endpointInput"] for _, record in shadow)

    none = _deploy(sagemaker, capture_config(f"s3://{bucket}/none", percentage=0))
    for index in range(5):
        runtime.invoke_endpoint(EndpointName=none, Body=f"{index}".encode(), ContentType="text/csv")
    eventually(
        lambda: metric(server, "polyhost_invocations_total", none) >= 10,
        "the shadow to have served its copies",
    )
    assert records(s3_server, bucket, f"none/{none}", at_least=0, timeout=1.5) == []


def metric_of(server: Any, endpoint: str, variant: str) -> float:
    import urllib.request

    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    wanted = (f'endpoint_name="{endpoint}"', f'variant_name="{variant}"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("polyhost_data_capture_records_total{")
        and all(label in line for label in wanted)
    )
