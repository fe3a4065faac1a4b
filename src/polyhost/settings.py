"""Server settings: one typed object, the only place a default lives.

Every field carries its own command-line flag and help text (`setting(...)`), so `polyhost
serve`'s flags are derived from this class (`cli.py` adds no default of its own), and every
field can also be set from the environment as `POLYHOST_<FLAG>`: `--state-dir` is
`POLYHOST_STATE_DIR`, `--invocation-timeout` is `POLYHOST_INVOCATION_TIMEOUT`, as MLServer reads
`MLSERVER_*`. A flag beats the environment, which beats the default.

Every component takes what it needs from here instead of reading the environment itself, so a
test can start a server with exactly the settings it means.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyhost.naming import resource_arn

ENV_PREFIX = "POLYHOST_"
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def setting(
    default: Any,
    flag: str,
    help: str,
    *,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with its `serve` flag and help text (the flag also names its env var).

    A mutable or computed default is not needed by any setting, so `default` is a plain value.
    """
    metadata = {"flag": flag, "help": help, "metavar": metavar, "choices": choices}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    # -- where and who ------------------------------------------------------------------------
    host: str = setting(
        "127.0.0.1", "--host", "bind address; non-loopback needs auth or --insecure"
    )
    port: int = setting(7080, "--port", "TCP port of the one HTTP listener")
    state_dir: Path = setting(
        Path("./state"), "--state-dir", "folder of the database, models, logs and caches"
    )
    region: str = setting("us-east-1", "--region", "region shown in ARNs")
    account_id: str = setting("123456789012", "--account-id", "account shown in ARNs")
    image_config: Path | None = setting(
        None, "--image-config", "images.toml describing user images", metavar="FILE"
    )
    insecure: bool = setting(
        False,
        "--insecure",
        "allow a non-loopback bind although requests are not authenticated",
    )
    # -- where containers run -----------------------------------------------------------------
    backend: str = setting(
        "process",
        "--backend",
        "what runs containers: child processes, Docker images, or a Ray cluster",
        choices=("process", "docker", "ray"),
    )
    docker_pull: str = setting(
        "never",
        "--docker-pull",
        "when the Docker backend pulls an image: never (images must be present), missing, always",
        choices=("never", "missing", "always"),
    )
    docker_network: str = setting(
        "",
        "--docker-network",
        "run Docker containers on this user network with published ports instead of the host's",
        metavar="NAME",
    )
    # -- keeping tenants' containers apart (backends/confinement.py) --------------------------
    isolate: bool | None = setting(
        None,
        "--isolate",
        "run each instance's containers in a network namespace of their own: they reach each "
        "other on loopback and nothing else, and only the router reaches them (default: on "
        "with --auth-file; --no-isolate turns it off, which a machine that cannot make "
        "namespaces needs with --auth-file)",
    )
    container_user: str = setting(
        "auto",
        "--container-user",
        "who containers run as: auto (with --auth-file, a user of their own per instance from "
        "2000000000-2000099999 where the server may switch users), server (the server's own "
        "user), a uid, or a uid range FIRST-LAST (one uid per instance)",
        metavar="USER",
    )
    ray_address: str = setting(
        "",
        "--ray-address",
        "the Ray cluster of the ray backend (default: RAY_ADDRESS, else auto)",
        metavar="ADDR",
    )
    ray_node_address: str = setting(
        "",
        "--ray-node-address",
        "this machine's address in the Ray cluster, for the server's own connection to it "
        "(default: the one Ray picks)",
        metavar="ADDR",
    )
    ray_container_cpus: float = setting(
        0.25,
        "--ray-container-cpus",
        "CPUs reserved on the Ray cluster for a container whose image sets no CPU limit",
        metavar="N",
    )
    ray_container_memory: int = setting(
        256 * MiB,
        "--ray-container-memory",
        "memory (bytes) reserved on the Ray cluster for a container whose image sets none",
        metavar="BYTES",
    )
    ray_placement_timeout_s: float = setting(
        30.0,
        "--ray-placement-timeout",
        "longest wait for room on the Ray cluster before an instance's placement fails",
    )
    # -- access control (SigV4 + IAM-style policies) -----------------------------------------
    auth_file: Path | None = setting(
        None,
        "--auth-file",
        "principals.json: every request must be SigV4-signed by a listed principal and allowed "
        "by its policies (SIGHUP reloads it)",
        metavar="FILE",
    )
    # -- the admin listener: /metrics, the dashboard ------------------------------------------
    admin_host: str = setting(
        "127.0.0.1",
        "--admin-host",
        "bind address of the admin listener; non-loopback needs --admin-token-file",
    )
    admin_port: int = setting(
        7081, "--admin-port", "port of the admin listener (/metrics, /ui); 0 turns it off"
    )
    admin_token_file: Path | None = setting(
        None,
        "--admin-token-file",
        "file holding the bearer token the admin listener requires (Authorization: Bearer ...)",
        metavar="FILE",
    )
    # -- metric history (CloudWatch's read API, the dashboard) --------------------------------
    metrics_history: bool = setting(
        True, "--metrics-history", "record per-container series for CloudWatch and the dashboard"
    )
    metrics_max_series: int = setting(
        2000, "--metrics-max-series", "most metric series kept (a new one replaces an idle one)"
    )
    metrics_retention_days: int = setting(
        15, "--metrics-retention-days", "days of 1-minute roll-ups kept in the state dir"
    )
    alarm_evaluation_interval_s: float = setting(
        10.0,
        "--alarm-evaluation-interval",
        "seconds between evaluations of every CloudWatch alarm (docs/alarms.md)",
    )
    autoscaling_time_scale: float = setting(
        1.0,
        "--autoscaling-time-scale",
        "N from 1 to 6: one evaluated minute of alarms, cooldowns and scheduled rates lasts "
        "60/N seconds (docs/autoscaling.md)",
    )
    # -- data plane (docs/contract.md) ---------------------------------------------------------
    invocation_timeout_s: float = setting(
        60.0, "--invocation-timeout", "seconds a container may take to answer an invocation"
    )
    max_inflight_per_container: int = setting(
        64,
        "--max-inflight",
        "requests in flight per container; past it a request gets 503 at once instead of queueing",
    )
    max_body_bytes: int = setting(
        6 * MiB, "--max-body-bytes", "largest InvokeEndpoint request or response body"
    )
    model_load_wait_s: float = setting(
        60.0,
        "--model-load-wait",
        "seconds an invocation of a multi-model endpoint waits for its model to load before "
        "answering a retryable 429 ModelNotReadyException (the load goes on)",
    )
    model_load_timeout_s: float = setting(
        360.0,
        "--model-load-timeout",
        "seconds a multi-model container may take to load one model before the load fails",
    )
    max_loaded_models: int = setting(
        1000,
        "--max-loaded-models",
        "models one multi-model container holds at most; past it the least recently used "
        "is unloaded (memory usually decides first)",
    )
    max_interchange_bytes: int = setting(
        5 * MiB, "--max-interchange-bytes", "largest payload between containers of a pipeline"
    )
    max_control_body_bytes: int = setting(
        16 * MiB, "--max-control-body-bytes", "largest control-plane request body"
    )
    # -- InvokeEndpointWithResponseStream (router/streaming.py) -------------------------------
    max_stream_bytes: int = setting(
        1 * GiB,
        "--max-stream-bytes",
        "largest answer one InvokeEndpointWithResponseStream call may stream; past it the "
        "stream ends with a ModelStreamError (StreamBroken)",
    )
    stream_idle_timeout_s: float = setting(
        30.0,
        "--stream-idle-timeout",
        "seconds a streaming container may go without sending part of its answer (a slow "
        "client's wait is not counted); past it the stream ends with a ModelStreamError "
        "(ModelInvocationTimeExceeded). The whole stream is bounded by --invocation-timeout",
    )
    # -- InvokeEndpointAsync (asyncinf/) ------------------------------------------------------
    async_max_queued: int = setting(
        10_000,
        "--async-max-queued",
        "asynchronous requests one endpoint holds waiting or running; past it "
        "InvokeEndpointAsync answers a retryable 503",
    )
    async_max_input_bytes: int = setting(
        64 * MiB,
        "--async-max-input-bytes",
        "largest InputLocation object an asynchronous request may name (held in memory while "
        "it runs); a bigger one fails the request",
    )
    async_fetch_timeout_s: float = setting(
        300.0,
        "--async-fetch-timeout",
        "seconds to download one asynchronous request's input or upload its answer",
    )
    # -- data capture (capture/) --------------------------------------------------------------
    data_capture_flush_s: float = setting(
        60.0,
        "--data-capture-flush-s",
        "seconds captured invocations (DataCaptureConfig) wait in memory at most before they "
        "are written to S3 (SageMaker takes a couple of minutes); also written at shutdown",
    )
    data_capture_max_queued_bytes: int = setting(
        64 * MiB,
        "--data-capture-max-queued-bytes",
        "bodies of captured invocations held in memory waiting to be written; past it (or "
        "--data-capture-max-queued records) new captures are dropped and counted",
    )
    data_capture_max_queued: int = setting(
        50_000,
        "--data-capture-max-queued",
        "captured invocations held in memory waiting to be written; past it new ones are "
        "dropped and counted",
    )
    data_capture_max_record_bytes: int = setting(
        12 * MiB,
        "--data-capture-max-record-bytes",
        "largest request plus answer one capture record holds; a bigger invocation is "
        "answered as usual, and its capture dropped and counted",
    )
    # -- HTTP listener bounds -----------------------------------------------------------------
    keep_alive_timeout_s: float = setting(
        75.0, "--keep-alive-timeout", "seconds an idle keep-alive connection stays open"
    )
    header_timeout_s: float = setting(
        10.0, "--header-timeout", "seconds a client has to send a whole request head"
    )
    body_timeout_s: float = setting(
        60.0, "--body-timeout", "seconds a client has to send a whole request body"
    )
    max_connections: int = setting(
        4096, "--max-connections", "open client connections; past it new ones are refused"
    )
    max_request_line_bytes: int = setting(
        8 * KiB, "--max-request-line-bytes", "longest request line (method, URL, version): 414"
    )
    max_header_bytes: int = setting(
        16 * KiB,
        "--max-header-bytes",
        "longest single header line: 431 for a request, ModelError for a container's answer",
    )
    max_headers_total_bytes: int = setting(
        64 * KiB,
        "--max-headers-total-bytes",
        "largest head in all: 431 for a request, ModelError for a container's answer",
    )
    max_header_count: int = setting(
        100,
        "--max-header-count",
        "most headers in a head: 431 for a request, ModelError for a container's answer",
    )
    access_log: bool = setting(True, "--access-log", "one log line per request")
    # -- containers ---------------------------------------------------------------------------
    stop_grace_s: float = setting(
        30.0, "--stop-grace", "seconds from SIGTERM to SIGKILL when a container is stopped"
    )
    default_startup_timeout_s: float = setting(
        240.0,
        "--startup-timeout",
        "seconds a container may take to pass /ping when its variant does not say "
        "(ContainerStartupHealthCheckTimeoutInSeconds; SageMaker's default)",
    )
    serverless_idle_s: float = setting(
        300.0,
        "--serverless-idle-s",
        "seconds a serverless variant's container (ServerlessConfig without "
        "ProvisionedConcurrency) runs without a request before it is stopped; the next "
        "request starts it again (a cold start)",
    )
    health_check_interval_s: float = setting(
        5.0, "--health-check-interval", "seconds between /ping checks of a running container"
    )
    health_check_failures: int = setting(
        3, "--health-check-failures", "failed /ping checks in a row before a restart"
    )
    log_max_bytes: int = setting(
        10 * MiB, "--log-max-bytes", "size at which a container's log file is rotated"
    )
    log_backups: int = setting(2, "--log-backups", "rotated log files kept per container")
    log_retention_s: float = setting(
        3600.0, "--log-retention", "seconds the logs of a deleted endpoint are kept"
    )
    role_credentials: Path | None = setting(
        None,
        "--role-credentials",
        "TOML mapping ExecutionRoleArn to a credentials source; containers get no server "
        "credentials otherwise",
        metavar="FILE",
    )
    # -- model data ---------------------------------------------------------------------------
    max_model_bytes: int = setting(
        20 * GiB, "--model-max-bytes", "largest extracted model (a guard against tar bombs)"
    )
    max_model_ratio: int = setting(
        200, "--model-max-ratio", "largest extracted size as a multiple of the archive's size"
    )
    model_cache_max_bytes: int = setting(
        50 * GiB, "--model-cache-max-bytes", "models kept in the cache that no endpoint uses"
    )
    model_cache_grace_s: float = setting(
        600.0, "--model-cache-grace", "seconds an unused cached model is kept"
    )
    allow_model_hosts: tuple[str, ...] = setting(
        (),
        "--allow-model-host",
        "host or CIDR that https:// model data may come from although it is private, loopback "
        "or link-local (repeatable)",
        metavar="HOST",
    )
    allow_model_dirs: tuple[Path, ...] = setting(
        (),
        "--allow-model-dir",
        "folder that file:// model data may come from (repeatable; symlinks are followed "
        "before the check). With --auth-file, file:// model data is refused outside these "
        "folders, and refused altogether when none is given; without auth any folder is taken "
        "unless some are named. The state dir, auth file, admin token and Docker socket are "
        "never served, and a folder is copied into the model cache first",
        metavar="DIR",
    )
    instance_types: tuple[str, ...] = setting(
        (),
        "--instance-type",
        "what one instance of a type holds for inference components, as TYPE=VCPUS:MEMORY_MIB "
        "(e.g. ml.m5.large=2:8192; repeatable); overrides the built-in table of SageMaker's "
        "instance types (docs/inference-components.md)",
        metavar="TYPE=VCPUS:MIB",
    )
    artifact_workers: int = setting(
        4, "--artifact-workers", "threads that download and extract model data"
    )

    # -- derived --------------------------------------------------------------------------------
    @property
    def is_loopback(self) -> bool:
        """True when the bind address only accepts connections from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def isolation_wanted(self) -> bool:
        """Whether each instance gets a network of its own: as `--isolate` says, else whenever
        auth shares the server. The start-up plan and the control plane read this one answer."""
        return self.isolate if self.isolate is not None else self.auth_file is not None

    @property
    def db_path(self) -> Path:
        return self.state_dir / "polyhost.db"

    @property
    def containers_dir(self) -> Path:
        """Per-container working folders: extracted models and logs."""
        return self.state_dir / "containers"

    @property
    def artifact_cache_dir(self) -> Path:
        return self.state_dir / "artifacts"

    def arn(self, kind: str, name: str) -> str:
        """SageMaker ARN of a resource; the name part is lowercased as SageMaker does."""
        return resource_arn(self.region, self.account_id, kind, name)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `POLYHOST_*` variables, then `overrides` (e.g. parsed flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields():
            raw = environ.get(spec.env)
            if raw is not None:
                try:
                    values[spec.name] = spec.parse(raw)
                except ValueError as error:
                    raise ValueError(f"{spec.env}={raw!r} is not valid: {error}") from None
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class SettingSpec:
    """What `cli.py` needs to build one flag, and the environment variable of the same name."""

    name: str
    flag: str
    help: str
    metavar: str | None
    default: Any
    # "str" | "int" | "float" | "bool" | "optional-bool" | "path" | "optional-path" | "strings"
    # | "paths"
    kind: str
    choices: tuple[str, ...] | None = None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.lstrip("-").replace("-", "_").upper()

    def parse(self, raw: str) -> Any:
        """Turn a flag or environment value into the field's type; ValueError says why not."""
        if self.kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"{self.env} must be true or false, not {raw!r}")
        if self.kind == "optional-bool":  # unset ("auto") lets the server decide
            if raw.strip().lower() in ("", "auto"):
                return None
            return dataclasses.replace(self, kind="bool").parse(raw)
        if self.kind == "int":
            return int(raw)
        if self.kind == "float":
            return float(raw)
        if self.kind == "path":
            return Path(raw)
        if self.kind == "optional-path":
            return Path(raw) if raw else None
        if self.kind == "strings":
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if self.kind == "paths":  # separated as PATH is: a comma may be part of a folder's name
            return tuple(Path(part) for part in raw.split(os.pathsep) if part)
        if self.choices is not None and raw not in self.choices:
            raise ValueError(f"{self.env} must be one of {', '.join(self.choices)}, not {raw!r}")
        return raw


_KINDS = {
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "bool | None": "optional-bool",
    "Path": "path",
    "Path | None": "optional-path",
    "tuple[str, ...]": "strings",
    "tuple[Path, ...]": "paths",
}


def fields() -> Iterator[SettingSpec]:
    """Every setting, in declaration order."""
    for spec in dataclasses.fields(Settings):
        yield SettingSpec(
            name=spec.name,
            flag=spec.metadata["flag"],
            help=spec.metadata["help"],
            metavar=spec.metadata["metavar"],
            default=spec.default,
            kind=_KINDS[str(spec.type)],
            choices=spec.metadata["choices"],
        )
