"""Model data that cannot be read, never ends, or explodes, against a real server and boto3.

Each test states the bound it holds: in time (by a generous deadline that only keeps a broken
build from hanging: before these fixes, each of them hung or left garbage for ever), in bytes
written, or in threads of the server process. The server's download workers carry an OS-level
thread name, so they are counted exactly in /proc.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.archives import zero_bomb
from tests.support.endpoints import create_config, create_model, echo_container, wait_status
from tests.support.server import REGION, PolyhostProcess, ServerFactory
from tests.support.tls_server import TlsFiles, make_certificate
from tests.support.waiting import eventually

WORKER_THREAD = "polyhost-model"
ARTIFACT_WORKERS = 4
DEADLINE_S = 60.0  # generous on purpose: a loaded machine makes a test slower, never red

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="counts the server's threads in /proc"
)


# --- helpers -----------------------------------------------------------------------------------


def worker_threads(server: PolyhostProcess) -> int:
    """Threads of the server process that are model data workers."""
    assert server.process is not None
    pid = server.process.pid
    count = 0
    for thread in psutil.Process(pid).threads():
        try:
            name = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
        except OSError:
            continue  # it ended meanwhile
        count += name == WORKER_THREAD
    return count


def start_endpoint(sagemaker: Any, name: str, url: str) -> None:
    """Model, config and endpoint `name` of one container with model data `url`; no waiting."""
    create_model(sagemaker, name, [{**echo_container("m"), "ModelDataUrl": url}])
    create_config(sagemaker, name, [("AllTraffic", name, 1, 1.0)])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


def delete_everything(sagemaker: Any, name: str) -> None:
    sagemaker.delete_endpoint(EndpointName=name)
    sagemaker.delete_endpoint_config(EndpointConfigName=name)
    sagemaker.delete_model(ModelName=name)


def is_deleted(sagemaker: Any, name: str) -> bool:
    try:
        sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as error:
        return error.response["Error"]["Code"] == "ValidationException"
    return False


def impatient_client(server: PolyhostProcess) -> Any:
    """A control-plane client that gives up after 10 s instead of waiting on a starved server."""
    return boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )


def cache_dir(server: PolyhostProcess) -> Path:
    return server.state_dir / "artifacts"


def tmp_entries(server: PolyhostProcess) -> set[str]:
    """Every file and folder below the cache's tmp/, relative to it."""
    root = cache_dir(server) / "tmp"
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFiles]:
    cert, key = make_certificate(tmp_path_factory.mktemp("tls"))
    server = TlsFiles(cert, key)
    yield server
    server.close()


def polyhost(start: ServerFactory, tls: TlsFiles | None, *extra: str) -> PolyhostProcess:
    return start(
        *("--artifact-workers", str(ARTIFACT_WORKERS)),
        *("--allow-model-host", "127.0.0.1"),
        *extra,
        name="faults",
        env={"SSL_CERT_FILE": str(tls.cert)} if tls is not None else {},
    )


@pytest.fixture(scope="module")
def server(tls: TlsFiles, start_server: ServerFactory) -> PolyhostProcess:
    return polyhost(start_server, tls)


@pytest.fixture(scope="module")
def sagemaker(server: PolyhostProcess) -> Any:
    return server.sagemaker()


# --- local paths that are not archives ---------------------------------------------------------


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
        ("dev-zero", "it is a character device, not a regular file"),
        ("socket", "it is a socket, not a regular file"),
        ("folder", "it is a folder, but its name says it is an archive"),
    ],
)
def test_a_path_that_is_not_an_archive_fails_the_endpoint(
    server: PolyhostProcess,
    sagemaker: Any,
    tmp_path: Path,
    unix_socket: Path,
    kind: str,
    expected: str,
) -> None:
    """Bound: Failed within the 60 s deadline (before: Creating for ever on a FIFO, both cores
    spinning on /dev/zero), and no worker thread left behind."""
    path = {
        "fifo": tmp_path / "fifo.tar.gz",
        "dev-zero": Path("/dev/zero"),
        "socket": unix_socket,
        "folder": tmp_path / "model.tar.gz",
    }[kind]
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    name = f"notafile-{kind}"
    start_endpoint(sagemaker, name, f"file://{path}")
    description = wait_status(sagemaker, name, timeout=DEADLINE_S)
    assert description["EndpointStatus"] == "Failed"
    reason = description["FailureReason"]
    assert f"Model data file://{path} was refused: {expected}" in reason
    eventually(lambda: worker_threads(server) == 0, "no model data worker left")
    delete_everything(sagemaker, name)


