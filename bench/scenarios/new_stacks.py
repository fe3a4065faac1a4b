"""Scenario 16: the XGBoost and Hugging Face stacks, 1 row against the bare library call and
100 rows against decode + call + encode inline.

The models (`bench/new_stacks_inline.py`): a Booster on scikit-learn's digits (64 features,
10-class softprob) and a tiny random BERT for text-classification. Each stack runs as its own
program, called directly over one keep-alive connection from a Python loop, one request at a
time: a 1-row request (one CSV line to `polyhost/xgboost`, `{"inputs": "text"}` to
`polyhost/huggingface`) and a 100-row one (100 CSV lines; `{"inputs": [100 short texts]}`).
The references run in a child process on the stacks' thread counts: the bare call on an
already decoded row (`booster.predict(DMatrix(row))`, and `inplace_predict`, which the stack
calls, shown beside it; `pipeline(text)`), and for 100 rows the least a program can do with the
body (np.loadtxt + inplace_predict + CSV join; json.loads + pipeline + json.dumps). The rounds
alternate stack and reference; verdicts are on the median of the rounds' medians.
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
from typing import Any

from bench.context import Context
from bench.procs import Service, free_port
from bench.report import Section

KEY = "new-stacks"
TITLE = "16. XGBoost and Hugging Face stacks: 1 row against the bare call, 100 rows against inline"
HELPER = [sys.executable, "-m", "bench.new_stacks_inline"]
ADDED_MS = 0.3
RATIO = 1.5


@dataclass
class Stack:
    name: str  # "xgboost" | "huggingface"
    module: str
    model_dir: Path
    content_type: str
    accept: str
    one: Path
    hundred: Path
    env: dict[str, str]


def _helper(*args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        [*HELPER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.new_stacks_inline {args[0]} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def _prepare(work: Path) -> list[Stack]:
    xgb_dir, hf_dir = work / "xgboost-model", work / "huggingface-model"
    if not (xgb_dir / "model.json").exists():
        _helper("build-xgboost", str(xgb_dir))
    if not (hf_dir / "config.json").exists():
        _helper("build-huggingface", str(hf_dir))
    _helper("bodies", str(work))
    return [
        Stack(
            "xgboost",
            "polyhost.stacks.xgboost",
            xgb_dir,
            "text/csv",
            "text/csv",
            work / "xgboost-1.csv",
            work / "xgboost-100.csv",
            {},
        ),
        Stack(
            "huggingface",
            "polyhost.stacks.huggingface",
            hf_dir,
            "application/json",
            "application/json",
            work / "huggingface-1.json",
            work / "huggingface-100.json",
            {"HF_TASK": "text-classification"},
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
            **stack.env,
        },
    ).start()
    service.wait_http(f"http://127.0.0.1:{port}/ping", timeout=180)
    return service, port


def _post_times(port: int, stack: Stack, body: bytes, count: int) -> tuple[list[float], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": stack.content_type, "Accept": stack.accept}
    times: list[float] = []
    answer = b""
    try:
        for index in range(count + 3):
            started = time.perf_counter()
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            elapsed = (time.perf_counter() - started) * 1000.0
            if response.status != 200:
                raise RuntimeError(f"{stack.name} answered {response.status}: {answer[:300]!r}")
            if index >= 3:  # the first requests warm up
                times.append(elapsed)
    finally:
        connection.close()
    return times, answer


def _rows(stack: Stack, answer: bytes) -> int:
    if stack.name == "xgboost":
        return len(answer.decode().strip().splitlines())
    document = json.loads(answer)
    return len(document) if isinstance(document, list) else 1


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    stacks = _prepare(work)
    rounds, ones, hundreds = (1, 20, 3) if ctx.quick else (5, 400, 40)
    measures = ("stack-1", "bare-1", "bare-inplace-1", "stack-100", "inline-100")
    results: dict[str, dict[str, list[float]]] = {s.name: {m: [] for m in measures} for s in stacks}
    answers: dict[str, dict[str, int]] = {s.name: {} for s in stacks}
    running = {s.name: _start(s, work) for s in stacks}
    try:
        for number in range(1, rounds + 1):
            for stack in stacks:
                _, port = running[stack.name]
                measured = results[stack.name]
                times, answer = _post_times(port, stack, stack.one.read_bytes(), ones)
                measured["stack-1"].append(statistics.median(times))
                answers[stack.name]["1"] = _rows(stack, answer)
                times, answer = _post_times(port, stack, stack.hundred.read_bytes(), hundreds)
                measured["stack-100"].append(statistics.median(times))
                answers[stack.name]["100"] = _rows(stack, answer)
                inline = json.loads(
                    _helper(stack.name, str(stack.model_dir), str(work), str(ones), str(hundreds))
                )
                measured["bare-1"].append(statistics.median(inline["bare"]))
                if "bare_inplace" in inline:
                    measured["bare-inplace-1"].append(statistics.median(inline["bare_inplace"]))
                measured["inline-100"].append(statistics.median(inline["inline"]))
                print(
                    f"  round {number} {stack.name}: 1 row stack {measured['stack-1'][-1]:.3f} "
                    f"ms, bare {measured['bare-1'][-1]:.3f} ms; 100 rows stack "
                    f"{measured['stack-100'][-1]:.2f} ms, inline {measured['inline-100'][-1]:.2f}"
                    " ms",
                    flush=True,
                )
    finally:
        for service, _ in running.values():
            service.stop()
    _report(section, stacks, results, answers, (rounds, ones, hundreds))
    ctx.save_raw(KEY, results)
    return section


def _spread(values: list[float], digits: int) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def _report(
    section: Section,
    stacks: list[Stack],
    results: dict[str, dict[str, list[float]]],
    answers: dict[str, dict[str, int]],
    sizes: tuple[int, int, int],
) -> None:
    rounds, ones, hundreds = sizes
    bodies = ", ".join(
        f"{s.name} {s.one.stat().st_size} B / {s.hundred.stat().st_size / 1e3:.1f} kB"
        for s in stacks
    )
    section.add(
        f"Request bodies (1 row / 100 rows): {bodies}. {rounds} rounds; in each, for each "
        f"stack: {ones} 1-row requests, {hundreds} 100-row requests (after 3 of each to warm "
        f"up), then in a child process {ones} bare calls and {hundreds} inline runs. One "
        "keep-alive connection from a Python http.client loop, c=1; its own cost (tens of µs) "
        "is inside the stack's numbers. Median latency in ms per round; added = stack - bare, "
        "ratio = stack / inline, both of the same round. The xgboost stack calls "
        "inplace_predict; the bare inplace_predict is shown beside the briefed "
        "booster.predict(DMatrix(row)).",
        "",
    )
    rows: list[list[Any]] = []
    for stack in stacks:
        m = results[stack.name]
        for index in range(len(m["stack-1"])):
            inplace = m["bare-inplace-1"][index] if m["bare-inplace-1"] else None
            rows.append(
                [
                    stack.name,
                    index + 1,
                    f"{m['stack-1'][index]:.3f}",
                    f"{m['bare-1'][index]:.3f}",
                    f"{inplace:.3f}" if inplace is not None else "-",
                    f"{m['stack-1'][index] - m['bare-1'][index]:.3f}",
                    f"{m['stack-100'][index]:.2f}",
                    f"{m['inline-100'][index]:.2f}",
                    f"{m['stack-100'][index] / m['inline-100'][index]:.2f}",
                ]
            )
    section.table(
        [
            "stack",
            "round",
            "1 row stack p50",
            "bare call p50",
            "bare inplace p50",
            "added",
            "100 rows stack p50",
            "inline p50",
            "ratio",
        ],
        rows,
    )
    answered = ", ".join(
        f"{s.name} {answers[s.name]['1']} and {answers[s.name]['100']} rows" for s in stacks
    )
    section.add(f"Answers checked: {answered}.", "")
    for stack in stacks:
        m = results[stack.name]
        added = [s - b for s, b in zip(m["stack-1"], m["bare-1"], strict=True)]
        ratios = [s / i for s, i in zip(m["stack-100"], m["inline-100"], strict=True)]
        extra = ""
        if m["bare-inplace-1"]:
            vs_inplace = [s - b for s, b in zip(m["stack-1"], m["bare-inplace-1"], strict=True)]
            extra = f"; against bare inplace_predict {statistics.median(vs_inplace):.3f} ms"
        section.target(
            f"{stack.name} stack, 1-row request, c=1, p50 added over the bare call (median of "
            f"the rounds; spread {_spread(added, 3)} ms; stack "
            f"{statistics.median(m['stack-1']):.3f} ms, bare "
            f"{statistics.median(m['bare-1']):.3f} ms{extra})",
            f"{statistics.median(added):.3f} ms",
            f"≤ {ADDED_MS:g} ms",
            statistics.median(added) <= ADDED_MS,
        )
        section.target(
            f"{stack.name} stack, 100-row request vs inline decode + call + encode (median of "
            f"the rounds' ratios; spread {_spread(ratios, 2)}; stack "
            f"{statistics.median(m['stack-100']):.2f} ms, inline "
            f"{statistics.median(m['inline-100']):.2f} ms)",
            f"{statistics.median(ratios):.2f}x",
            f"≤ {RATIO:g}x",
            statistics.median(ratios) <= RATIO,
        )
