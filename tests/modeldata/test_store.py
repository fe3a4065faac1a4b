"""ArtifactStore end to end: file://, s3:// against a real S3 server, https:// against a local
TLS server; caching by URL and by content; concurrent fetches; errors fit for FailureReason."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import socket
import struct
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import pytest

from polyhost.modeldata.store import ArtifactError, ArtifactStore
from tests.support.s3 import MotoS3, s3_server
from tests.support.tls_server import AcceptRecorder, TlsFiles, make_certificate

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
    """The https tests serve from loopback, which model data may come from only when allowed."""
    return ArtifactStore(tmp_path / "cache", max_extracted_bytes=8 * MiB, allow_hosts=["127.0.0.1"])


def models(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "models").iterdir())


class Outcome:
    """The result or exception of a call run in a daemon thread (so a hang fails, not blocks)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None

    def wait(self, timeout_s: float) -> object:
        assert self.done.wait(timeout_s), f"still running after {timeout_s} s: it hangs"
        return self.value


def in_thread(fn: Callable[..., object], *args: object) -> Outcome:
    outcome = Outcome()

    def run() -> None:
        try:
            outcome.value = fn(*args)
        except BaseException as error:
            outcome.value = error
        outcome.done.set()

    threading.Thread(target=run, daemon=True).start()
    return outcome


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll until `condition` holds; the deadline only keeps a broken build from hanging."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not seen within {timeout_s} s: {what}"
        time.sleep(0.02)


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
    with caplog.at_level(logging.INFO, logger="polyhost.modeldata.store"):
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


def test_a_directory_is_copied_into_the_cache(store: ArtifactStore, tmp_path: Path) -> None:
    """A container sees a copy, never the folder itself (tests/modeldata/test_local_folders.py
    has the rest: links, special files, limits, revalidation)."""
    folder = tmp_path / "model-folder"
    (folder / "code").mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"w")
    copied = store.fetch_and_extract(f"file://{folder}", 30)
    assert copied.parent == tmp_path / "cache" / "models"
    assert (copied / "model.pt").read_bytes() == b"w" and (copied / "code").is_dir()
    assert store.fetch_and_extract(f"file://{folder}/", 30) == copied  # same content
    assert models(tmp_path) == [copied]


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
    assert list(store.work_dir.iterdir()) == []


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
    assert list(store.work_dir.iterdir()) == []


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


@pytest.fixture
def https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsFiles]:
    cert, key = make_certificate(tmp_path)
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


def test_https_download_timeout_holds_against_a_server_that_trickles(
    store: ArtifactStore, https: TlsFiles
) -> None:
    """Bound: ModelDataDownloadTimeoutInSeconds (1 s here) ends a download that receives a byte
    every 50 ms for ever; the test gives it 30 s before calling it hung."""
    https.trickle.add("/slow.tar.gz")
    outcome = in_thread(store.fetch_and_extract, https.url("/slow.tar.gz"), 1.0)
    error = outcome.wait(30)
    assert isinstance(error, ArtifactError)
    assert "timed out after 1 seconds" in str(error)
    wait_for(lambda: https.trickle_closed == 1, "the connection closed")
    assert list(store.work_dir.iterdir()) == []  # the partial download is gone


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


# --- file:// that is not a regular file ----------------------------------------------------------


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "model.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen(1)
        yield path


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("fifo", "it is a FIFO (named pipe), not a regular file"),
        ("device", "it is a character device, not a regular file"),
        ("socket", "it is a socket, not a regular file"),
        ("folder named like an archive", "it is a folder, but its name says it is an archive"),
    ],
)
def test_only_regular_files_are_read(
    store: ArtifactStore, tmp_path: Path, unix_socket: Path, kind: str, expected: str
) -> None:
    """Bound: refused without reading or blocking — the call returns within the test's 30 s
    (before, a FIFO blocked the open for ever and /dev/zero was read without end)."""
    path = {
        "fifo": tmp_path / "fifo.tar.gz",
        "device": Path("/dev/zero"),
        "socket": unix_socket,
        "folder named like an archive": tmp_path / "model.tar.gz",
    }[kind]
    if kind == "fifo":
        os.mkfifo(path)
    elif kind.startswith("folder"):
        path.mkdir()
    error = in_thread(store.fetch_and_extract, f"file://{path}", 3600).wait(30)
    assert isinstance(error, ArtifactError)
    assert str(error) == (
        f"Model data file://{path} was refused: {expected}"
        + (
            "; name the .tar.gz file itself, or a folder to copy as the model."
            if kind.startswith("folder")
            else "; a file:// model must be a .tar.gz or .tar file, or a folder."
        )
    )


