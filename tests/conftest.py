"""Fixtures: a real polyhost server process per test module, and boto3 clients for it; and the
markers (docker, ray, browser, sdk, slow, process) put on each test by its folder, its fixtures
and the programs it starts.

`start_server(*extra_args, name=..., images=True, busy=False, env=None)` starts one more server
with its own options (see tests/support/server.py's ServerFactory) and stops it when the module
is done; `start_own_server` does the same for one test. A module that needs other options
redefines `server` as `start_server(...)`, and `sagemaker` and `runtime` follow it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import PolyhostProcess, ServerFactory

TESTS = Path(__file__).parent

# Markers by where a test is, relative to tests/: a folder (ending in "/"), a file, or one test
# ("file::name", every parametrization of it). `make test-fast` deselects them all.
BY_PLACE: dict[str, tuple[str, ...]] = {
    "backends/docker/": ("docker",),
    "reliability/test_docker_faults.py": ("docker",),
    "backends/ray/": ("ray",),
    "bench/test_ray_scenario.py": ("ray",),
    "http/admin/test_ui_browser.py": ("browser",),
    "client/test_sagemaker_sdk.py": ("sdk",),
    "client/test_sagemaker_sdk_frameworks.py": ("sdk",),
}
# Markers by the fixtures a test uses, wherever it is.
BY_FIXTURE: dict[str, str] = {
    "docker_client": "docker",  # a client of the real daemon
    "cluster": "ray",  # a LocalRayCluster
    "browser": "browser",  # Playwright's chromium
}
# A test that starts the server (or a stack) as a program of its own: through these fixtures, or
# in a module that starts `PolyhostProcess` or `StackProcess` itself. `make test-fast` leaves
# them out, keeping the in-process core.
PROCESS_FIXTURES = frozenset({"server", "start_server", "start_own_server"})
PROCESS_STARTERS = ("PolyhostProcess(", "StackProcess(", "start_all(")
_starts_processes: dict[Path, bool] = {}


def starts_processes(item: pytest.Item) -> bool:
    if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    path = item.path
    if path not in _starts_processes:
        source = path.read_text(encoding="utf-8")
        _starts_processes[path] = any(starter in source for starter in PROCESS_STARTERS)
    return _starts_processes[path]


# Slower than a few seconds each on a 2-core machine (measured with --durations).
SLOW: tuple[str, ...] = (
    "reliability/",  # faults, fuzzing, hostile clients, kill -9 at every point
    "examples/",  # the walkthroughs train and serve real models
    "bench/",  # the benchmarks' quick runs and the soak's smoke test
    "stacks/test_pytorch.py",  # the framework stacks: each loads its framework and a model
    "stacks/test_sklearn.py",
    "stacks/test_multi_model_stack.py",  # three stacks, models of 24 MB
    "router/test_multi_model_endpoint.py",  # a server, a local S3, a dozen models trained
    "stacks/test_tensorflow.py",
    "http/services/test_cloudwatch.py",  # waits for the 10 s recorder, burns CPU, holds memory
    "http/services/test_cloudwatch_restart.py",
    "http/admin/test_api.py::test_containers_show_their_traffic",
    "http/services/test_cloudwatch_logs.py::test_a_deleted_endpoints_logs_stay_readable_until_retention_ends",
    "auth/test_sigv4_compiled.py::test_a_mutated_request_gets_the_answer_python_gives",
    "control/test_awscli.py::test_cli_flow",
    "client/test_sagemaker_sdk_frameworks.py",  # five framework stacks deployed through the SDK
    # In process, but each waits out real timers (a policy's clock, restarts' backoff, ping
    # failures, fetch deadlines) or burns a CPU quota: 1.4-3 s each.
    "auth/test_gate.py::test_a_principal_whose_policy_reads_the_time_is_decided_every_time",
    "deploy/test_supervisor_health.py",
    "deploy/test_starter.py::test_a_container_that_never_passes_ping_is_started_once",
    "modeldata/test_store.py::test_concurrent_s3_fetches_download_once",
    "modeldata/test_store.py::test_waiting_for_another_fetch_of_the_url_counts_against_the_timeout",
    "modeldata/test_store.py::test_s3_errors_name_the_url_and_the_cause",
    "backends/process/test_backend.py::test_cpu_limit_is_enforced",
    "logs/test_files.py::test_a_flooding_container_stays_within_its_disk_bound_and_keeps_serving",
)


def markers_of(item: pytest.Item) -> set[str]:
    place = item.path.relative_to(TESTS).as_posix()
    test = place + "::" + item.nodeid.split("::", 1)[-1].split("[", 1)[0]
    fixtures = getattr(item, "fixturenames", ())
    found = {marker for fixture, marker in BY_FIXTURE.items() if fixture in fixtures}
    for where, markers in [*BY_PLACE.items(), *((slow, ("slow",)) for slow in SLOW)]:
        if place.startswith(where) if where.endswith("/") else where in (place, test):
            found.update(markers)
    if starts_processes(item):
        found.add("process")
    return found


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by them
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(TESTS):
            continue
        for marker in sorted(markers_of(item)):
            item.add_marker(marker)


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Start servers that live until the end of the module."""
    factory = ServerFactory(tmp_path_factory.mktemp)
    yield factory
    factory.stop_all()


@pytest.fixture
def start_own_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers that live until the end of the test (in folders under its tmp_path)."""

    def folder(name: str) -> Path:
        base = tmp_path / name
        suffix = 0
        while base.exists():
            suffix += 1
            base = tmp_path / f"{name}{suffix}"
        base.mkdir()
        return base

    factory = ServerFactory(folder)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    """One server per test module, with the test images registered."""
    return start_server()


@pytest.fixture(scope="module")
def sagemaker(server: PolyhostProcess) -> Any:
    return server.sagemaker()


@pytest.fixture(scope="module")
def runtime(server: PolyhostProcess) -> Any:
    return server.runtime()
