"""`python -m bench.soak [--minutes N | --seconds N]`: the soak alone, its section in RESULTS.md.

The same run as `python -m bench soak` (scenario 11, `bench/scenarios/soak.py`), for any length:
`make soak` runs it for 10 minutes, the smoke test for about 20 seconds. The exit status is 1
when a target was missed, so `make soak` fails then.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.__main__ import ORDER
from bench.context import BENCH_DIR, Context
from bench.report import ResultsFile
from bench.scenarios.soak import KEY, soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="how long to run (default: 10)")
    length.add_argument("--seconds", type=float, help="how long to run, in seconds")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--work", type=Path, default=BENCH_DIR / "work")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 60.0 * (args.minutes or 10.0)
    length_flag = (
        f"--seconds {args.seconds:g}"
        if args.seconds is not None
        else (f"--minutes {args.minutes or 10:g}")
    )
    results = ResultsFile(args.results, ORDER)
    ctx = Context(work_root=args.work, results=results)
    section = soak(ctx, seconds, f".venv/bin/python -m bench.soak {length_flag}")
    results.write(KEY, section.markdown())
    print(section.markdown(), flush=True)
    print(f"Results written to {args.results}", flush=True)
    return 0 if all(target.met for target in section.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
