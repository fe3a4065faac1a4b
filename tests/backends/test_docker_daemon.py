"""Finding the Docker daemon: DOCKER_HOST alone when set, else the default socket, then the
one polyhost's test script starts; the error names every address tried."""

from __future__ import annotations

from typing import Any

import docker
import docker.errors
import pytest

from polyhost.backends.docker import daemon


class FakeClient:
    """Answers a ping only at `alive`."""

    alive: set[str] = set()

    def __init__(self, base_url: str, **_: Any) -> None:
        self.base_url = base_url

    def ping(self) -> bool:
        if self.base_url not in self.alive:
            raise docker.errors.DockerException(f"no daemon at {self.base_url}")
        return True


@pytest.fixture
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(docker, "DockerClient", FakeClient)
    monkeypatch.setattr(daemon, "_reached", None)
    FakeClient.alive = set()
    return FakeClient


def test_candidates() -> None:
    assert daemon.candidates({}) == (daemon.DEFAULT_SOCKET, daemon.POLYHOST_SOCKET)
    assert daemon.candidates({"DOCKER_HOST": "tcp://10.0.0.1:2376"}) == ("tcp://10.0.0.1:2376",)


def test_polyhosts_own_socket_is_tried_when_the_system_one_is_silent(
    fake_docker: type[FakeClient],
) -> None:
    fake_docker.alive = {daemon.POLYHOST_SOCKET}
    client: Any = daemon.connect()
    assert client.base_url == daemon.POLYHOST_SOCKET
    assert daemon.where() == daemon.POLYHOST_SOCKET  # messages name the daemon in use

    fake_docker.alive = {daemon.DEFAULT_SOCKET, daemon.POLYHOST_SOCKET}
    client = daemon.connect()
    assert client.base_url == daemon.DEFAULT_SOCKET


def test_the_error_names_the_sockets_tried_and_the_docker_host_to_set(
    fake_docker: type[FakeClient],
) -> None:
    with pytest.raises(daemon.DaemonUnavailable) as caught:
        daemon.connect()
    message = str(caught.value)
    assert daemon.DEFAULT_SOCKET in message and daemon.POLYHOST_SOCKET in message
    assert f"DOCKER_HOST={daemon.POLYHOST_SOCKET}" in message


def test_docker_host_is_the_only_address_when_set(
    fake_docker: type[FakeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere/docker.sock")
    with pytest.raises(daemon.DaemonUnavailable) as caught:
        daemon.connect()
    assert "unix:///nowhere/docker.sock" in str(caught.value)
    assert daemon.POLYHOST_SOCKET not in str(caught.value)
