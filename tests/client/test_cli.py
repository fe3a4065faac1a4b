"""`polyhost deploy/invoke/ls/logs/rm` run as subprocesses against a real polyhost server."""

from __future__ import annotations

import io
import os
import queue
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ECHO_IMAGE, PolyhostProcess, default_sigint, free_port


def polyhost(
    server: PolyhostProcess, *args: str, stdin: bytes | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with POLYHOST_URL pointing at the test server."""
    env = {**os.environ, "POLYHOST_URL": server.url}
    return subprocess.run(
        [sys.executable, "-m", "polyhost", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def out(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


def err(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode()


def write_yaml(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text.replace("ECHO_IMAGE", ECHO_IMAGE), encoding="utf-8")
    return path


DIRECT = """\
endpoint: {endpoint}
model:
  mode: Direct
  containers:
    - hostname: one
      image: ECHO_IMAGE
      model_data_url: file://./artifacts/model.tar.gz
      environment: {{ECHO_NAME: {first}}}
    - hostname: two
      image: ECHO_IMAGE
      environment: {{ECHO_NAME: two}}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny model artifact, referenced relatively from the YAML files."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "artifacts").mkdir()
    payload = b"weights"
    with tarfile.open(folder / "artifacts" / "model.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("model.bin")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return folder


@pytest.fixture(scope="module")
def direct(server: PolyhostProcess, project: Path) -> str:
    """An endpoint deployed once through the CLI, shared by the read-only tests."""
    path = write_yaml(project, "direct.yaml", DIRECT.format(endpoint="cli-direct", first="one"))
    result = polyhost(server, "deploy", str(path))
    assert result.returncode == 0, err(result) + out(result)
    return "cli-direct"


# -- deploy ------------------------------------------------------------------------------------


def test_deploy_creates_everything_and_waits(
    direct: str, sagemaker: Any, project: Path, server: PolyhostProcess
) -> None:
    endpoint = sagemaker.describe_endpoint(EndpointName=direct)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == "cli-direct-config"
    model = sagemaker.describe_model(ModelName="cli-direct-model")
    assert model["InferenceExecutionConfig"]["Mode"] == "Direct"
    url = (project / "artifacts" / "model.tar.gz").resolve().as_uri()
    assert model["Containers"][0]["ModelDataUrl"] == url


def test_deploy_again_changes_nothing(
    direct: str, project: Path, server: PolyhostProcess, sagemaker: Any
) -> None:
    before = sagemaker.describe_endpoint(EndpointName=direct)["LastModifiedTime"]
    result = polyhost(server, "deploy", str(project / "direct.yaml"))
    assert result.returncode == 0, err(result)
    text = out(result)
    assert "model cli-direct-model: unchanged" in text
    assert "endpoint config cli-direct-config: unchanged" in text
    assert "endpoint cli-direct: already uses cli-direct-config" in text
    assert "is InService" in text
    assert sagemaker.describe_endpoint(EndpointName=direct)["LastModifiedTime"] == before


def test_deploy_a_changed_file_updates_under_hashed_names_and_reports_a_failed_update(
    server: PolyhostProcess, project: Path, sagemaker: Any
) -> None:
    first = write_yaml(project, "v1.yaml", DIRECT.format(endpoint="cli-update", first="v1"))
    assert polyhost(server, "deploy", str(first)).returncode == 0
    second = write_yaml(project, "v2.yaml", DIRECT.format(endpoint="cli-update", first="v2"))
    result = polyhost(server, "deploy", str(second))
    assert result.returncode == 0, err(result)
    text = out(result)
    assert "model cli-update-model exists with another definition" in text
    assert "endpoint cli-update: updating from cli-update-config to cli-update-config-" in text
    endpoint = sagemaker.describe_endpoint(EndpointName="cli-update")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"].startswith("cli-update-config-")
    answer = polyhost(server, "invoke", "cli-update", "x", "--container", "one")
    assert answer.stdout == b"v2:x"
    # The changed file again: its hashed names exist with the same content, nothing to do.
    again = polyhost(server, "deploy", str(second))
    assert "already uses cli-update-config-" in out(again)
    assert "created" not in out(again)
    # A failed update: exit 1 with the reason, and the endpoint still serves v2.
    broken = write_yaml(
        project,
        "v3.yaml",
        DIRECT.format(endpoint="cli-update", first="v3").replace(
            "{ECHO_NAME: v3}", "{ECHO_NAME: v3, ECHO_EXIT_AT_START: '1'}"
        ),
    )
    failed = polyhost(server, "deploy", str(broken))
    assert failed.returncode == 1
    assert f"failed; it still serves {endpoint['EndpointConfigName']}" in err(failed)
    assert "v3: configured to fail at start" in err(failed)
    assert polyhost(server, "invoke", "cli-update", "y", "--container", "one").stdout == b"v2:y"


def test_deploy_failure_exits_with_the_failure_reason(
    server: PolyhostProcess, project: Path
) -> None:
    path = write_yaml(
        project,
        "fails.yaml",
        "endpoint: cli-fails\nmodel:\n  image: ECHO_IMAGE\n"
        "  environment: {ECHO_EXIT_AT_START: '1', ECHO_NAME: doomed}\n",
    )
    result = polyhost(server, "deploy", str(path))
    assert result.returncode == 1
    assert "endpoint cli-fails is Failed" in err(result)
    assert "doomed: configured to fail at start" in err(result)
    # Deploying the same file again says why instead of waiting forever.
    again = polyhost(server, "deploy", str(path))
    assert again.returncode == 1
    assert "polyhost rm cli-fails" in err(again)


def test_deploy_rejects_a_bad_file_before_calling(server: PolyhostProcess, project: Path) -> None:
    path = write_yaml(project, "typo.yaml", "endpoint: cli-typo\nmodel: {imag: x}\n")
    result = polyhost(server, "deploy", str(path))
    assert result.returncode == 2
    assert "model: unknown key(s) imag" in err(result)


def test_deploy_prints_the_servers_validation_error(server: PolyhostProcess, project: Path) -> None:
    path = write_yaml(
        project,
        "invalid.yaml",
        "endpoint: cli-invalid\nmodel:\n  mode: Direct\n  containers: [{image: ECHO_IMAGE}]\n",
    )
    result = polyhost(server, "deploy", str(path))
    assert result.returncode == 1
    assert "ValidationException" in err(result)
    assert "Traceback" not in err(result)


# -- invoke ------------------------------------------------------------------------------------


def test_invoke_body_from_argument_file_and_stdin(
    server: PolyhostProcess, direct: str, tmp_path: Path
) -> None:
    result = polyhost(server, "invoke", direct, '{"a": 1}', "--container", "two")
    assert result.returncode == 0 and result.stdout == b'two:{"a": 1}'
    binary = bytes(range(256))
    (tmp_path / "body.bin").write_bytes(binary)
    from_file = polyhost(
        server, "invoke", direct, f"@{tmp_path / 'body.bin'}", "--container", "one"
    )
    assert from_file.stdout == b"one:" + binary
    from_stdin = polyhost(server, "invoke", direct, "-", "--container", "one", stdin=b"piped")
    assert from_stdin.stdout == b"one:piped"


def test_invoke_headers_and_verbose_metadata(server: PolyhostProcess, direct: str) -> None:
    result = polyhost(
        server,
        "invoke",
        direct,
        "hi",
        "--container=one",
        "--content-type=text/csv",
        "--accept=text/csv",
        "--variant=AllTraffic",
        "--custom-attributes=echo-attrs=1,k=v",
        "-v",
    )
    assert result.returncode == 0, err(result)
    assert result.stdout == b"one:hi"
    assert "Content-Type: text/csv" in err(result)
    assert "Invoked-Production-Variant: AllTraffic" in err(result)
    assert "Custom-Attributes: echo-attrs=1,k=v" in err(result)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cli-direct", "x", "--container", "three"], "ValidationError: "),
        (["cli-direct", "x"], "ValidationError: "),
        (["cli-no-such-endpoint", "x"], "ValidationError: Endpoint cli-no-such-endpoint"),
        (
            ["cli-direct", "boom", "--container", "one", "--custom-attributes", "status=500"],
            "OriginalStatusCode: 500",
        ),
        (["cli-direct", "@/no/such/file"], "cannot read the body from /no/such/file"),
        (  # the header reaches the server, which answers for a single-model endpoint
            ["cli-direct", "x", "--container", "one", "--target-model", "team-a/m1.tar.gz"],
            "is not a multi-model endpoint: remove TargetModel",
        ),
    ],
)
def test_invoke_errors_go_to_stderr(
    server: PolyhostProcess, direct: str, args: list[str], expected: str
) -> None:
    result = polyhost(server, "invoke", *args)
    assert result.returncode in (1, 2)
    assert result.stdout == b""
    assert expected in err(result)
    assert err(result).startswith("polyhost: ")


