"""`python -m bench [SCENARIO ...]`: run benchmark scenarios and write bench/RESULTS.md.

Without arguments every scenario runs (what `make bench` does). A scenario is named by its key
or its number (`python -m bench router-overhead`, `python -m bench 1 4`). A scenario that
cannot run (a peer that does not install, a stack that is missing) writes why into its section
and the others go on; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from bench.context import BENCH_DIR, Context
from bench.machine import machine_lines
from bench.report import ResultsFile, Section

# (number, key, module): the order of RESULTS.md and of a full run.
SCENARIOS: list[tuple[int, str, str]] = [
    (1, "router-overhead", "bench.scenarios.router_overhead"),
    (2, "mlserver", "bench.scenarios.mlserver"),
    (3, "torchserve", "bench.scenarios.torchserve"),
    (4, "serial-pipeline", "bench.scenarios.serial_pipeline"),
    (5, "density", "bench.scenarios.density"),
    (6, "load-curve", "bench.scenarios.load_curve"),
    (7, "metrics-history", "bench.scenarios.metrics_history"),
    (8, "isolation", "bench.scenarios.isolation"),
    (9, "auth", "bench.scenarios.auth"),
    (10, "docker", "bench.scenarios.docker"),
    (11, "soak", "bench.scenarios.soak"),
    (12, "ray", "bench.scenarios.ray_backend"),
    (13, "sklearn-baseline", "bench.scenarios.sklearn_baseline"),
    (14, "stack-json", "bench.scenarios.stack_json"),
    (15, "streaming", "bench.scenarios.streaming"),
    (16, "new-stacks", "bench.scenarios.new_stacks"),
    (17, "multi-model", "bench.scenarios.multi_model"),
    (18, "async", "bench.scenarios.async_queue"),
    (19, "components", "bench.scenarios.components"),
    (20, "autoscaling", "bench.scenarios.autoscaling"),
    (21, "data-capture", "bench.scenarios.data_capture"),
    (22, "shadow", "bench.scenarios.shadow"),
    (23, "multi-model-scale", "bench.scenarios.multi_model_scale"),
    (24, "multi-model-mlserver", "bench.scenarios.multi_model_mlserver"),
    (25, "serverless", "bench.scenarios.serverless"),
]
# "findings" is written by hand after a run and kept in place by later runs.
ORDER = ["machine", *(key for _, key, _ in SCENARIOS), "findings"]


def _select(names: list[str]) -> list[tuple[int, str, str]]:
    if not names:
        return SCENARIOS
    chosen = []
    for name in names:
        match = [s for s in SCENARIOS if name in (s[1], str(s[0]))]
        if not match:
            known = ", ".join(f"{n} {k}" for n, k, _ in SCENARIOS)
            raise SystemExit(f"unknown scenario {name!r}; known: {known}")
        chosen.extend(match)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", help="keys or numbers; default: all")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny configuration (a harness check, not a measurement)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile polyhost with py-spy even where targets are met",
    )
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--work", type=Path, default=BENCH_DIR / "work")
    args = parser.parse_args(argv)
    if args.list:
        for number, key, module in SCENARIOS:
            doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()[0]
            print(f"{number} {key:16} {doc}")
        return 0

    results = ResultsFile(args.results, ORDER)
    ctx = Context(work_root=args.work, results=results, quick=args.quick, profile=args.profile)
    machine = Section("machine", "Machine and versions", machine_lines())
    results.write("machine", machine.markdown())
    print("\n".join(machine.lines), flush=True)
    failures = 0
    for number, key, module in _select(args.scenarios):
        print(f"\n== {number}. {key} ==", flush=True)
        started = time.monotonic()
        try:
            section = importlib.import_module(module).run(ctx)
        except Exception as error:  # written down, and the next scenario still runs
            failures += 1
            traceback.print_exc()
            section = ctx.begin(key, f"{number}. {key}")
            section.add(
                "**This scenario did not complete** in this run:",
                "",
                "```",
                f"{type(error).__name__}: {error}"[-3000:],
                "```",
                "",
            )
        section.footer.append(f"_Scenario time: {time.monotonic() - started:.0f} s._")
        results.write(key, section.markdown())
        print(section.markdown(), flush=True)
    print(f"\nResults written to {args.results}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
