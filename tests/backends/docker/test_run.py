"""The Docker API arguments of a container and its environment, for both network modes.

The user-network mode (`--docker-network`) cannot run on this project's test machines: a
bridge network needs a private address range they may not route to, so its arguments are
checked here and its behaviour is documented in backends/docker/run.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from polyhost.backends.base import LaunchSpec, ResourceLimits
from polyhost.backends.docker.env import docker_environment
from polyhost.backends.docker.run import bind_host, create_options, describe_limits
from polyhost.backends.role_credentials import AwsCredentials


def spec(tmp_path: Path, limits: ResourceLimits | None = None) -> LaunchSpec:
    return LaunchSpec(
        container_id="e.r1.v.i-0.h",
        image="acme/x:1",
        environment={"MODEL_SETTING": "1", "SAGEMAKER_BIND_TO_PORT": "9"},
        model_dir=tmp_path / "model",
        host="127.0.0.1",
        port=21040,
        safe_port_range=(21041, 21049),
        log_path=tmp_path / "container.log",
        limits=limits or ResourceLimits(),
    )


def options(launch: LaunchSpec, network: str = "") -> dict[str, object]:
    return create_options(
        launch, image="acme/x:1", name="n", labels={"l": "v"}, environment={}, network=network
    )


def test_host_network_serve_and_a_read_only_model(tmp_path: Path) -> None:
    made = options(spec(tmp_path))
    assert made["command"] == ["serve"]
    assert made["network_mode"] == "host" and "ports" not in made
    assert made["volumes"] == {str(tmp_path / "model"): {"bind": "/opt/ml/model", "mode": "ro"}}
    assert "mem_limit" not in made and "nano_cpus" not in made
    assert bind_host("") == "127.0.0.1"


def test_a_user_network_publishes_the_port_on_loopback_only(tmp_path: Path) -> None:
    made = options(spec(tmp_path), network="models")
    assert made["network"] == "models" and "network_mode" not in made
    assert made["ports"] == {"21040/tcp": ("127.0.0.1", 21040)}
    assert bind_host("models") == "0.0.0.0"


def test_limits_become_memory_without_swap_and_nano_cpus(tmp_path: Path) -> None:
    launch = spec(tmp_path, ResourceLimits(memory_bytes=64 << 20, cpus=1.5))
    made = options(launch)
    assert made["mem_limit"] == made["memswap_limit"] == 64 << 20
    assert made["nano_cpus"] == 1_500_000_000
    applied = describe_limits(launch, {"Memory": 64 << 20, "NanoCpus": 1_500_000_000})
    assert applied == "memory: 64MiB (Docker cgroup); cpus: 1.5 (Docker cgroup)"
    assert describe_limits(spec(tmp_path), {}) == "no limits requested"


def test_the_environment_is_the_models_plus_the_contract_and_no_server_secret(
    tmp_path: Path,
) -> None:
    server = {"AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": "k", "HOME": "/root", "PATH": "/x"}
    env = docker_environment(
        spec(tmp_path), region="eu-west-1", bind_host="127.0.0.1", server_env=server
    )
    assert env["MODEL_SETTING"] == "1"
    assert env["SAGEMAKER_BIND_TO_PORT"] == "21040"  # the contract beats the model
    assert env["SAGEMAKER_SAFE_PORT_RANGE"] == "21041-21049"
    assert env["AWS_REGION"] == "eu-west-1"
    assert not {"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "HOME", "PATH"} & set(env)


def test_the_roles_credentials_replace_the_models_keys(tmp_path: Path) -> None:
    launch = replace(spec(tmp_path), environment={"AWS_SESSION_TOKEN": "model's"})
    env = docker_environment(
        launch,
        region="us-east-1",
        bind_host="127.0.0.1",
        credentials=AwsCredentials("AKIA", "secret"),
        server_env={},
    )
    assert env["AWS_ACCESS_KEY_ID"] == "AKIA" and env["AWS_SECRET_ACCESS_KEY"] == "secret"
    assert "AWS_SESSION_TOKEN" not in env


def test_a_built_in_image_standing_in_for_a_framework_uri_is_told_the_uri(tmp_path: Path) -> None:
    uri = "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.3.1-cpu"
    launch = replace(spec(tmp_path), image=uri)
    standing_in = create_options(
        launch, image="polyhost/tensorflow", name="n", labels={}, environment={}, network=""
    )
    assert standing_in["command"] == ["serve", "--sagemaker-image", uri]
    # The real image, when the daemon has it, runs with SageMaker's own command.
    real = create_options(launch, image=uri, name="n", labels={}, environment={}, network="")
    assert real["command"] == ["serve"]