# -- ls ----------------------------------------------------------------------------------------


def test_ls_shows_status_config_mode_and_containers(server: PolyhostProcess, direct: str) -> None:
    result = polyhost(server, "ls")
    assert result.returncode == 0, err(result)
    lines = out(result).splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "CREATED", "CONFIG", "MODE", "CONTAINERS"]
    row = next(line.split() for line in lines if line.startswith("cli-direct "))
    assert row[0:2] == ["cli-direct", "InService"]
    assert row[4:] == ["cli-direct-config", "Direct", "one,two"]


# -- logs --------------------------------------------------------------------------------------


def test_logs_of_a_failed_endpoint_and_unknown_names(server: PolyhostProcess) -> None:
    # test_deploy_failure_exits_with_the_failure_reason left cli-fails behind (module order).
    result = polyhost(server, "logs", "cli-fails")
    assert result.returncode == 0, err(result)
    assert "doomed: configured to fail at start" in out(result)
    # A PrimaryContainer model's container is named after the model.
    tail = polyhost(server, "logs", "cli-fails", "--tail", "1", "--container", "cli-fails-model")
    assert tail.returncode == 0, err(tail)
    assert out(tail) == "doomed: configured to fail at start\n"
    unknown = polyhost(server, "logs", "cli-no-such-endpoint")
    assert unknown.returncode == 1 and "ValidationException" in err(unknown)


