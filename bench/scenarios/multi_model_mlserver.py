"""Scenario 24: a multi-model endpoint against MLServer as a multi-model server.

The same scikit-learn models on both sides: digits LogisticRegressions, each with its own
intercepts (so each answers its own class, checked on every call) and a constant 4 MiB array
that makes its memory known. polyhost serves them from one prefix on a local S3 server (moto's
server mode) through one `polyhost/sklearn` MultiModel container, called with TargetModel;
MLServer (its own venv, the sklearn runtime, `parallel_workers: 0`, its fastest setting for this
model in scenario 2) serves them from its model repository (one folder with
`model-settings.json` per model, `load_models_at_startup: false`), loaded with its repository
API (`POST /v2/repository/models/{name}/load`) and called with V2 `POST /v2/models/{name}/infer`.

- **Warm throughput**: 50 models loaded on each, c=32 with wrk (one thread) replaying prepared
  requests that rotate over the 50 models (the same script on both sides), rounds alternating
  which server goes first, both servers up throughout.
- **More models than memory holds**: a models' budget for about 20 models and a round robin,
  twice, over 60. polyhost's container gets the budget as `POLYHOST_MULTI_MODEL_MEMORY_BYTES`
  and evicts by itself. MLServer has no budget of its own and never unloads by itself, so the
  client does what a platform in front of it would: load a model on its first call, never
  unload. Its memory is bounded by the kernel: a fresh MLServer process, once its first model
  is loaded and answered (its imports and threads in place), gets an address-space limit
  (RLIMIT_AS) of its size then plus the same budget, so the machine is never at risk and what
  happens when its memory fills is MLServer's own behaviour. glibc's malloc arenas are set to 2
  (`MALLOC_ARENA_MAX`) in that process, so the limit tracks what is allocated rather than
  per-thread reservations.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import http.client
import io
import json
import statistics
import tarfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil

from bench.context import Context
from bench.loadgen import wrk_script_run
from bench.machine import machine_lines
from bench.peers import mlserver as peer
from bench.peers.venvs import package_version
from bench.polyhost_server import PolyhostServer
from bench.procs import Service, free_port
from bench.report import Section
from bench.scenarios.multi_model import (
    S3_KEYS,
    TARGET_HEADER,
    Sampler,
    _environment,
    _local_s3,
    _prometheus,
)
from bench.scenarios.multi_model_scale import _mme_pids

KEY = "multi-model-mlserver"
TITLE = "24. Multi-model endpoint against MLServer's multi-model serving (scikit-learn)"
MIB = 1024 * 1024
REPLAY = Path(__file__).resolve().parents[1] / "wrk" / "replay.lua"


@dataclass(frozen=True)
class Plan:
    models: int
    warm_models: int  # loaded on both for the throughput rounds
    room: int  # models the tight budget is sized for
    passes: int  # of the round robin over all `models` under the tight budget
    pad_mib: int
    rounds: int
    seconds: float
    warmup_seconds: float

    @property
    def budget(self) -> int:
        return int(self.room * self.pad_mib * MIB * 1.15)


FULL = Plan(models=60, warm_models=50, room=20, passes=2, pad_mib=4, rounds=5, seconds=10,
            warmup_seconds=2)  # fmt: skip
QUICK = Plan(models=6, warm_models=4, room=2, passes=1, pad_mib=1, rounds=1, seconds=1,
             warmup_seconds=0)  # fmt: skip


def _name(index: int) -> str:
    return f"m{index:03d}"


def _models(plan: Plan, folder: Path) -> tuple[dict[str, bytes], dict[str, int], list[float]]:
    """Each model's joblib in MLServer's repository (`folder/NAME/`), its archive for S3, the
    class it answers, and the request row."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():  # each model's answer is set by its intercepts
        warnings.simplefilter("ignore")
        base = LogisticRegression(max_iter=50).fit(x[:500], y[:500])
    archives: dict[str, bytes] = {}
    answers: dict[str, int] = {}
    for index in range(plan.models):
        name = _name(index)
        model = copy.deepcopy(base)
        answers[name] = (index * 7) % 10
        model.intercept_ = base.intercept_.copy()
        model.intercept_[answers[name]] += 1000.0
        model.padding_ = np.full(plan.pad_mib * MIB // 8, float(index))
        own = folder / name
        own.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, own / "model.joblib")
        settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str((own / "model.joblib").resolve()), "version": "v1"},
        }
        (own / "model-settings.json").write_text(json.dumps(settings), encoding="utf-8")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            archive.add(own / "model.joblib", arcname="model.joblib")
        archives[name] = buffer.getvalue()
    return archives, answers, [float(v) for v in x[0]]


