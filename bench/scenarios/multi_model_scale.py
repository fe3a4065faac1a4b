"""Scenario 23: a multi-model endpoint's cold path by archive size, and 10,000 models at rest.

Two measures of issue 21 that scenario 17 does not take, on the same parts (moto's S3 server
for the prefix, a real `polyhost serve`, one `polyhost/sklearn` MultiModel container):

- **Cold path growth.** The first call of a model whose archive is about 1, 10 or 100 MiB: a
  digits LogisticRegression whose joblib also holds a random (incompressible) uint8 array of
  that size, so the archive is as big on the wire as on disk and in memory once loaded. The
  sizes are called in turn (1, 10, 100, 1, 10, 100, ...), each call a model of its own, one
  request at a time; each call's ModelDownloadingTime (fetch and extract), ModelLoadingTime
  (the container's `POST /models`) and unloads are read from `/metrics` around it. Beside
  them, what the parts cost outside polyhost: a plain boto3 GET of the same object from the
  same S3 server, and gunzip + untar of it in memory. This runs on the last at-rest round's
  server once that round is measured, as an endpoint of its own.
- **10,000 models under the prefix.** A MultiModel endpoint on a prefix of 10 models and one on
  a prefix of 10,000, each on a fresh server, in alternating rounds: CreateEndpoint→InService,
  then at rest the server's resident memory and open descriptors, the container's, the state
  folder's size, and the S3 requests polyhost made (from the S3 server's request log); then
  the same after calling a few models.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import gzip
import io
import json
import os
import statistics
import tarfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil
from botocore.config import Config

from bench.context import Context
from bench.machine import machine_lines
from bench.polyhost_server import PolyhostServer
from bench.report import Section
from bench.scenarios.multi_model import (
    S3_KEYS,
    Caller,
    _container,
    _environment,
    _local_s3,
    _prometheus,
)

KEY = "multi-model-scale"
TITLE = "23. Multi-model endpoint: cold path by archive size, 10,000 models at rest"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    sizes_mib: tuple[float, ...]  # archive sizes of the cold-path growth
    calls_per_size: int
    budget_mib: int  # the models' memory budget during the cold-path growth
    few: int  # models under the small prefix
    many: int  # models under the large one
    rounds: int  # of each prefix, alternating
    called: int  # models called after the at-rest measure
    settle_s: float  # after InService, before the at-rest measure


FULL = Plan(sizes_mib=(1, 10, 100), calls_per_size=9, budget_mib=320, few=10, many=10_000,
            rounds=3, called=3, settle_s=2.0)  # fmt: skip
QUICK = Plan(sizes_mib=(0.25, 1), calls_per_size=1, budget_mib=64, few=5, many=50,
             rounds=1, called=1, settle_s=0.5)  # fmt: skip


def _digits() -> tuple[Any, list[list[float]]]:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    # Each model's answer is set by its intercepts (`_archive`), so a short fit on part of
    # the data does: its weights only need the shapes of a real model's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(max_iter=50).fit(x[:500], y[:500])
    return model, [[float(v) for v in x[0]]]


def _archive(model: Any, answer: int, pad_bytes: int) -> bytes:
    """model.tar.gz of `model` answering `answer`, with `pad_bytes` of random weights."""
    import joblib
    import numpy as np

    own = copy.deepcopy(model)
    own.intercept_ = model.intercept_.copy()
    own.intercept_[answer] += 1000.0  # answers `answer` for every row
    if pad_bytes:
        own.padding_ = np.frombuffer(os.urandom(pad_bytes), dtype=np.uint8)
    data = io.BytesIO()
    joblib.dump(own, data)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        info = tarfile.TarInfo("model.joblib")
        info.size = len(data.getvalue())
        archive.addfile(info, io.BytesIO(data.getvalue()))
    return buffer.getvalue()


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        config=Config(max_pool_connections=16, retries={"max_attempts": 5}),
    )


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    plan = QUICK if ctx.quick else FULL
    work = ctx.work(KEY)
    results: dict[str, Any] = {"plan": vars(plan)}
    model, row = _digits()
    body = json.dumps(row).encode()
    with _local_s3(work) as s3_endpoint:
        s3 = _s3(s3_endpoint)
        s3.create_bucket(Bucket="models")
        s3_env = {"AWS_ENDPOINT_URL_S3": s3_endpoint, **S3_KEYS}
        uploaded = _upload_growth(s3, plan, model)
        with _environment(s3_env):
            results["rest"], results["growth"] = _at_rest(work, s3, plan, model, body, uploaded)
    ctx.save_raw(KEY, results)
    section.add(*machine_lines(), "")
    _report_growth(section, plan, results["growth"])
    _report_rest(section, plan, results["rest"])
    return section


# -- cold path growth ------------------------------------------------------------------------


def _mme_pids(server: PolyhostServer) -> set[int]:
    """The server's multi-model container processes."""
    assert server.service is not None
    pids = set()
    for child in psutil.Process(server.service.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.environ().get("SAGEMAKER_MULTI_MODEL") == "true":
                pids.add(child.pid)
    return pids


def _new_container(server: PolyhostServer, before: set[int]) -> psutil.Process:
    new = _mme_pids(server) - before
    if len(new) != 1:
        raise RuntimeError(f"expected one new multi-model container, found {sorted(new)}")
    return psutil.Process(new.pop())


def _upload_growth(s3: Any, plan: Plan, model: Any) -> dict[str, Any]:
    names: list[tuple[float, str, int]] = []  # (size MiB, TargetModel, answer)
    sizes: dict[str, int] = {}
    started = time.perf_counter()
    s3.put_object(Bucket="models", Key="growth/first.tar.gz", Body=_archive(model, 3, 0))
    for call in range(plan.calls_per_size):
        for size in plan.sizes_mib:
            name = f"s{size:g}/m{call:02d}.tar.gz"
            answer = (call * 3 + len(names)) % 10
            data = _archive(model, answer, int(size * MIB))
            s3.put_object(Bucket="models", Key=f"growth/{name}", Body=data)
            names.append((size, name, answer))
            sizes[f"{size:g}"] = len(data)
    return {"names": names, "archive_bytes": sizes, "upload_s": time.perf_counter() - started}


def _growth(server: PolyhostServer, s3: Any, plan: Plan, uploaded: dict[str, Any],
            body: bytes) -> dict[str, Any]:  # fmt: skip
    names: list[tuple[float, str, int]] = uploaded["names"]
    calls: list[dict[str, Any]] = []
    before_pids = _mme_pids(server)
    server.deploy(
        "growth",
        [
            {
                "Image": "polyhost/sklearn",
                "Mode": "MultiModel",
                "ModelDataUrl": "s3://models/growth/",
                "Environment": {"POLYHOST_MULTI_MODEL_MEMORY_BYTES": str(plan.budget_mib * MIB)},
            }
        ],
    )
    caller = Caller(server)
    try:
        first_s = caller.call("growth", body, 3, "first.tar.gz")  # imports scikit-learn
        container = _new_container(server, before_pids)
        peak = 0
        for size, name, answer in names:
            before = _prometheus(server, "growth")
            seconds = caller.call("growth", body, answer, name)
            after = _prometheus(server, "growth")
            peak = max(peak, container.memory_info().rss)

            def delta(metric: str, before: dict[str, float] = before,
                      after: dict[str, float] = after) -> float:  # fmt: skip
                return after.get(metric, 0.0) - before.get(metric, 0.0)

            calls.append(
                {
                    "size_mib": size,
                    "seconds": seconds,
                    "download_us": delta("polyhost_model_downloading_time_microseconds_sum"),
                    "load_us": delta("polyhost_model_loading_time_microseconds_sum"),
                    "loads": delta("polyhost_model_loading_time_microseconds_count"),
                    "unloads": delta("polyhost_model_unloading_time_microseconds_count"),
                    "unload_us": delta("polyhost_model_unloading_time_microseconds_sum"),
                }
            )
        same = container.is_running() and container.pid in _mme_pids(server)
    finally:
        caller.close()
    # The parts outside polyhost: a plain GET of the object, and gunzip + untar of it.
    parts: dict[str, dict[str, float]] = {}
    for size in plan.sizes_mib:
        gets, untars = [], []
        for _, name, _ in [n for n in names if n[0] == size][:3]:
            started = time.perf_counter()
            data = s3.get_object(Bucket="models", Key=f"growth/{name}")["Body"].read()
            gets.append(time.perf_counter() - started)
            started = time.perf_counter()
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as archive:
                for member in archive:
                    handle = archive.extractfile(member)
                    if handle is not None:
                        handle.read()
            untars.append(time.perf_counter() - started)
        parts[f"{size:g}"] = {
            "get_ms": statistics.median(gets) * 1e3,
            "untar_ms": statistics.median(untars) * 1e3,
        }
    print(f"  growth: {len(calls)} cold calls, parts {parts}", flush=True)
    return {
        "upload_s": uploaded["upload_s"],
        "archive_bytes": uploaded["archive_bytes"],
        "first_s": first_s,
        "calls": calls,
        "parts": parts,
        "rss_peak": peak,
        "same_container": same,
    }


def _report_growth(section: Section, plan: Plan, growth: dict[str, Any]) -> None:
    sizes = ", ".join(f"{int(b):,}" for b in growth["archive_bytes"].values())
    section.add(
        "### Cold path by archive size",
        "",
        f"Models under `s3://models/growth/` on moto's S3 server: a digits LogisticRegression "
        "whose joblib also holds a random uint8 array (incompressible), archives of "
        f"{sizes} bytes. One `polyhost/sklearn` MultiModel container, models' budget "
        f"{plan.budget_mib} MiB (`POLYHOST_MULTI_MODEL_MEMORY_BYTES`). The sizes called in "
        f"turn, {plan.calls_per_size} cold calls each (every call a model of its own), one "
        "request at a time on one keep-alive connection; each call's ModelDownloadingTime "
        "(fetch + extract), ModelLoadingTime (the container's `POST /models`: joblib.load) "
        "and the unloads that made room, from `/metrics` around it; `rest` = the call minus "
        "those (routing, the 507 that asked for room, invoking). Beside them, outside polyhost, "
        "a plain boto3 GET of the object from the same S3 server and gunzip + untar of it in "
        f"memory (medians of 3). The first call of the container (a small model, importing "
        f"scikit-learn) took {growth['first_s'] * 1e3:.0f} ms and is not counted.",
        "",
    )
    rows = []
    p50s: list[float] = []
    for size in plan.sizes_mib:
        calls = [c for c in growth["calls"] if c["size_mib"] == size]
        total = [c["seconds"] for c in calls]
        download = statistics.median(c["download_us"] for c in calls) / 1e3
        load = statistics.median(c["load_us"] for c in calls) / 1e3
        unload = statistics.median(c["unload_us"] for c in calls) / 1e3
        rest = statistics.median(
            c["seconds"] * 1e3 - (c["download_us"] + c["load_us"] + c["unload_us"]) / 1e3
            for c in calls
        )
        parts = growth["parts"][f"{size:g}"]
        p50s.append(statistics.median(total) * 1e3)
        rows.append(
            [f"{size:g} MiB", p50s[-1], max(total) * 1e3, download, load, unload, rest,
             parts["get_ms"], parts["untar_ms"], sum(c["unloads"] for c in calls), len(calls)]
        )  # fmt: skip
    section.table(
        ["archive", "cold median (ms)", "max (ms)", "download+extract", "load",
         "unload", "rest", "plain S3 GET", "gunzip+untar", "unloads", "calls"],
        rows,
    )  # fmt: skip
    first, last = plan.sizes_mib[0], plan.sizes_mib[-1]
    per_mib = (p50s[-1] - p50s[0]) / (last - first)
    big = rows[-1]
    total_parts = big[3] + big[4] + big[5] + big[6]
    section.add(
        f"From {first:g} to {last:g} MiB the cold call's median grows by about "
        f"{per_mib:.1f} ms per MiB of archive. Where the time goes at {last:g} MiB (medians): "
        f"{big[3]:.0f} ms fetching and extracting ({big[3] / total_parts:.0%}; the same "
        f"bytes cost {big[7]:.0f} ms as a plain GET and {big[8]:.0f} ms to gunzip and untar "
        "in memory: polyhost also writes the archive to its cache on disk, hashes it and "
        f"extracts it to disk), {big[4]:.0f} ms loading ({big[4] / total_parts:.0%}; "
        f"joblib.load of the model's file in the container), {big[5]:.0f} ms unloading "
        f"the models that made room ({big[5] / total_parts:.0%}; each the container's "
        "`DELETE /models/{name}`, which runs a full `gc.collect()` and `malloc_trim(0)` "
        f"and returns the model's pages), {big[6]:.0f} ms the rest. "
        "The container's resident memory peaked at "
        f"{growth['rss_peak'] / MIB:.0f} MiB (budget {plan.budget_mib} MiB for the models); "
        f"same container throughout: {'yes' if growth['same_container'] else 'NO'}.",
        "",
    )
    section.target(
        "cold path growth measured (no bound set; every answer right, no restart)",
        "p50 " + " / ".join(f"{p:.0f} ms" for p in p50s)
        + " for " + " / ".join(f"{s:g}" for s in plan.sizes_mib) + " MiB",
        "shown",
        bool(growth["same_container"]),
    )  # fmt: skip


# -- 10,000 models at rest -------------------------------------------------------------------


def _upload_prefix(s3: Any, prefix: str, count: int, archive: bytes) -> float:
    started = time.perf_counter()

    def put(index: int) -> None:
        s3.put_object(Bucket="models", Key=f"{prefix}/team/m{index:05d}.tar.gz", Body=archive)

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, range(count)))
    return time.perf_counter() - started


