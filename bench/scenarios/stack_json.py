"""Scenario 14: the TensorFlow and PyTorch stacks on a 100-image MNIST JSON request, against
decode + model call + encode done inline in one process.

The walkthrough's two networks (`bench/stack_inline.py`: the Keras CNN as a SavedModel, the
PyTorch CNN as TorchScript; seeded, untrained) and its request shape: 100 standardised images,
`{"instances": 100 x 28 x 28 x 1}` to `polyhost/tensorflow` (TensorFlow Serving's row format)
and `{"inputs": 100 x 1 x 28 x 28}` to `polyhost/pytorch` (its default handlers). Each stack
runs as its own program, called directly over one keep-alive connection, one request at a
time. "Inline" is the same model in a child process doing orjson.loads, np.asarray, the model
call and orjson.dumps with the stack's thread counts: what no server can beat. Each round
measures every stack and every inline run once; the verdicts are on the median of the rounds.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.context import Context
from bench.loadgen import percentile
from bench.procs import Service, free_port
from bench.report import Section

KEY = "stack-json"
TITLE = "14. TensorFlow and PyTorch stacks: a 100-image JSON request against inline"
HELPER = [sys.executable, "-m", "bench.stack_inline"]
TARGET_MS = {"tensorflow": 25.0, "pytorch": 20.0}
RATIO = 3.0


@dataclass
class Stack:
    name: str  # "tensorflow" | "pytorch"
    module: str
    model_dir: Path
    body: Path
    inline: list[str]  # helper arguments before BODY N


def _helper(*args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        [*HELPER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.stack_inline {args[0]} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def _prepare(work: Path) -> list[Stack]:
    tf_dir, torch_dir = work / "tensorflow-model", work / "pytorch-model"
    if not (tf_dir / "model" / "1" / "saved_model.pb").exists():
        _helper("build-tf", str(tf_dir))
    if not (torch_dir / "model.pt").exists():
        _helper("build-pytorch", str(torch_dir / "model.pt"))
    _helper("bodies", str(work))
    return [
        Stack(
            "tensorflow",
            "polyhost.stacks.tensorflow",
            tf_dir,
            work / "tensorflow.json",
            ["inline-tf", str(tf_dir)],
        ),
        Stack(
            "pytorch",
            "polyhost.stacks.pytorch",
            torch_dir,
            work / "pytorch.json",
            ["inline-pytorch", str(torch_dir / "model.pt")],
        ),
    ]


def _start(stack: Stack, work: Path) -> tuple[Service, int]:
    port = free_port()
    service = Service(
        stack.module,
        [sys.executable, "-m", stack.module],
        work / f"{stack.name}-stack.log",
        env={
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SM_MODEL_DIR": str(stack.model_dir),
            "POLYHOST_BIND_HOST": "127.0.0.1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        },
    ).start()
    service.wait_http(f"http://127.0.0.1:{port}/ping", timeout=180)
    return service, port


def _post_times(port: int, body: bytes, count: int) -> tuple[list[float], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    times: list[float] = []
    answer = b""
    try:
        for index in range(count + 1):
            started = time.perf_counter()
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            elapsed = (time.perf_counter() - started) * 1000.0
            if response.status != 200:
                raise RuntimeError(f"answered {response.status}: {answer[:300]!r}")
            if index:  # the first request warms up
                times.append(elapsed)
    finally:
        connection.close()
    return times, answer


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    stacks = _prepare(work)
    rounds, count = (1, 5) if ctx.quick else (3, 30)
    results: dict[str, dict[str, list[float]]] = {
        s.name: {"stack": [], "inline": []} for s in stacks
    }
    answers: dict[str, str] = {}
    running = {s.name: _start(s, work) for s in stacks}
    try:
        for _ in range(rounds):
            for stack in stacks:
                service, port = running[stack.name]
                times, answer = _post_times(port, stack.body.read_bytes(), count)
                results[stack.name]["stack"].append(statistics.median(times))
                answers[stack.name] = _summary(answer)
                inline = json.loads(_helper(*stack.inline, str(stack.body), str(count)))
                results[stack.name]["inline"].append(statistics.median(inline))
                print(
                    f"  {stack.name}: stack p50 {results[stack.name]['stack'][-1]:.1f} ms, "
                    f"inline {results[stack.name]['inline'][-1]:.1f} ms (p90 stack "
                    f"{percentile(sorted(times), 90):.1f})",
                    flush=True,
                )
    finally:
        for service, _ in running.values():
            service.stop()
    _report(section, stacks, results, answers, rounds, count)
    ctx.save_raw(KEY, results)
    return section


def _summary(answer: bytes) -> str:
    document = json.loads(answer)
    rows = document.get("predictions", document) if isinstance(document, dict) else document
    return f"{len(rows)} x {len(rows[0])}"


def _report(
    section: Section,
    stacks: list[Stack],
    results: dict[str, dict[str, list[float]]],
    answers: dict[str, str],
    rounds: int,
    count: int,
) -> None:
    sizes = ", ".join(f"{s.name} {s.body.stat().st_size / 1e6:.2f} MB" for s in stacks)
    section.add(
        f"Request bodies: {sizes}. {rounds} rounds; in each, {count} requests to each stack "
        f"(after one to warm up) and {count} inline runs of the same body. Median latency in "
        "ms per round; ratio = stack / inline of the same round.",
        "",
    )
    rows = []
    for stack in stacks:
        measured = results[stack.name]
        for number, (served, inline) in enumerate(
            zip(measured["stack"], measured["inline"], strict=True), start=1
        ):
            rows.append(
                [stack.name, number, served, inline, f"{served / inline:.2f}", answers[stack.name]]
            )
    section.table(["stack", "round", "stack p50", "inline p50", "ratio", "answer"], rows)
    for stack in stacks:
        measured = results[stack.name]
        served = statistics.median(measured["stack"])
        ratios = [s / i for s, i in zip(measured["stack"], measured["inline"], strict=True)]
        section.target(
            f"{stack.name} stack, 100-image JSON request, p50 (median of the rounds; spread "
            f"{min(measured['stack']):.1f}-{max(measured['stack']):.1f} ms)",
            f"{served:.1f} ms",
            f"≤ {TARGET_MS[stack.name]:g} ms",
            served <= TARGET_MS[stack.name],
        )
        section.target(
            f"{stack.name} stack vs inline decode + call + encode (median of the rounds' "
            f"ratios; spread {min(ratios):.2f}-{max(ratios):.2f})",
            f"{statistics.median(ratios):.2f}x",
            f"≤ {RATIO:g}x",
            statistics.median(ratios) <= RATIO,
        )