def test_logs_unknown_container_lists_the_known_ones(server: PolyhostProcess, direct: str) -> None:
    result = polyhost(server, "logs", direct, "--container", "three")
    assert result.returncode == 1
    assert "one, two" in err(result)


def _lines(stream: Any) -> queue.Queue[str]:
    """Lines of a pipe, read on a thread so the test can wait for one with a deadline."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], fragment: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if fragment in line:
            return line


def test_logs_follow_prints_new_lines_until_interrupted(
    server: PolyhostProcess, direct: str
) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "polyhost", "logs", direct, "--follow", "--interval", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "POLYHOST_URL": server.url},
        preexec_fn=default_sigint,  # the SIGINT below must reach it even if the suite ignores it
    )
    try:
        lines = _lines(follower.stdout)
        # Two streams (one, two): lines are labelled. A crash writes to container two's log
        # (the deployer restarts it).
        crashed = polyhost(server, "invoke", direct, "x", "--container", "two",
                           "--custom-attributes", "crash=1")  # fmt: skip
        assert crashed.returncode == 1
        line = _wait_for(lines, "two: crashing on request")
        assert line.startswith("[AllTraffic/") and "/two] " in line
    finally:
        follower.send_signal(signal.SIGINT)
        code = follower.wait(timeout=20)
    assert code == 0


def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "polyhost", "ls", "--url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot reach polyhost" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


# -- rm ----------------------------------------------------------------------------------------


EXAMPLE = Path(__file__).parents[2] / "examples" / "echo" / "endpoint.yaml"


def test_the_example_deploys_serves_and_rm_all_deletes_it(
    server: PolyhostProcess, sagemaker: Any
) -> None:
    assert polyhost(server, "deploy", str(EXAMPLE)).returncode == 0
    assert polyhost(server, "invoke", "echo-direct", "hi", "--container", "right").stdout == (
        b"right:hi"
    )
    result = polyhost(server, "rm", "echo-direct", "--all")
    assert result.returncode == 0, err(result)
    assert out(result).splitlines() == [
        "model echo-direct-model: deleted",
        "endpoint config echo-direct-config: deleted",
        "endpoint echo-direct: deleted",
        "endpoint echo-direct is gone",
    ]
    names = [e["EndpointName"] for e in sagemaker.list_endpoints(MaxResults=100)["Endpoints"]]
    assert "echo-direct" not in names
    assert not sagemaker.list_models(NameContains="echo-direct")["Models"]
    assert not sagemaker.list_endpoint_configs(NameContains="echo-direct")["EndpointConfigs"]
    again = polyhost(server, "rm", "echo-direct")
    assert again.returncode == 1 and "endpoint echo-direct not found" in err(again)


def test_rm_keeps_the_config_without_all(server: PolyhostProcess, sagemaker: Any) -> None:
    result = polyhost(server, "rm", "cli-fails")
    assert result.returncode == 0, err(result)
    assert sagemaker.describe_endpoint_config(EndpointConfigName="cli-fails-config")


# -- invoke --stream ------------------------------------------------------------------------------


def test_invoke_stream_prints_the_parts(server: PolyhostProcess, direct: str) -> None:
    result = polyhost(server, "invoke", direct, "hi", "--container", "two", "--stream", "-v")
    assert result.returncode == 0, err(result)
    assert result.stdout == b"two:hi"
    assert "Invoked-Production-Variant: AllTraffic" in err(result)


def test_invoke_stream_prints_parts_as_they_come_then_a_broken_streams_error(
    server: PolyhostProcess,
) -> None:
    from tests.support.endpoints import deploy
    from tests.support.server import STREAM_IMAGE

    deploy(server.sagemaker(), "cli-stream", [{"Image": STREAM_IMAGE}])
    command = [sys.executable, "-m", "polyhost", "invoke", "cli-stream"]
    plan = '{"parts": ["one ", "two ", "three"], "delay": 0.4, "then": "drop"}'
    env = {**os.environ, "POLYHOST_URL": server.url}
    with subprocess.Popen(
        [*command, plan, "--stream"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        first = child.stdout.read(4)
        first_at = time.monotonic()
        rest = child.stdout.read()
        # The first part was printed while the others were still being made.
        assert time.monotonic() - first_at > 0.5
        errors = child.stderr.read().decode()
    assert first == b"one "
    assert rest == b"two three"
    assert child.returncode == 1
    assert "ModelStreamError" in errors and "closed the connection" in errors


# -- inference components ------------------------------------------------------------------------

COMPONENTS = """\
endpoint: cli-shared
models:
  - name: cli-shared-model
    image: ECHO_IMAGE
    environment: {{ECHO_NAME: from-model}}
