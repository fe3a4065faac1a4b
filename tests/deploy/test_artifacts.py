"""ArtifactStore end to end: file://, s3:// against a real S3 server, https:// against a local
TLS server; caching by URL and by content; concurrent fetches; errors fit for FailureReason."""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import ssl
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import pytest

from polyhost.deploy.artifacts import ArtifactError, ArtifactStore
from tests.support.s3 import MotoS3, s3_server

__all__ = ["s3_server"]  # the fixture, used by name below

MiB = 1 << 20


def tarball(files: dict[str, bytes], mode: Literal["w", "w:gz"] = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def read_tree(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


MODEL = {"model.pt": b"weights-1", "code/inference.py": b"def model_fn(d):\n    return d\n"}


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "cache", max_extracted_bytes=8 * MiB)


def models(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "models").iterdir())


# --- file:// -----------------------------------------------------------------------------------


def test_file_tar_gz_is_extracted_once_and_reused(
    store: ArtifactStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tarball(MODEL))
    url = f"file://{archive}"
    folder = store.fetch_and_extract(url, timeout_s=30)
    assert read_tree(folder) == MODEL
    assert folder.parent == tmp_path / "cache" / "models"
    assert folder.name == hashlib.sha256(archive.read_bytes()).hexdigest()
    with caplog.at_level(logging.INFO, logger="polyhost.deploy.artifacts"):
        assert store.fetch_and_extract(url, timeout_s=30) == folder
    assert "unchanged; using the cached copy" in caplog.text
    assert "reading model data" not in caplog.text  # not even re-hashed


def test_plain_tar_and_url_forms(store: ArtifactStore, tmp_path: Path) -> None:
    archive = tmp_path / "my model.tar"
    archive.write_bytes(tarball(MODEL, mode="w"))
    folder = store.fetch_and_extract(f"file://localhost{archive}".replace(" ", "%20"), 30)
    assert read_tree(folder) == MODEL


def test_a_changed_file_gets_a_new_folder_and_the_old_one_stays(
    store: ArtifactStore, tmp_path: Path
) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tarball(MODEL))
    first = store.fetch_and_extract(f"file://{archive}", 30)
    archive.write_bytes(tarball({**MODEL, "model.pt": b"weights-2"}))
    second = store.fetch_and_extract(f"file://{archive}", 30)
    assert second != first
    assert (second / "model.pt").read_bytes() == b"weights-2"
    assert (first / "model.pt").read_bytes() == b"weights-1"  # running replicas keep theirs


def test_the_same_content_under_two_urls_is_extracted_once(
    store: ArtifactStore, tmp_path: Path
) -> None:
    data = tarball(MODEL)
    (tmp_path / "a.tar.gz").write_bytes(data)
    (tmp_path / "b.tar.gz").write_bytes(data)
    first = store.fetch_and_extract(f"file://{tmp_path}/a.tar.gz", 30)
    second = store.fetch_and_extract(f"file://{tmp_path}/b.tar.gz", 30)
    assert first == second
    assert models(tmp_path) == [first]


def test_a_directory_is_used_as_it_is(store: ArtifactStore, tmp_path: Path) -> None:
    folder = tmp_path / "model-folder"
    (folder / "code").mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"w")
    assert store.fetch_and_extract(f"file://{folder}", 30) == folder
    assert store.fetch_and_extract(f"file://{folder}/", 30) == folder
    assert models(tmp_path) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:///no/such/model.tar.gz", "Failed to read model data from file:///no/such/model"),
        ("file://otherhost/m.tar.gz", "names host 'otherhost'; a file:// URL must be local"),
        ("ftp://host/m.tar.gz", "is not supported: use s3://, https:// or file://"),
        ("http://host/m.tar.gz", "is not supported: use s3://, https:// or file://"),
        ("s3:///key.tar.gz", "names no bucket"),
    ],
)
def test_bad_urls_are_clear_errors(store: ArtifactStore, url: str, expected: str) -> None:
    with pytest.raises(ArtifactError, match=expected.replace(".", r"\.").replace("/", "/")):
        store.fetch_and_extract(url, 30)


def test_an_archive_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    small = ArtifactStore(tmp_path / "cache", max_extracted_bytes=1000)
    archive = tmp_path / "model.tar"
    archive.write_bytes(tarball({"a": b"x" * 5000}, mode="w"))
    with pytest.raises(ArtifactError, match=r"is \d+ bytes, more than the limit of 1000 bytes"):
        small.fetch_and_extract(f"file://{archive}", 30)