# --- the store's own workers: cancellation, bounds, shutdown ------------------------------------


def model_threads() -> int:
    """Threads of this process named as the store names its workers (on Linux, in /proc)."""
    count = 0
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "comm").read_text().strip() == "polyhost-model":
                count += 1
    return count


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="thread names are read from /proc"
)


@needs_proc
def test_cancelling_the_awaiting_task_stops_the_download(
    store: ArtifactStore, https: TlsFiles
) -> None:
    """Bound: after the task awaiting `fetch` is cancelled, the worker thread ends and the
    connection closes (deadline 30 s only to avoid hanging; the download's own timeout is an
    hour), and no temporary file is left."""
    https.trickle.add("/slow.tar.gz")

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(store.fetch(https.url("/slow.tar.gz"), 3600))
        while https.trickling == 0:
            await asyncio.sleep(0.02)
        assert model_threads() == 1
        while not list(store.work_dir.iterdir()):  # the download's file, being written
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    wait_for(lambda: model_threads() == 0, "the worker thread ended")
    wait_for(lambda: https.trickle_closed == 1, "the connection closed")
    assert list(store.work_dir.iterdir()) == []


@needs_proc
def test_workers_are_bounded_and_leave_the_default_executor_free(
    tmp_path: Path, https: TlsFiles
) -> None:
    """Bound: six hung downloads hold at most `workers` (2) threads; asyncio's default executor
    (what the control plane runs on) still answers while they hang."""
    store = ArtifactStore(tmp_path / "cache", 8 * MiB, workers=2, allow_hosts=["127.0.0.1"])
    for i in range(6):
        https.trickle.add(f"/slow{i}.tar.gz")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(store.fetch(https.url(f"/slow{i}.tar.gz"), 3600)) for i in range(6)
        ]
        while https.trickling < 2:
            await asyncio.sleep(0.02)
        # Every default-executor thread is free for other work.
        answers = await asyncio.gather(*(asyncio.to_thread(lambda: 42) for _ in range(12)))
        assert answers == [42] * 12
        assert model_threads() == 2
        assert https.trickling == 2
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    wait_for(lambda: model_threads() == 0, "the worker threads ended")
    assert len(https.requests) == 2  # the four that waited for a worker never started


def test_close_cancels_what_is_in_flight(store: ArtifactStore, https: TlsFiles) -> None:
    """Bound: `close(grace)` returns within its grace (5 s) although a download hangs, and the
    direct, blocking `fetch_and_extract` callers are cancelled too."""
    https.trickle.add("/slow.tar.gz")
    blocking = in_thread(store.fetch_and_extract, https.url("/slow.tar.gz"), 3600)

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(store.fetch(https.url("/slow.tar.gz"), 3600))
        while https.trickling == 0:
            await asyncio.sleep(0.02)
        await asyncio.wait_for(store.close(5.0), 10)
        with pytest.raises(ArtifactError, match="was cancelled"):
            await task  # it waited for the URL's lock held by the other one

    asyncio.run(scenario())
    assert "was cancelled" in str(blocking.wait(30))
    with pytest.raises(ArtifactError, match="shutting down"):
        asyncio.run(store.fetch(https.url("/slow.tar.gz"), 3600))