# --- downloads that never end ------------------------------------------------------------------


@pytest.fixture
def own_server(tls: TlsFiles, start_own_server: ServerFactory) -> PolyhostProcess:
    """A server of the test's own: one whose downloads hang must not outlive the test (the
    factory kills it if SIGTERM does not stop it within 30 s)."""
    return polyhost(start_own_server, tls)


def test_deleting_an_endpoint_stops_its_hung_download(
    own_server: PolyhostProcess, tls: TlsFiles
) -> None:
    """Bound: one worker thread while the download trickles; zero, and the connection closed,
    soon after DeleteEndpoint — although the download's own timeout is an hour."""
    sagemaker = own_server.sagemaker()
    tls.trickle.add("/hung.tar.gz")
    trickling, closed = tls.trickling, tls.trickle_closed
    start_endpoint(sagemaker, "hung", tls.url("/hung.tar.gz"))
    eventually(lambda: tls.trickling == trickling + 1, "the download started")
    assert worker_threads(own_server) == 1  # the thread that connected
    assert sagemaker.describe_endpoint(EndpointName="hung")["EndpointStatus"] == "Creating"
    delete_everything(sagemaker, "hung")
    eventually(lambda: worker_threads(own_server) == 0, "the worker thread ended")
    eventually(lambda: tls.trickle_closed == closed + 1, "the connection closed")
    eventually(lambda: is_deleted(sagemaker, "hung"), "the endpoint is gone")


def test_six_hung_downloads_leave_the_control_plane_answering(
    own_server: PolyhostProcess, tls: TlsFiles
) -> None:
    """Bound: every control-plane call answers within its client's 10 s read timeout while six
    downloads hang (before: CreateModel and ListModels timed out); the downloads hold at most
    --artifact-workers (4) threads, the other two wait their turn."""
    sagemaker = own_server.sagemaker()
    names = [f"stuck{i}" for i in range(6)]
    trickling = tls.trickling
    for name in names:
        tls.trickle.add(f"/{name}.tar.gz")
        start_endpoint(sagemaker, name, tls.url(f"/{name}.tar.gz"))
    eventually(lambda: tls.trickling >= trickling + ARTIFACT_WORKERS, "downloads hanging")
    client = impatient_client(own_server)
    for i in range(3):
        client.create_model(
            ModelName=f"answering{i}",
            PrimaryContainer=echo_container("x"),
            ExecutionRoleArn="arn:aws:iam::123456789012:role/polyhost",
        )
        listed = client.list_models(NameContains="answering", MaxResults=100)["Models"]
        assert len(listed) == i + 1
    assert worker_threads(own_server) == ARTIFACT_WORKERS
    assert tls.trickling == trickling + ARTIFACT_WORKERS
    for name in names:
        delete_everything(sagemaker, name)
    eventually(lambda: worker_threads(own_server) == 0, "every worker thread ended")
    eventually(lambda: tls.trickling == trickling, "every connection closed")


def test_sigterm_exits_while_a_download_hangs(own_server: PolyhostProcess, tls: TlsFiles) -> None:
    """Bound: the server exits, cleanly, within 30 s of SIGTERM (before: it logged "stopped"
    and never exited, waiting for the blocked download thread)."""
    tls.trickle.add("/at-exit.tar.gz")
    trickling = tls.trickling
    start_endpoint(own_server.sagemaker(), "atexit", tls.url("/at-exit.tar.gz"))
    eventually(lambda: tls.trickling == trickling + 1, "the download started")
    assert own_server.stop(signal.SIGTERM, timeout=30) == 0
    assert "polyhost stopped" in own_server.log()