def test_concurrent_fetches_of_one_url_agree(store: ArtifactStore, tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tarball({f"f{i}": bytes(20_000) for i in range(50)}))
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda _: store.fetch_and_extract(f"file://{archive}", 30), range(8))
        )
    assert len(set(results)) == 1
    assert models(tmp_path) == [results[0]]
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_concurrent_fetches_of_one_content_under_many_urls_agree(
    store: ArtifactStore, tmp_path: Path
) -> None:
    data = tarball({f"f{i}": bytes(20_000) for i in range(50)})
    for i in range(6):
        (tmp_path / f"m{i}.tar.gz").write_bytes(data)
    with ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(
                lambda i: store.fetch_and_extract(f"file://{tmp_path}/m{i}.tar.gz", 30), range(6)
            )
        )
    assert len(set(results)) == 1
    assert models(tmp_path) == [results[0]]
    assert len(read_tree(results[0])) == 50
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


# --- s3:// (moto's S3 server, a real HTTP server) ------------------------------------------------


@pytest.fixture
def s3_env(s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoS3:
    """Point boto3 at the test S3 with the standard settings only, as a user would."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


def test_s3_object_is_fetched_then_revalidated_without_download(
    store: ArtifactStore, s3_env: MotoS3, tmp_path: Path
) -> None:
    bucket = s3_env.new_bucket()
    s3_env.put(bucket, "mnist/model.tar.gz", tarball(MODEL))
    url = f"s3://{bucket}/mnist/model.tar.gz"
    folder = store.fetch_and_extract(url, 30)
    assert read_tree(folder) == MODEL
    path = f"/{bucket}/mnist/model.tar.gz"
    assert s3_env.count_requests("GET", path) == 1
    assert store.fetch_and_extract(url, 30) == folder
    assert s3_env.count_requests("GET", path) == 1  # not downloaded again
    assert s3_env.count_requests("HEAD", path) == 1  # only revalidated

    s3_env.put(bucket, "mnist/model.tar.gz", tarball({**MODEL, "model.pt": b"weights-2"}))
    updated = store.fetch_and_extract(url, 30)
    assert updated != folder
    assert (updated / "model.pt").read_bytes() == b"weights-2"


def test_s3_through_the_generic_endpoint_setting(
    store: ArtifactStore, s3_env: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env.endpoint)
    bucket = s3_env.new_bucket()
    s3_env.put(bucket, "m.tar.gz", tarball(MODEL))
    assert read_tree(store.fetch_and_extract(f"s3://{bucket}/m.tar.gz", 30)) == MODEL


def test_s3_prefix_of_uncompressed_files(
    store: ArtifactStore, s3_env: MotoS3, tmp_path: Path
) -> None:
    bucket = s3_env.new_bucket()
    for name, data in MODEL.items():
        s3_env.put(bucket, f"models/mnist/{name}", data)
    s3_env.put(bucket, "models/mnist/code/", b"")  # a console-made "folder" marker
    s3_env.put(bucket, "models/other/model.pt", b"not this one")
    url = f"s3://{bucket}/models/mnist/"
    folder = store.fetch_and_extract(url, 30)
    assert read_tree(folder) == MODEL
    assert store.fetch_and_extract(url, 30) == folder
    assert s3_env.count_requests("GET", f"/{bucket}/models/mnist/model.pt") == 1


def test_the_same_content_from_s3_and_file_is_shared(
    store: ArtifactStore, s3_env: MotoS3, tmp_path: Path
) -> None:
    data = tarball(MODEL)
    bucket = s3_env.new_bucket()
    s3_env.put(bucket, "m.tar.gz", data)
    (tmp_path / "m.tar.gz").write_bytes(data)
    assert store.fetch_and_extract(f"s3://{bucket}/m.tar.gz", 30) == store.fetch_and_extract(
        f"file://{tmp_path}/m.tar.gz", 30
    )


def test_concurrent_s3_fetches_download_once(
    store: ArtifactStore, s3_env: MotoS3, tmp_path: Path
) -> None:
    bucket = s3_env.new_bucket()
    s3_env.put(bucket, "m.tar.gz", tarball({"big.bin": bytes(2 * MiB), **MODEL}))
    url = f"s3://{bucket}/m.tar.gz"
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: store.fetch_and_extract(url, 30), range(6)))
    assert len(set(results)) == 1
    assert s3_env.count_requests("GET", f"/{bucket}/m.tar.gz") == 1


def test_s3_errors_name_the_url_and_the_cause(store: ArtifactStore, s3_env: MotoS3) -> None:
    bucket = s3_env.new_bucket()
    with pytest.raises(ArtifactError) as raised:
        store.fetch_and_extract(f"s3://{bucket}/missing.tar.gz", 30)
    assert str(raised.value).startswith(
        f"Failed to download model data from s3://{bucket}/missing.tar.gz: NoSuchKey: "
    )
    with pytest.raises(ArtifactError, match="NoSuchBucket"):
        store.fetch_and_extract("s3://no-such-bucket-polyhost/m.tar.gz", 30)
    with pytest.raises(ArtifactError, match=f"no objects under prefix s3://{bucket}/empty/"):
        store.fetch_and_extract(f"s3://{bucket}/empty/", 30)


def test_s3_not_a_tar(store: ArtifactStore, s3_env: MotoS3) -> None:
    bucket = s3_env.new_bucket()
    s3_env.put(bucket, "model.pt", b"raw weights, not an archive")
    with pytest.raises(ArtifactError) as raised:
        store.fetch_and_extract(f"s3://{bucket}/model.pt", 30)
    assert f"Model data s3://{bucket}/model.pt is not a valid tar archive" in str(raised.value)


# --- https:// (a local TLS server, trusted through SSL_CERT_FILE) --------------------------------


class TlsFiles:
    """A tiny HTTPS server serving bytes by path, with ETags, counting what it is asked."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (path, status, If-None-Match)
        self.delay_s = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                condition = self.headers.get("If-None-Match")
                if path == "/redirect-to-http":
                    owner.requests.append((path, "302", condition))
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{owner.port}/m.tar.gz")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = owner.files.get(path)
                if data is None:
                    owner.requests.append((path, "404", condition))
                    self.send_error(404)
                    return
                etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
                if condition == etag:
                    owner.requests.append((path, "304", condition))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                owner.requests.append((path, "200", condition))
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                time.sleep(owner.delay_s)
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsFiles]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server = TlsFiles(cert, key)
    yield server
    server.close()


