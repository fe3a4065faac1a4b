"""A Serial inference pipeline on polyhost: scaler → logistic regression → label names.

Needs a running polyhost server (`make run` leaves one on port 7080; or start one with
`polyhost serve`). Builds the three model archives, deploys them as one pipeline endpoint with
boto3, sends the held-out digits as text/csv, and prints the accuracy and request latencies.

    python examples/serial-pipeline/run_pipeline.py [--url http://127.0.0.1:7080]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import urllib.error
import urllib.request
from pathlib import Path

import build_digits
import pipeline
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("POLYHOST_URL", "http://127.0.0.1:7080"),
        help="the polyhost server (default $POLYHOST_URL or http://127.0.0.1:7080)",
    )
    parser.add_argument("--work", type=Path, default=HERE / "work", help="where archives go")
    parser.add_argument("--batch-size", type=int, default=60, help="rows per request")
    return parser.parse_args(argv)


def server_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/ping", timeout=2) as answer:
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def run(args: argparse.Namespace) -> int:
    if not server_answers(args.url):
        print(
            f"run_pipeline: no polyhost server answers at {args.url}. Start one (`make run` "
            "leaves one on port 7080, or `.venv/bin/polyhost serve`), or pass --url.",
            file=sys.stderr,
        )
        return 1
    args.work.mkdir(parents=True, exist_ok=True)
    built = build_digits.build(args.work)
    print(f"fitted scaler + logistic regression: local accuracy {built.local_accuracy:.2%}")
    # file:// URLs: the server runs on this machine. s3:// URLs work the same way.
    urls = [path.resolve().as_uri() for path in (built.preprocess, built.model, built.postprocess)]

    sagemaker, runtime = pipeline.pipeline_clients(args.url)
    pipeline.remove(sagemaker)
    status = pipeline.deploy(sagemaker, pipeline.containers(*urls))
    print(f"{pipeline.PIPELINE_NAME}: {status} (3 containers, Serial)")

    rows = built.test_csv.read_text().splitlines()
    predicted: list[str] = []
    latencies: list[float] = []
    for start in range(0, len(rows), args.batch_size):
        names, elapsed_ms = pipeline.predict(
            runtime, "\n".join(rows[start : start + args.batch_size]) + "\n"
        )
        predicted += names
        latencies.append(elapsed_ms)
    single = [pipeline.predict(runtime, rows[index] + "\n")[1] for index in range(20)]
    correct = sum(p == t for p, t in zip(predicted, built.test_labels, strict=True))
    print(
        f"accuracy {correct / len(rows):.2%} on {len(rows)} held-out digits | "
        f"{args.batch_size}-row request: median {statistics.median(latencies):.1f} ms | "
        f"1-row request: median {statistics.median(single):.1f} ms"
    )
    print(f"first answers: {predicted[:8]} (truth: {built.test_labels[:8]})")
    print(
        "\nTry it yourself:\n"
        f"  head -3 {built.test_csv} | polyhost invoke {pipeline.PIPELINE_NAME} - "
        f"--content-type text/csv --url {args.url}\n"
        f"  polyhost logs {pipeline.PIPELINE_NAME} --url {args.url}\n"
        f"  polyhost rm {pipeline.PIPELINE_NAME} --all --url {args.url}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except WaiterError as error:
        reason = (error.last_response or {}).get("FailureReason") or str(error)
        print(f"run_pipeline: the endpoint did not come up: {reason}", file=sys.stderr)
    except (ClientError, BotoCoreError) as error:
        print(f"run_pipeline: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