variants:
  - name: AllTraffic
    instance_type: ml.m5.large
    instance_count: 2
    routing: RANDOM
components:
  - name: cli-inline
    image: ECHO_IMAGE
    environment: {{ECHO_NAME: inline}}
    copies: {copies}
    cpus: 0.25
    memory_mb: 256
  - name: cli-of-model
    model: cli-shared-model
    memory_mb: 256
"""


def test_deploy_and_ls_inference_components(
    server: PolyhostProcess, project: Path, sagemaker: Any, runtime: Any
) -> None:
    path = write_yaml(project, "components.yaml", COMPONENTS.format(copies=2))
    result = polyhost(server, "deploy", str(path))
    assert result.returncode == 0, err(result) + out(result)
    text = out(result)
    assert "inference component cli-inline: creating with 2 copies" in text
    assert "inference component cli-inline is InService with 2 of 2 copies" in text
    config = sagemaker.describe_endpoint_config(EndpointConfigName="cli-shared-config")
    (variant,) = config["ProductionVariants"]
    assert "ModelName" not in variant
    assert variant["RoutingConfig"] == {"RoutingStrategy": "RANDOM"}
    answer = runtime.invoke_endpoint(
        EndpointName="cli-shared", InferenceComponentName="cli-of-model", Body=b"x"
    )["Body"].read()
    assert answer.startswith(b"from-model:")
    # Deploying again changes nothing; a new copy count changes only that.
    again = polyhost(server, "deploy", str(path))
    assert again.returncode == 0, err(again)
    assert "inference component cli-inline: unchanged" in out(again)
    more = polyhost(
        server, "deploy", str(write_yaml(project, "c3.yaml", COMPONENTS.format(copies=3)))
    )
    assert more.returncode == 0, err(more)
    assert "inference component cli-inline: from 2 to 3 copies" in out(more)
    assert "inference component cli-of-model: unchanged" in out(more)
    listed = polyhost(server, "ls")
    assert listed.returncode == 0, err(listed)
    lines = out(listed).splitlines()
    row = next(line.split() for line in lines if line.startswith("cli-shared "))
    assert row[1] == "InService" and row[-2] == "Components", row
    assert row[-1] == "cli-inline(3/3),cli-of-model(1/1)", row
    header = next(i for i, line in enumerate(lines) if line.startswith("COMPONENT "))
    components = {line.split()[0]: line.split() for line in lines[header + 1 :]}
    assert components["cli-inline"] == [
        "cli-inline",
        "cli-shared",
        "AllTraffic",
        "InService",
        "3/3",
    ]


def test_ls_lists_scalable_targets_with_capacity_and_policies(
    server: PolyhostProcess, project: Path, direct: str
) -> None:
    # The endpoint and components test_deploy_and_ls_inference_components left (module order).
    path = write_yaml(project, "components.yaml", COMPONENTS.format(copies=3))
    assert polyhost(server, "deploy", str(path)).returncode == 0
    before = polyhost(server, "ls")
    assert before.returncode == 0, err(before)
    assert "RESOURCE " not in out(before)  # no targets, no table
    scaling = server.autoscaling()
    dimension = "sagemaker:inference-component:DesiredCopyCount"
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId="inference-component/cli-inline",
        ScalableDimension=dimension,
        MinCapacity=1,
        MaxCapacity=5,
    )
    scaling.put_scaling_policy(
        PolicyName="cli-step",
        ServiceNamespace="sagemaker",
        ResourceId="inference-component/cli-inline",
        ScalableDimension=dimension,
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
        },
    )
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=f"endpoint/{direct}/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=2,
    )
    try:
        listed = polyhost(server, "ls")
        assert listed.returncode == 0, err(listed)
        lines = out(listed).splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("RESOURCE "))
        assert lines[header].split() == [
            "RESOURCE",
            "DIMENSION",
            "MIN",
            "MAX",
            "CURRENT",
            "POLICIES",
        ]
        rows = {line.split()[0]: line.split() for line in lines[header + 1 :]}
        assert rows["inference-component/cli-inline"] == [
            "inference-component/cli-inline",
            dimension,
            "1",
            "5",
            "3",
            "cli-step",
        ]
        assert rows[f"endpoint/{direct}/variant/AllTraffic"][2:] == ["1", "2", "1", "-"]
    finally:
        for resource, dim in (
            ("inference-component/cli-inline", dimension),
            (f"endpoint/{direct}/variant/AllTraffic", "sagemaker:variant:DesiredInstanceCount"),
        ):
            scaling.deregister_scalable_target(
                ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=dim
            )
