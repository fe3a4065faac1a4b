"""A full state disk, for real: the state dir is a small tmpfs, filled to its last byte.

Before: CreateModel and CreateEndpoint answered InternalFailure "see the server log" (which
boto3 retries, and which tells the operator nothing), and a container's log line cut by the
full disk was glued to whatever the container printed once space came back. Now a control-plane
write the disk cannot take is a 503 ServiceUnavailable naming the state dir, nothing is
changed, and the server works again as soon as space is freed; a cut log line is finished by a
marker line saying how many bytes were lost and why.

Mounting a tmpfs needs root (or CAP_SYS_ADMIN): elsewhere these tests are skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import create_config, create_model, deploy, echo_container, invoke
from tests.support.errors import client_error
from tests.support.server import PolyhostProcess, write_image_config

SIZE = "64m"
PAGE = 4096  # tmpfs allocates whole pages


def mount_tmpfs(folder: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs as the state dir needs root")
    folder.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")


class Filler:
    """Fills the file system of `folder` to its last byte, and frees it again."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "filler"

    def fill(self) -> None:
        with open(self.path, "ab", buffering=0) as handle:
            for size in (1 << 20, 4096, 1):
                block = b"\0" * size
                while True:
                    try:
                        handle.write(block)
                    except OSError as error:
                        assert error.errno == errno.ENOSPC
                        break
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        self.path.unlink()

    @contextlib.contextmanager
    def kept_full(self) -> Iterator[None]:
        """Full, and kept full while the block runs: the server itself frees pages now and then
        (SQLite truncating its journal), and any page freed is taken back at once."""
        self.fill()
        stop = threading.Event()

        def top_up() -> None:
            with open(self.path, "ab", buffering=0) as handle:
                while not stop.is_set():
                    for size in (4096, 1):
                        with contextlib.suppress(OSError):
                            while handle.write(b"\0" * size):
                                pass
                    stop.wait(0.001)

        thread = threading.Thread(target=top_up, name="disk-filler", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("disk-full")
    state = base / "state"
    mount_tmpfs(state)
    try:
        yield base
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


@pytest.fixture(scope="module")
def server(mounted: Path) -> Iterator[PolyhostProcess]:
    proc = PolyhostProcess(
        state_dir=mounted / "state", image_config=write_image_config(mounted / "images.toml")
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def full(server: PolyhostProcess) -> Iterator[Filler]:
    filler = Filler(server.state_dir)
    filler.fill()
    try:
        yield filler
    finally:
        with contextlib.suppress(FileNotFoundError):
            filler.free()


def refused(call: Any, **params: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call(**params)
    code, status, message = client_error(raised)
    assert (code, status) == ("ServiceUnavailable", 503), message
    return message


def test_control_plane_writes_are_a_503_naming_the_state_dir(
    server: PolyhostProcess, full: Filler
) -> None:
    sagemaker = server.sagemaker()
    expected = f"The state dir {server.state_dir} is full"
    message = refused(
        sagemaker.create_model,
        ModelName="m-full",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/polyhost",
        PrimaryContainer=echo_container("one"),
    )
    assert message.startswith(expected), message
    assert "Nothing was changed" in message
    full.free()  # space for the model and its config; then full again for the endpoint
    create_model(sagemaker, "m-full", [echo_container("one")])
    create_config(sagemaker, "m-full", [("AllTraffic", "m-full", 1, 1.0)])
    full.fill()
    message = refused(sagemaker.create_endpoint, EndpointName="m-full", EndpointConfigName="m-full")
    assert message.startswith(expected), message
    message = refused(
        sagemaker.add_tags,
        ResourceArn=sagemaker.describe_model(ModelName="m-full")["ModelArn"],
        Tags=[{"Key": "k", "Value": "v"}],
    )
    assert message.startswith(expected), message
    # Nothing was changed, and reads still work.
    with pytest.raises(ClientError):
        sagemaker.describe_endpoint(EndpointName="m-full")
    assert (
        sagemaker.list_tags(ResourceArn=sagemaker.describe_model(ModelName="m-full")["ModelArn"])[
            "Tags"
        ]
        == []
    )
    # Space again: the same calls succeed at once (no transaction was left open).
    full.free()
    sagemaker.create_endpoint(EndpointName="m-full", EndpointConfigName="m-full")
    sagemaker.delete_endpoint(EndpointName="m-full")


def container_log(server: PolyhostProcess, name: str) -> Path:
    (path,) = (server.state_dir / "containers" / name).glob("r*/AllTraffic/i-0/*/container.log")
    return path


def wait_for(path: Path, text: bytes) -> bytes:
    deadline = time.monotonic() + 30
    while text not in (content := path.read_bytes()):
        assert time.monotonic() < deadline, content[-500:]
        time.sleep(0.05)
    return content


def test_a_log_line_cut_by_the_full_disk_is_finished_and_marked(server: PolyhostProcess) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    assert deploy(sagemaker, "cut", [echo_container("one")])["EndpointStatus"] == "InService"
    path = container_log(server, "cut")
    invoke(runtime, "cut", b"x", CustomAttributes="say=before")
    wait_for(path, b"one: before\n")
    filler = Filler(server.state_dir)
    cut = b""
    # The server itself frees a page now and then (SQLite giving up a journal when its own
    # write fails); a page freed at the moment the line is copied lets the whole line in, and
    # nothing is cut. Such an attempt proves nothing either way, so it is made again; every
    # cut that does happen must be marked (below), and a cut must happen within the attempts.
    for _attempt in range(4):
        # Lines that leave the file's last page room for part of a line: once the disk has no
        # page left, the next line is cut where that page ends (a short write, then ENOSPC).
        while not 100 <= (room := -path.stat().st_size % PAGE) <= 600:
            pad = "p" * (min(room - 350, 900) if room > 600 else 900)
            invoke(runtime, "cut", b"x", CustomAttributes=f"say={pad}")
            wait_for(path, f"one: {pad}\n".encode())
        line = "L" * 900  # longer than the room left
        with filler.kept_full():
            invoke(runtime, "cut", b"x", CustomAttributes=f"say={line}")
            deadline = time.monotonic() + 5  # the line is cut as it is copied into the log
            while time.monotonic() < deadline:
                content = path.read_bytes()
                if content.endswith(b"L") or content.endswith(f"one: {line}\n".encode()):
                    break
                time.sleep(0.05)
        cut = path.read_bytes()
        if cut.endswith(b"L"):
            break
        filler.free()  # the whole line went in: make room again and try once more
    assert cut.endswith(b"L") and len(cut) % PAGE == 0, "the line was not cut at the page end"
    filler.free()
    invoke(runtime, "cut", b"x", CustomAttributes="say=after")
    content = wait_for(path, b"one: after\n")
    tail = content[len(cut) :]
    assert tail.startswith(b"\n[polyhost: "), tail
    marker, after = tail[1:].split(b"\n", 1)[0], tail[1:].split(b"\n", 1)[1]
    assert b"not written to this log: No space left on device]" in marker, marker
    assert after == b"one: after\n"