class MultiMLServer:
    """`mlserver start` on a model repository, no model loaded at start; loads and infers."""

    def __init__(self, bin_dir: Path, repository: Path, folder: Path, env: dict[str, str]):
        self.folder = folder
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        # Settings from the environment (MLServer's MLSERVER_ prefix): the folder `mlserver
        # start` is given is the model repository, shared by both MLServer processes.
        settings = {
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(self.port),
            "MLSERVER_GRPC_PORT": str(free_port()),
            "MLSERVER_METRICS_PORT": str(free_port()),
            "MLSERVER_DEBUG": "false",
            "MLSERVER_PARALLEL_WORKERS": "0",
            "MLSERVER_LOAD_MODELS_AT_STARTUP": "false",
        }
        self.service = Service(
            "mlserver (multi-model)",
            [str(bin_dir / "mlserver"), "start", str(repository.resolve())],
            folder / "mlserver.log",
            env=settings | env,
            cwd=folder,
        )
        self.connection: http.client.HTTPConnection | None = None

    def start(self) -> None:
        self.service.start()

    def wait(self) -> None:
        self.service.wait_http(f"http://127.0.0.1:{self.port}/v2/health/live", timeout=180)

    def request(self, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """POST on a kept-alive connection; once more on a new one if that one was closed
        (MLServer closes it after a 500). Status 0: no answer at all."""
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            connection = self.connection
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                data = answer.read()
                if answer.will_close:
                    connection.close()
                    self.connection = None
                return answer.status, data
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                self.connection = None
                if attempt == 1:
                    return 0, f"{type(error).__name__}: {error}".encode()
        raise AssertionError("unreachable")

    def load(self, name: str) -> tuple[int, bytes]:
        return self.request(f"/v2/repository/models/{name}/load")

    def infer(self, name: str, body: bytes) -> tuple[int, bytes]:
        return self.request(f"/v2/models/{name}/infer", body)

    def processes(self) -> list[psutil.Process]:
        own = psutil.Process(self.service.pid)
        return [own, *own.children(recursive=True)]

    def alive(self) -> bool:
        return self.service.process is not None and self.service.process.poll() is None

    def stop(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.service.stop(grace=20)


def _v2_class(data: bytes) -> int | None:
    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
        return int(json.loads(data)["outputs"][0]["data"][0])
    return None


def _replay_file(
    path: Path, port: int, requests: list[tuple[str, dict[str, str]]], body: bytes
) -> Path:
    parts = []
    for target, headers in requests:
        lines = [f"POST {target} HTTP/1.1", f"Host: 127.0.0.1:{port}",
                 "Content-Type: application/json", f"Content-Length: {len(body)}",
                 *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        parts.append(f"{len(raw)}\n".encode() + raw)
    path.write_bytes(b"".join(parts))
    return path


@contextlib.contextmanager
def _started(services: list[Any]) -> Iterator[None]:
    try:
        yield
    finally:  # stopped side by side: each takes a second or two to shut down
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(services)) as pool:
            for service in services:
                pool.submit(service.stop)


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    plan = QUICK if ctx.quick else FULL
    work = ctx.work(KEY)
    bin_dir = peer.install(ctx.work_root / "venvs")
    repository = work / "repository"
    repository.mkdir(exist_ok=True)
    results: dict[str, Any] = {"plan": vars(plan) | {"budget": plan.budget}}
    warm_ml = MultiMLServer(bin_dir, repository, work / "mlserver-warm", {})
    capped_ml = MultiMLServer(
        bin_dir, repository, work / "mlserver-capped", {"MALLOC_ARENA_MAX": "2"}
    )
    server = PolyhostServer(work / "polyhost")
    with _local_s3(work) as s3_endpoint, _started([server, warm_ml, capped_ml]):
        # The servers start while the models are made (MLServer reads its repository when a
        # model is loaded, polyhost its prefix on a model's first call).
        warm_ml.start()
        capped_ml.start()
        with _environment({"AWS_ENDPOINT_URL_S3": s3_endpoint, **S3_KEYS}):
            server.start()
        archives, answers, row = _models(plan, repository)
        poly_body = json.dumps([row]).encode()
        v2_body = peer.v2_body([row])
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket="models")
        for name, data in archives.items():
            s3.put_object(Bucket="models", Key=f"mme/{name}.tar.gz", Body=data)
        results["archive_bytes"] = len(next(iter(archives.values())))
        warm_ml.wait()
        capped_ml.wait()
        mme = {
            "Image": "polyhost/sklearn",
            "Mode": "MultiModel",
            "ModelDataUrl": "s3://models/mme/",
        }
        server.deploy("mme", [mme])
        before_tight = _mme_pids(server)
        tight = mme | {"Environment": {"POLYHOST_MULTI_MODEL_MEMORY_BYTES": str(plan.budget)}}
        server.deploy("tight", [tight])
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            # The first call of the tight endpoint and of the capped MLServer (each imports
            # scikit-learn) while the warm models load; both done before the rounds start.
            first_tight = pool.submit(_call_poly, server, "tight", _name(0), poly_body)
            first_capped = pool.submit(_first_model, capped_ml, answers, v2_body)
            results["throughput"] = _throughput(
                work, plan, server, warm_ml, answers, poly_body, v2_body,
                before_rounds=lambda: (first_tight.result(), first_capped.result()),
            )  # fmt: skip
        warm_ml.stop()
        results["poly_tight"] = _poly_tight(
            plan, server, before_tight, first_tight.result(), answers, poly_body
        )
        results["ml_capped"] = _ml_capped(plan, capped_ml, answers, v2_body)
    results["versions"] = {
        p: package_version(bin_dir, p) for p in ("mlserver", "mlserver-sklearn", "scikit-learn")
    }
    ctx.save_raw(KEY, results)
    _report(section, plan, results)
    return section


def _call_poly(server: PolyhostServer, endpoint: str, name: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        connection.request(
            "POST",
            f"/endpoints/{endpoint}/invocations",
            body,
            {"Content-Type": "application/json", TARGET_HEADER: f"{name}.tar.gz"},
        )
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def _poly_class(data: bytes) -> int | None:
    with contextlib.suppress(ValueError, IndexError, TypeError):
        return int(json.loads(data)[0])
    return None


def _load_on_mlserver(
    ml: MultiMLServer, names: list[str], answers: dict[str, int], body: bytes
) -> None:
    for name in names:
        status, data = ml.load(name)
        if status != 200:
            raise RuntimeError(f"MLServer load {name}: {status} {data[:300]!r}")
        status, data = ml.infer(name, body)
        if status != 200 or _v2_class(data) != answers[name]:
            raise RuntimeError(f"MLServer {name}: {status} {data[:300]!r}")


def _throughput(
    work: Path,
    plan: Plan,
    server: PolyhostServer,
    ml: MultiMLServer,
    answers: dict[str, int],
    poly_body: bytes,
    v2_body: bytes,
    before_rounds: Callable[[], object],
) -> dict[str, Any]:
    names = [_name(i) for i in range(plan.warm_models)]

    def load_on_polyhost() -> None:
        for name in names:
            status, data = _call_poly(server, "mme", name, poly_body)
            if status != 200 or _poly_class(data) != answers[name]:
                raise RuntimeError(f"polyhost {name}: {status} {data[:300]!r}")

    # Loaded on both (polyhost's on a thread meanwhile), every answer checked once.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        polyhost_loads = pool.submit(load_on_polyhost)
        _load_on_mlserver(ml, names, answers, v2_body)
        polyhost_loads.result()
    poly_file = _replay_file(
        work / "poly.requests",
        server.port,
        [("/endpoints/mme/invocations", {TARGET_HEADER: f"{n}.tar.gz"}) for n in names],
        poly_body,
    )
    ml_file = _replay_file(
        work / "mlserver.requests", ml.port, [(f"/v2/models/{n}/infer", {}) for n in names], v2_body
    )
    sides = {
        "polyhost": (server.url + "/", poly_file),
        "MLServer": (f"http://127.0.0.1:{ml.port}/", ml_file),
    }
    before_rounds()
    rounds: list[dict[str, dict[str, float]]] = []
    for number in range(plan.rounds):
        order = ["polyhost", "MLServer"] if number % 2 == 0 else ["MLServer", "polyhost"]
        measured: dict[str, dict[str, float]] = {}
        for side in order:
            url, file = sides[side]
            if plan.warmup_seconds:
                wrk_script_run(url, REPLAY, [str(file)], 32, plan.warmup_seconds)
            result = wrk_script_run(url, REPLAY, [str(file)], 32, plan.seconds)
            measured[side] = {"rps": result.rps, "p50_ms": result.p50_ms,
                              "p99_ms": result.p99_ms, "errors": result.errors,
                              "requests": result.requests}  # fmt: skip
        rounds.append(measured)
        print(f"  throughput round {number + 1}: {measured}", flush=True)
    metrics = _prometheus(server, "mme")
    return {"rounds": rounds, "misses": metrics.get("polyhost_model_cache_misses_total", 0)}


def _poly_tight(
    plan: Plan,
    server: PolyhostServer,
    before: set[int],
    first: tuple[int, bytes],
    answers: dict[str, int],
    body: bytes,
) -> dict[str, Any]:
    """The round robin on the tight endpoint; `first` is the answer of its first call."""
    names = [_name(i) for i in range(plan.models)]
    right = wrong = 0
    statuses: dict[str, int] = {}
    first_status, first_data = first
    new = _mme_pids(server) - before
    container = psutil.Process(new.pop()) if len(new) == 1 else None
    calls = [(first_status, first_data, names[0])]
    with contextlib.ExitStack() as stack:
        sampler = stack.enter_context(Sampler(container)) if container else None
        for _ in range(plan.passes):
            for name in names:
                if not calls or calls[-1][2] != name:
                    status, data = _call_poly(server, "tight", name, body)
                    calls.append((status, data, name))
    for status, data, name in calls:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200 and _poly_class(data) == answers[name]:
            right += 1
        else:
            wrong += 1
    metrics = _prometheus(server, "tight")
    same = container is not None and container.is_running() and container.pid in _mme_pids(server)
    return {
        "calls": len(calls),
        "right": right,
        "wrong": wrong,
        "statuses": statuses,
        "loaded": metrics.get("polyhost_loaded_models", 0),
        "unloads": metrics.get("polyhost_model_unloading_time_microseconds_count", 0),
        "loads": metrics.get("polyhost_model_loading_time_microseconds_count", 0),
        "rss_peak": sampler.peak if sampler else 0,
        "same_container": same,
    }


def _first_model(ml: MultiMLServer, answers: dict[str, int], body: bytes) -> None:
    name = _name(0)
    status, data = ml.load(name)
    if status != 200 or _v2_class(ml.infer(name, body)[1]) != answers[name]:
        raise RuntimeError(f"MLServer's first model did not answer: {status} {data[:300]!r}")


def _ml_capped(
    plan: Plan, ml: MultiMLServer, answers: dict[str, int], body: bytes
) -> dict[str, Any]:
    """The round robin on the capped MLServer, whose first model is loaded (_first_model)."""
    names = [_name(i) for i in range(plan.models)]
    processes = ml.processes()
    vms = sum(p.memory_info().vms for p in processes)
    rss_start = sum(p.memory_info().rss for p in processes)
    caps = {}
    for process in processes:
        cap = process.memory_info().vms + plan.budget
        process.rlimit(psutil.RLIMIT_AS, (cap, cap))
        caps[process.pid] = cap
    loaded = {names[0]}
    load_failures: list[dict[str, Any]] = []
    infer_statuses: dict[str, int] = {}
    right = calls = 0
    rss_peak = rss_start
    died_at: int | None = None
    for _ in range(plan.passes):
        for name in names:
            if not ml.alive():
                died_at = died_at if died_at is not None else calls
                break
            if name not in loaded:
                status, data = ml.load(name)
                if status == 200:
                    loaded.add(name)
                else:
                    load_failures.append(
                        {"model": name, "status": status, "after_loaded": len(loaded),
                         "message": data[:400].decode(errors="replace")}
                    )  # fmt: skip
            status, data = ml.infer(name, body)
            calls += 1
            infer_statuses[str(status)] = infer_statuses.get(str(status), 0) + 1
            if status == 200 and _v2_class(data) == answers[name]:
                right += 1
            with contextlib.suppress(psutil.Error):
                rss_peak = max(rss_peak, sum(p.memory_info().rss for p in ml.processes()))
    log = ml.service.log_path.read_text(errors="replace")
    # The last line of the tracebacks of loads that ran out of memory (each is logged twice).
    memory_errors = [
        line.strip()
        for line in log.splitlines()
        if line.startswith("numpy.") and "MemoryError" in line
    ]
    print(
        f"  MLServer capped: {right}/{calls} right, loaded {len(loaded)}, "
        f"{len(load_failures)} failed loads, alive {ml.alive()}",
        flush=True,
    )
    return {
        "vms_at_cap": vms,
        "rss_at_cap": rss_start,
        "caps": caps,
        "calls": calls,
        "right": right,
        "loaded": len(loaded),
        "load_failures": load_failures,
        "infer_statuses": infer_statuses,
        "rss_peak": rss_peak,
        "alive": ml.alive(),
        "died_at_call": died_at,
        "memory_errors": len(memory_errors),
        "memory_error": memory_errors[0] if memory_errors else "",
        "never_loaded": [n for n in names if n not in loaded],
        # The number of models loaded when the last load that worked was done.
        "loaded_before_last_failures": max(
            (f["after_loaded"] for f in load_failures), default=len(loaded)
        ),
    }


def _report(section: Section, plan: Plan, results: dict[str, Any]) -> None:
    versions = results["versions"]
    through = results["throughput"]
    rounds = through["rounds"]
    section.add(
        *machine_lines(),
        "",
        f"MLServer {versions['mlserver']} with mlserver-sklearn {versions['mlserver-sklearn']} "
        f"and scikit-learn {versions['scikit-learn']} (own venv), `parallel_workers: 0`, "
        f"access logs off on both sides. {plan.models} models ({results['archive_bytes']:,} "
        f"bytes an archive, {plan.pad_mib} MiB in memory each): for polyhost under "
        "`s3://models/mme/` on moto's S3 server, for MLServer in its model repository. One "
        "row of `load_digits` per request; every answer checked against the class its model "
        "answers.",
        "",
        f"### Warm throughput: {plan.warm_models} loaded models in turn, c=32",
        "",
        f"wrk (1 thread, 32 connections, {plan.seconds:g} s after {plan.warmup_seconds:g} s of "
        "warm-up) replaying the same prepared requests in turn (`bench/wrk/replay.lua`): "
        "InvokeEndpoint with TargetModel on polyhost, V2 infer on MLServer's model path.",
        "",
    )
    section.table(
        ["round", "polyhost req/s", "p50 (ms)", "p99 (ms)", "MLServer req/s", "p50 (ms)",
         "p99 (ms)", "ratio", "errors (polyhost, MLServer)"],
        [
            [n + 1, r["polyhost"]["rps"], r["polyhost"]["p50_ms"], r["polyhost"]["p99_ms"],
             r["MLServer"]["rps"], r["MLServer"]["p50_ms"], r["MLServer"]["p99_ms"],
             r["polyhost"]["rps"] / r["MLServer"]["rps"],
             f"{r['polyhost']['errors']:.0f}, {r['MLServer']['errors']:.0f}"]
            for n, r in enumerate(rounds)
        ],
    )  # fmt: skip
    ratio = statistics.median(r["polyhost"]["rps"] / r["MLServer"]["rps"] for r in rounds)
    errors = sum(r[s]["errors"] for r in rounds for s in ("polyhost", "MLServer"))
    section.add(
        f"polyhost's cache misses over the whole warm endpoint's life: {through['misses']:.0f} "
        f"(the {plan.warm_models} first calls).",
        "",
    )
    poly, ml = results["poly_tight"], results["ml_capped"]
    budget_mib = plan.budget / MIB
    section.add(
        f"### More models than memory holds: {plan.models} models, room for about {plan.room}",
        "",
        f"A round robin over the {plan.models} models, {plan.passes} passes, one request at a "
        f"time. Budget {budget_mib:.0f} MiB on both: polyhost's as "
        "`POLYHOST_MULTI_MODEL_MEMORY_BYTES` of a second MultiModel endpoint on the same prefix; "
        f"MLServer's as RLIMIT_AS of a fresh process set to its size with one model loaded "
        f"({ml['vms_at_cap'] / MIB:.0f} MiB of address space, {ml['rss_at_cap'] / MIB:.0f} MiB "
        "resident) plus the budget. MLServer's client loads each model on its first call and "
        "never unloads (MLServer has no memory budget and does not unload on its own).",
        "",
    )
    failures = ml["load_failures"]
    first = failures[0] if failures else None
    section.table(
        ["", "calls", "answered right", "models loaded at the end", "loads", "unloads",
         "peak RSS (MiB)", "process"],
        [
            ["polyhost", poly["calls"], poly["right"], f"{poly['loaded']:.0f}",
             f"{poly['loads']:.0f}", f"{poly['unloads']:.0f} (by itself)",
             poly["rss_peak"] / MIB,
             "same container" if poly["same_container"] else "container restarted"],
            ["MLServer", ml["calls"], ml["right"], ml["loaded"],
             f"{ml['loaded']} ok, {len(failures)} failed", "0 (never by itself)",
             ml["rss_peak"] / MIB, "alive" if ml["alive"] else
             f"exited (at call {ml['died_at_call']})"],
        ],
    )  # fmt: skip
    if first is not None:
        message = " ".join(first["message"].split())[:200]
        never = ml["never_loaded"]
        held = ml["loaded"]
        section.add(
            f"MLServer's loads began to fail at `{first['model']}`, with {first['after_loaded']} "
            f"models loaded: HTTP {first['status']} (`{message}`; in its log: "
            f"`{ml['memory_error'][:160]}`). "
            f"It held {held} models in the end, and {len(never)} never loaded however often "
            f"they were asked for ({len(failures)} failed loads in all), their calls answered "
            "404: it never unloads a model to make room, so the models past its memory stay "
            "unserved for as long as the others are loaded. It held more than the budget's "
            f"{plan.room} models ({held} x {plan.pad_mib} MiB): the limit counts address space, "
            "and some of what the process had when the limit was set was reserved, not "
            f"resident. Its infer answers by status: {ml['infer_statuses']}.",
            "",
        )
    else:
        section.add(
            f"MLServer loaded every model within the limit (infer answers by status: "
            f"{ml['infer_statuses']}).",
            "",
        )
    section.target(
        f"warm throughput, polyhost vs MLServer, {plan.warm_models} models at c=32 "
        "(median of rounds)",
        f"{ratio:.2f}x",
        "≥ 1.5x",
        ratio >= 1.5 and errors == 0,
    )
    section.target(
        "polyhost keeps serving once the models no longer fit: every call answered right",
        f"{poly['right']}/{poly['calls']}, {poly['unloads']:.0f} unloads, "
        f"{'same' if poly['same_container'] else 'another'} container",
        "all, same container",
        poly["right"] == poly["calls"] and bool(poly["same_container"]),
    )
    section.target(
        "MLServer in the same bounded setup (reported, not a goal for polyhost)",
        f"{ml['right']}/{ml['calls']} answered right, {len(failures)} loads failed, "
        f"{'alive' if ml['alive'] else 'exited'}",
        "shown",
        True,
    )