def test_https_fetch_then_conditional_revalidation(
    store: ArtifactStore, https: TlsFiles, tmp_path: Path
) -> None:
    https.files["/m.tar.gz"] = tarball(MODEL)
    url = https.url("/m.tar.gz")
    folder = store.fetch_and_extract(url, 30)
    assert read_tree(folder) == MODEL
    assert store.fetch_and_extract(url, 30) == folder
    assert [status for _, status, _ in https.requests] == ["200", "304"]
    assert https.requests[1][2] is not None  # the second one carried If-None-Match


def test_https_secrets_in_the_url_are_never_shown(
    store: ArtifactStore, https: TlsFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    https.files["/m.tar.gz"] = tarball(MODEL)
    secret = "X-Amz-Signature=s3cr3tsignature"
    with caplog.at_level(logging.DEBUG):
        folder = store.fetch_and_extract(https.url(f"/m.tar.gz?{secret}"), 30)
        assert read_tree(folder) == MODEL
        with pytest.raises(ArtifactError) as raised:
            store.fetch_and_extract(https.url(f"/missing.tar.gz?{secret}"), 30)
    message = str(raised.value)
    assert message == (
        f"Failed to download model data from https://127.0.0.1:{https.port}/missing.tar.gz?…: "
        "HTTP 404 Not Found"
    )
    assert "s3cr3t" not in caplog.text
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert b"s3cr3t" not in path.read_bytes()


def test_https_refuses_a_redirect_to_plain_http(store: ArtifactStore, https: TlsFiles) -> None:
    with pytest.raises(ArtifactError, match="redirect to a non-https URL refused"):
        store.fetch_and_extract(https.url("/redirect-to-http"), 30)


def test_https_download_timeout(store: ArtifactStore, https: TlsFiles) -> None:
    https.files["/slow.tar.gz"] = tarball(MODEL)
    https.delay_s = 3.0
    started = time.monotonic()
    with pytest.raises(ArtifactError, match="timed out"):
        store.fetch_and_extract(https.url("/slow.tar.gz"), 0.5)
    assert time.monotonic() - started < 2.5


def test_waiting_for_another_fetch_of_the_url_counts_against_the_timeout(
    store: ArtifactStore, https: TlsFiles
) -> None:
    https.files["/slow.tar.gz"] = tarball(MODEL)
    https.delay_s = 1.5
    url = https.url("/slow.tar.gz")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(store.fetch_and_extract, url, 30)
        time.sleep(0.3)
        with pytest.raises(ArtifactError, match="waiting for another download of it"):
            store.fetch_and_extract(url, 0.3)
        assert read_tree(first.result()) == MODEL