# --- archives that explode, and extractions cut short ------------------------------------------


def test_a_3_mb_archive_expanding_to_3_gib_fails_early(
    server: PolyhostProcess, sagemaker: Any, tmp_path: Path
) -> None:
    """Bound: zero bytes of the 3 GiB member reach the disk; the ratio guard (200x, the default)
    refuses it at its tar header."""
    archive = zero_bomb(tmp_path / "bomb.tar.gz", 3 << 30)
    assert archive.stat().st_size < 4 << 20
    start_endpoint(sagemaker, "bomb", f"file://{archive}")
    description = wait_status(sagemaker, "bomb", timeout=DEADLINE_S)
    assert description["EndpointStatus"] == "Failed"
    reason = description["FailureReason"]
    assert "expand to more than 200 times that" in reason
    assert "raise --model-max-ratio" in reason
    assert not any((cache_dir(server) / "models").iterdir())
    assert not any(p.is_file() for p in (cache_dir(server) / "tmp").rglob("*"))
    delete_everything(sagemaker, "bomb")


def many_files_archive(path: Path, files: int) -> Path:
    """A .tar.gz of `files` small random files: slow to extract, light on the disk."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for i in range(files):
            info = tarfile.TarInfo(f"part{i:06d}.bin")
            info.size = 512
            tar.addfile(info, io.BytesIO(os.urandom(512)))
    return path


def test_kill_9_mid_extraction_leaves_no_temporary_folder_after_restart(
    tmp_path: Path, start_own_server: ServerFactory
) -> None:
    """Bound: after the restart, nothing the killed server had in the cache's tmp/ is left
    (before: it stayed for 24 hours)."""
    archive = many_files_archive(tmp_path / "many.tar.gz", 40_000)
    proc = polyhost(start_own_server, None)
    start_endpoint(proc.sagemaker(), "killed", f"file://{archive}")

    def extracting() -> bool:
        return any(
            folder.is_dir() and any(folder.iterdir())
            for folder in (cache_dir(proc) / "tmp").rglob("*.extract")
        )

    eventually(extracting, "the extraction under way")
    proc.kill9()
    left_behind = tmp_entries(proc)
    assert any(entry.endswith(".extract") for entry in left_behind)
    proc.restart()
    assert tmp_entries(proc).isdisjoint(left_behind)
    delete_everything(proc.sagemaker(), "killed")


# --- nothing kept for ever ---------------------------------------------------------------------


def test_models_and_folders_of_a_deleted_endpoint_are_collected(
    tmp_path: Path, start_own_server: ServerFactory
) -> None:
    """Bound: with a 1 s grace and a 1 s log retention, the cached model and the endpoint's
    container folders are gone within the deadline after DeleteEndpoint and DeleteModel
    (before: they stayed for ever)."""
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("weights.txt")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"weights"))
    proc = polyhost(start_own_server, None, "--model-cache-grace", "1", "--log-retention", "1")
    sagemaker = proc.sagemaker()
    start_endpoint(sagemaker, "collected", f"file://{archive}")
    assert wait_status(sagemaker, "collected", timeout=DEADLINE_S)["EndpointStatus"] == (
        "InService"
    )
    models = cache_dir(proc) / "models"
    containers = proc.state_dir / "containers" / "collected"
    assert len(list(models.iterdir())) == 1
    assert containers.is_dir()
    time.sleep(2)  # past the grace and the retention: what is in use still stays
    assert len(list(models.iterdir())) == 1
    assert containers.is_dir()
    delete_everything(sagemaker, "collected")
    eventually(lambda: not any(models.iterdir()), "the unused model removed")
    eventually(lambda: not containers.exists(), "the deleted endpoint's folders removed")
