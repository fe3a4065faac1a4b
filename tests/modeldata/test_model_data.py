"""ModelDataUrl end to end: file://, s3:// (a real S3-compatible server), https:// (a local TLS
server: refused on loopback unless allowed), and bad tarballs."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory
from tests.support.tls_server import AcceptRecorder, TlsFiles, make_certificate


def model_tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFiles]:
    cert, key = make_certificate(tmp_path_factory.mktemp("tls"))
    server = TlsFiles(cert, key)
    yield server
    server.close()


@pytest.fixture(scope="module")
def server(
    s3_server: MotoS3,  # noqa: F811
    tls: TlsFiles,
    start_server: ServerFactory,  # last: the server stops before S3 and TLS do
) -> PolyhostProcess:
    """Trusts the local TLS server; of loopback, allows only the name `localhost`."""
    return start_server(
        "--allow-model-host",
        "localhost",
        name="modeldata",
        env={**s3_server.env(), "SSL_CERT_FILE": str(tls.cert)},
    )


def test_file_url(sagemaker: Any, runtime: Any, tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(model_tarball({"weights.txt": b"file weights", "code/x.py": b"#"}))
    container = {**echo_container("m"), "ModelDataUrl": f"file://{archive}"}
    assert deploy(sagemaker, "fromfile", [container])["EndpointStatus"] == "InService"
    body, _ = invoke(runtime, "fromfile", b"", CustomAttributes="model-file=weights.txt")
    assert body == b"file weights"


def test_s3_url(sagemaker: Any, runtime: Any, s3_server: MotoS3) -> None:  # noqa: F811
    bucket = s3_server.new_bucket()
    s3_server.put(bucket, "models/m/model.tar.gz", model_tarball({"weights.txt": b"s3 weights"}))
    containers = [
        {**echo_container("a"), "ModelDataUrl": f"s3://{bucket}/models/m/model.tar.gz"},
        {**echo_container("b"), "ModelDataUrl": f"s3://{bucket}/models/m/model.tar.gz"},
    ]
    assert deploy(sagemaker, "froms3", containers, mode="Direct")["EndpointStatus"] == "InService"
    for host in ("a", "b"):
        body, _ = invoke(
            runtime, "froms3", b"", TargetContainerHostname=host,
            CustomAttributes="model-file=weights.txt",
        )  # fmt: skip
        assert body == b"s3 weights"


def test_missing_s3_object_fails_endpoint(sagemaker: Any, s3_server: MotoS3) -> None:  # noqa: F811
    bucket = s3_server.new_bucket()
    container = {**echo_container("m"), "ModelDataUrl": f"s3://{bucket}/nothing.tar.gz"}
    description = deploy(sagemaker, "nos3", [container])
    assert description["EndpointStatus"] == "Failed"
    assert "Could not get the model data of container m" in description["FailureReason"]
    assert f"s3://{bucket}/nothing.tar.gz" in description["FailureReason"]


def test_malicious_tarball_fails_endpoint(sagemaker: Any, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(model_tarball({"../../escaped.txt": b"gotcha"}))
    container = {**echo_container("m"), "ModelDataUrl": f"file://{archive}"}
    description = deploy(sagemaker, "evil", [container])
    assert description["EndpointStatus"] == "Failed"
    assert "escaped.txt" in description["FailureReason"]
    assert not (tmp_path.parent / "escaped.txt").exists()
    assert not (tmp_path.parent.parent / "escaped.txt").exists()


def test_https_from_an_allowed_host(sagemaker: Any, runtime: Any, tls: TlsFiles) -> None:
    tls.files["/allowed.tar.gz"] = model_tarball({"weights.txt": b"https weights"})
    url = f"https://localhost:{tls.port}/allowed.tar.gz"
    container = {**echo_container("m"), "ModelDataUrl": url}
    assert deploy(sagemaker, "fromhttps", [container])["EndpointStatus"] == "InService"
    body, _ = invoke(runtime, "fromhttps", b"", CustomAttributes="model-file=weights.txt")
    assert body == b"https weights"


def test_https_from_loopback_is_refused_without_a_connection(sagemaker: Any) -> None:
    """Bound: zero connections reach the listening socket the URL names."""
    listener = AcceptRecorder("127.0.0.1")
    try:
        url = f"https://127.0.0.1:{listener.port}/m.tar.gz"
        description = deploy(sagemaker, "loopback", [{**echo_container("m"), "ModelDataUrl": url}])
        assert description["EndpointStatus"] == "Failed"
        assert description["FailureReason"] == (
            "Could not get the model data of container m for production variant AllTraffic: "
            f"Model data {url} was refused: 127.0.0.1, a loopback address; model data may only "
            "come from public addresses unless the server is started with --allow-model-host "
            "127.0.0.1."
        )
        assert listener.connections() == 0
    finally:
        listener.close()