def _dir_size(path: Path) -> tuple[int, int]:
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += (Path(root) / name).stat().st_size
                files += 1
            except OSError:
                pass
    return total, files


def _s3_requests(log: Path, offset: int, prefix: str) -> dict[str, int]:
    """The S3 requests under `prefix` (and listings) logged since `offset` of moto's log."""
    with open(log, "rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode(errors="replace").splitlines()
    mine = [x for x in lines if f"/models/{prefix}/" in x or f"prefix={prefix}" in x]
    listings = [x for x in lines if "list-type" in x or "GET /models?" in x or "GET /models/?" in x]
    return {"requests": len(mine), "listings": len(listings)}


def _snapshot(server: PolyhostServer, work: Path) -> dict[str, float]:
    assert server.service is not None
    own = psutil.Process(server.service.pid)
    container = _container(server)
    state_bytes, state_files = _dir_size(work / "state")
    return {
        "server_rss": own.memory_info().rss,
        "server_fds": own.num_fds(),
        "server_threads": own.num_threads(),
        "container_rss": container.memory_info().rss,
        "container_fds": container.num_fds(),
        "state_bytes": state_bytes,
        "state_files": state_files,
    }


def _at_rest(
    work: Path, s3: Any, plan: Plan, model: Any, body: bytes, uploaded: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The at-rest rounds; the growth measure runs on the last round's server, after them."""
    archive = _archive(model, 7, 0)
    uploads = {
        "few": _upload_prefix(s3, "few", plan.few, archive),
        "many": _upload_prefix(s3, "many", plan.many, archive),
    }
    counts = {"few": plan.few, "many": plan.many}
    log = work / "moto.log"
    rounds: list[dict[str, Any]] = []
    for number in range(plan.rounds):
        order = ["few", "many"] if number % 2 == 0 else ["many", "few"]
        for side in order:
            folder = work / f"polyhost-{side}"
            with PolyhostServer(folder) as server:
                offset = log.stat().st_size
                in_service = server.deploy(
                    "mme",
                    [
                        {
                            "Image": "polyhost/sklearn",
                            "Mode": "MultiModel",
                            "ModelDataUrl": f"s3://models/{side}/",
                        }
                    ],
                )
                time.sleep(plan.settle_s)  # the container's first health checks, loops idle
                rest = _snapshot(server, folder)
                rest_s3 = _s3_requests(log, offset, side)
                caller = Caller(server)
                try:
                    step = max(1, counts[side] // plan.called)
                    for index in range(0, counts[side], step)[: plan.called]:
                        caller.call("mme", body, 7, f"team/m{index:05d}.tar.gz")
                finally:
                    caller.close()
                time.sleep(plan.settle_s / 2)
                called = _snapshot(server, folder)
                called_s3 = _s3_requests(log, offset, side)
                if number == plan.rounds - 1 and side == order[-1]:
                    growth = _growth(server, s3, plan, uploaded, body)
            rounds.append(
                {
                    "side": side,
                    "round": number + 1,
                    "in_service_s": in_service,
                    "rest": rest,
                    "rest_s3": rest_s3,
                    "called": called,
                    "called_s3": called_s3,
                }
            )
            print(
                f"  at rest {side} round {number + 1}: InService {in_service:.2f} s, "
                f"server {rest['server_rss'] / MIB:.1f} MiB {rest['server_fds']} fds, "
                f"state {rest['state_bytes']} B, S3 {rest_s3}",
                flush=True,
            )
    return {"uploads_s": uploads, "archive_bytes": len(archive), "rounds": rounds}, growth


def _after(calls: int) -> str:
    return f"after {calls} call{'' if calls == 1 else 's'}"


def _report_rest(section: Section, plan: Plan, rest: dict[str, Any]) -> None:
    rounds = rest["rounds"]
    section.add(
        f"### {plan.many:,} models under the prefix, at rest",
        "",
        f"Two prefixes on the same S3 server: `s3://models/few/` with {plan.few} models and "
        f"`s3://models/many/` with {plan.many:,} ({rest['archive_bytes']:,} bytes each; "
        f"uploaded on 16 threads in {rest['uploads_s']['few']:.1f} s and "
        f"{rest['uploads_s']['many']:.1f} s). Each round starts a fresh server, creates one "
        f"MultiModel endpoint on one of them (no budget set), waits for InService and "
        f"{plan.settle_s:g} s more, "
        f"and measures; then calls {plan.called} of its models (spread over the prefix) and "
        f"measures again. {plan.rounds} rounds of each, alternating which goes first. "
        "`S3 req.` = requests under the endpoint's prefix in the S3 server's request log since "
        "CreateEndpoint (listings: any ListObjects of the bucket).",
        "",
    )
    table_rows = []
    for r in rounds:
        for when in ("rest", "called"):
            snap, s3 = r[when], r[f"{when}_s3"]
            table_rows.append(
                [f"{plan.few if r['side'] == 'few' else plan.many:,}", r["round"],
                 "at rest" if when == "rest" else _after(plan.called),
                 r["in_service_s"] if when == "rest" else "", snap["server_rss"] / MIB,
                 snap["server_fds"], snap["container_rss"] / MIB, snap["container_fds"],
                 f"{snap['state_bytes']:,} ({snap['state_files']})",
                 f"{s3['requests']} ({s3['listings']})"]
            )  # fmt: skip
    section.table(
        ["models", "round", "when", "InService (s)", "server RSS (MiB)", "server fds",
         "container RSS (MiB)", "container fds", "state bytes (files)", "S3 req. (listings)"],
        table_rows,
    )  # fmt: skip

    def med(side: str, when: str, key: str) -> float:
        return statistics.median(float(r[when][key]) for r in rounds if r["side"] == side)

    def spread(side: str, when: str, key: str) -> float:
        values = [float(r[when][key]) for r in rounds if r["side"] == side]
        return max(values) - min(values)

    in_few = statistics.median(r["in_service_s"] for r in rounds if r["side"] == "few")
    in_many = statistics.median(r["in_service_s"] for r in rounds if r["side"] == "many")
    in_spread = max(
        max(vs) - min(vs)
        for vs in ([r["in_service_s"] for r in rounds if r["side"] == s] for s in ("few", "many"))
    )
    rss_diff = med("many", "rest", "server_rss") - med("few", "rest", "server_rss")
    rss_noise = max(2 * MIB, spread("few", "rest", "server_rss"),
                    spread("many", "rest", "server_rss"))  # fmt: skip
    fds_diff = med("many", "rest", "server_fds") - med("few", "rest", "server_fds")
    cfds_diff = med("many", "rest", "container_fds") - med("few", "rest", "container_fds")
    state_diff = med("many", "rest", "state_bytes") - med("few", "rest", "state_bytes")
    state_noise = max(8192.0, spread("few", "rest", "state_bytes"),
                      spread("many", "rest", "state_bytes"))  # fmt: skip
    listings = sum(r["rest_s3"]["listings"] + r["called_s3"]["listings"] for r in rounds)
    at_rest_requests = sum(r["rest_s3"]["requests"] for r in rounds)
    after_diff = med("many", "called", "server_rss") - med("few", "called", "server_rss")
    section.add(
        f"Medians, {plan.many:,} against {plan.few}: InService {in_many:.2f} s against "
        f"{in_few:.2f} s; at rest the server's RSS {rss_diff / MIB:+.1f} MiB, its descriptors "
        f"{fds_diff:+.0f}, the container's descriptors {cfds_diff:+.0f}, the state folder "
        f"{state_diff:+,.0f} bytes; after the calls the server's RSS {after_diff / MIB:+.1f} MiB. "
        f"S3 requests under the prefix before the first call: {at_rest_requests} over all "
        f"rounds; listings of the bucket: {listings}.",
        "",
    )
    section.target(
        f"CreateEndpoint→InService with {plan.many:,} models vs {plan.few} (median of rounds)",
        f"{in_many:.2f} s vs {in_few:.2f} s",
        f"equal within noise (±{max(0.25, in_spread):.2f} s, the larger of 0.25 s and the "
        "rounds' spread)",
        abs(in_many - in_few) <= max(0.25, in_spread),
    )
    section.target(
        f"server RSS at rest, {plan.many:,} vs {plan.few}",
        f"{rss_diff / MIB:+.1f} MiB",
        f"within noise (±{rss_noise / MIB:.1f} MiB)",
        abs(rss_diff) <= rss_noise,
    )
    section.target(
        f"open descriptors at rest (server, container), {plan.many:,} vs {plan.few}",
        f"{fds_diff:+.0f}, {cfds_diff:+.0f}",
        "±2",
        abs(fds_diff) <= 2 and abs(cfds_diff) <= 2,
    )
    section.target(
        f"state folder at rest, {plan.many:,} vs {plan.few}",
        f"{state_diff:+,.0f} bytes",
        f"within noise (±{state_noise:,.0f} bytes)",
        abs(state_diff) <= state_noise,
    )
    section.target(
        "no listing and no request for a model before its first call",
        f"{listings} listings, {at_rest_requests} requests at rest",
        "0 and 0",
        listings == 0 and at_rest_requests == 0,
    )