# --- https:// hosts: public only, unless allowed ------------------------------------------------


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "127.0.0.1, a loopback address"),
        ("169.254.169.254", "169.254.169.254, a cloud metadata address"),
        ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254, a cloud metadata address"),
        ("[fd00:ec2::254]", "fd00:ec2::254, a cloud metadata address"),
        ("10.1.2.3", "10.1.2.3, a private address"),
        ("192.168.0.10", "192.168.0.10, a private address"),
        ("[fe80::1]", "fe80::1, a link-local address"),
        ("0.0.0.0", "0.0.0.0, the unspecified address"),
        ("224.0.0.1", "224.0.0.1, a multicast address"),
        ("100.64.0.1", "100.64.0.1, not a public address"),
        ("localhost", "localhost resolves to"),
    ],
)
def test_non_public_hosts_are_refused(tmp_path: Path, host: str, why: str) -> None:
    strict = ArtifactStore(tmp_path / "cache", 8 * MiB)
    with pytest.raises(ArtifactError) as raised:
        strict.fetch_and_extract(f"https://{host}/m.tar.gz", 30)
    message = str(raised.value)
    assert message.startswith(f"Model data https://{host}/m.tar.gz was refused: {why}")
    assert "--allow-model-host" in message


def test_a_refused_host_is_not_even_connected_to(tmp_path: Path) -> None:
    """Bound: zero connections reach a listening socket on the refused address."""
    strict = ArtifactStore(tmp_path / "cache", 8 * MiB)
    listener = AcceptRecorder("127.0.0.1")
    try:
        with pytest.raises(ArtifactError, match="a loopback address"):
            strict.fetch_and_extract(f"https://127.0.0.1:{listener.port}/m.tar.gz", 30)
        assert listener.connections() == 0
    finally:
        listener.close()


@pytest.mark.parametrize("allowed", ["127.0.0.1", "127.0.0.0/8", "localhost"])
def test_allowed_hosts_by_address_network_or_name(
    tmp_path: Path, https: TlsFiles, allowed: str
) -> None:
    https.files["/m.tar.gz"] = tarball(MODEL)
    store = ArtifactStore(tmp_path / "cache", 8 * MiB, allow_hosts=[allowed])
    host = "localhost" if allowed == "localhost" else "127.0.0.1"
    folder = store.fetch_and_extract(f"https://{host}:{https.port}/m.tar.gz", 30)
    assert read_tree(folder) == MODEL


def test_every_redirect_is_checked_again(tmp_path: Path, https: TlsFiles) -> None:
    """A redirect from an allowed host to a refused one is refused, with no connection made."""
    listener = AcceptRecorder("127.0.0.2")
    try:
        https.redirects["/jump"] = f"https://127.0.0.2:{listener.port}/m.tar.gz"
        store = ArtifactStore(tmp_path / "cache", 8 * MiB, allow_hosts=["127.0.0.1"])
        with pytest.raises(ArtifactError, match=r"refused: 127\.0\.0\.2, a loopback address"):
            store.fetch_and_extract(https.url("/jump"), 30)
        assert listener.connections() == 0
    finally:
        listener.close()


class Misbehaving:
    """A TCP server on loopback that fails a client in one chosen way."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        if how == "refuse":
            self.sock.close()  # nothing listens on the port
            return
        self.sock.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.how == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif self.how == "plain http":
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
                conn.close()
            else:  # "silent": accept, then say nothing
                self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        for conn in self._held:
            conn.close()
        self.sock.close()


def test_connection_failures_all_read_the_same(tmp_path: Path) -> None:
    """Refused, reset, TLS failure and silence give one message, so a FailureReason cannot be
    used to tell which ports of a host are open; the server log keeps the detail."""
    store = ArtifactStore(tmp_path / "cache", 8 * MiB, allow_hosts=["127.0.0.1"])
    messages = {}
    for how in ("refuse", "reset", "plain http", "silent"):
        server = Misbehaving(how)
        try:
            with pytest.raises(ArtifactError) as raised:
                store.fetch_and_extract(f"https://127.0.0.1:{server.port}/m.tar.gz", 1.0)
        finally:
            server.close()
        messages[how] = str(raised.value).replace(str(server.port), "PORT")
    assert set(messages.values()) == {
        "Could not download the model data from 127.0.0.1: the host did not answer with the "
        "file https://127.0.0.1:PORT/m.tar.gz."
    }, messages
