"""SageMaker's multi-container walkthrough, end to end on this machine (what `make run` runs).

1. data: Fashion-MNIST from Debian's package (installed here when missing and we are root), or
   any MNIST-format folder given with --data;
2. train a PyTorch CNN and a Keras CNN (cached in work/; --retrain to redo);
3. package each as model.tar.gz in SageMaker's layout and put both in S3 — a local moto server
   this script starts — or, with --no-s3, use file:// URLs;
4. start polyhost (unless one already answers on --port), then with boto3: create the
   two-container Direct-mode model, the endpoint config and the endpoint, wait for InService,
   and invoke each container on held-out images, printing accuracy and latency;
5. print how to call the endpoint yourself, and keep serving until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import data
import package
import walkthrough
from botocore.exceptions import BotoCoreError, ClientError, WaiterError
from services import LocalS3, PolyhostServer, status_of

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
BUCKET = "polyhost-examples"
PYTORCH_KEY = "multi-container-endpoint/output/pytorch/updated/model.tar.gz"
TENSORFLOW_KEY = "multi-container-endpoint/output/tensorflow/model.tar.gz"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=7080, help="polyhost's port (default 7080)")
    parser.add_argument("--data", type=Path, default=None, help="folder of MNIST-format IDX files")
    parser.add_argument("--work", type=Path, default=WORK, help="cache and state folder")
    parser.add_argument("--no-s3", action="store_true", help="use file:// URLs instead of S3")
    parser.add_argument("--retrain", action="store_true", help="train even if cached")
    parser.add_argument("--train-images", type=int, default=12000, help="0 = all 60000")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-images", type=int, default=1000, help="held-out images to send")
    parser.add_argument(
        "--exit", action="store_true", help="stop the services at the end instead of serving on"
    )
    return parser.parse_args(argv)


def _say(text: str) -> None:
    print(text, flush=True)


def trained(out_dir: Path, wanted: dict[str, Any], retrain: bool) -> dict[str, Any] | None:
    """The cached metrics when `out_dir` holds a model trained with the same settings."""
    try:
        metrics: dict[str, Any] = json.loads((out_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if retrain or any(metrics.get(key) != value for key, value in wanted.items()):
        return None
    return metrics


def train_models(args: argparse.Namespace, data_dir: Path) -> dict[str, dict[str, Any]]:
    """Train both models in child processes (PyTorch and TensorFlow stay out of this one)."""
    results: dict[str, dict[str, Any]] = {}
    for framework in ("pytorch", "tensorflow"):
        out_dir = args.work / framework
        wanted = {"data": str(data_dir), "epochs": args.epochs}
        if args.train_images:
            wanted["train_images"] = args.train_images
        cached = trained(out_dir, wanted, args.retrain)
        if cached is not None:
            _say(f"  {framework}: cached model, {_described(cached)} (--retrain to redo)")
            results[framework] = cached
            continue
        _say(f"  {framework}: training ...")
        command = [
            sys.executable, str(HERE / f"train_{framework}.py"),
            "--data", str(data_dir),
            "--out", str(out_dir),
            "--train-images", str(args.train_images),
            "--epochs", str(args.epochs),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            raise SystemExit(f"training {framework} failed (exit status {done.returncode})")
        results[framework] = json.loads((out_dir / "metrics.json").read_text())
        _say(f"  {framework}: trained, {_described(results[framework])}")
    return results


def _described(metrics: dict[str, Any]) -> str:
    return (
        f"{metrics['train_images']} images x {metrics['epochs']} epochs in "
        f"{metrics['train_seconds']:.1f} s, test accuracy {metrics['accuracy']:.2%} on "
        f"{metrics['test_images']} held-out images"
    )


def model_urls(args: argparse.Namespace, s3: LocalS3 | None) -> tuple[str, str]:
    """(tensorflow, pytorch) ModelDataUrls: S3 objects, or file:// URLs of the archives."""
    pt_archive = package.package_pytorch(args.work / "pytorch", args.work / "pytorch.tar.gz")
    tf_archive = package.package_tensorflow(
        args.work / "tensorflow", args.work / "tensorflow.tar.gz"
    )
    for archive in (pt_archive, tf_archive):
        _say(f"  {archive.name}: {', '.join(package.members(archive))}")
    if s3 is None:
        return tf_archive.resolve().as_uri(), pt_archive.resolve().as_uri()
    tf_url = s3.upload(tf_archive, BUCKET, TENSORFLOW_KEY)
    pt_url = s3.upload(pt_archive, BUCKET, PYTORCH_KEY)
    return tf_url, pt_url


def write_sample_requests(work: Path, test: data.Split) -> dict[str, Path]:
    """One-image request bodies for each container, for the curl and CLI lines printed."""
    folder = work / "requests"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for hostname, build in walkthrough.REQUEST_BUILDERS.items():
        path = folder / f"{hostname}.json"
        path.write_bytes(build(test.images[:1]))
        paths[hostname] = path
    return paths


def dashboard(server: PolyhostServer, started_here: bool) -> str:
    """Where the dashboard is and how to get in: the admin listener wants a bearer token when
    the server has one (`--admin-token-file`, or the one it makes in its state dir with
    `--auth-file`), and its /ui/ page then asks for it once."""
    ui = f"{server.admin_url}/ui/"
    where = "" if started_here else " (if that server kept the default --admin-port)"
    status = status_of(server.admin_url + "/api/endpoints")
    if status is None:
        return f"The dashboard would be at {ui}{where}, but its admin listener does not answer."
    if status != 401:
        return f"Open {ui}{where} in a browser: no token is needed on loopback."
    generated = server.state_dir / "admin-token"
    source = (
        f"`cat {generated}`"
        if generated.is_file()
        else "the file the server was given with --admin-token-file"
    )
    return f"Open {ui}{where} in a browser; it asks for the admin token once, which is in {source}."


def how_to_call(url: str, samples: dict[str, Path], dashboard_hint: str = "") -> str:
    endpoint = walkthrough.ENDPOINT_NAME
    tf_sample = samples[walkthrough.TENSORFLOW_HOSTNAME]
    pt_sample = samples[walkthrough.PYTORCH_HOSTNAME]
    return f"""
The endpoint {endpoint} is InService at {url}. Call it yourself:

  boto3 (it signs every request, so it wants credentials; polyhost accepts any):
    import json, boto3
    runtime = boto3.client("sagemaker-runtime", endpoint_url="{url}", region_name="us-east-1",
                           aws_access_key_id="polyhost", aws_secret_access_key="polyhost")
    answer = runtime.invoke_endpoint(
        EndpointName="{endpoint}", TargetContainerHostname="tensorflow-mnist",
        ContentType="application/json", Body=open("{tf_sample}", "rb").read())
    print(json.loads(answer["Body"].read())["predictions"])

  curl:
    curl -s {url}/endpoints/{endpoint}/invocations -H 'Content-Type: application/json' \\
      -H 'X-Amzn-SageMaker-Target-Container-Hostname: tensorflow-mnist' --data-binary @{tf_sample}

  polyhost CLI (.venv/bin/polyhost):
    polyhost invoke {endpoint} @{pt_sample} --container pytorch-mnist \\
      --content-type application/json --url {url}
    polyhost ls --url {url}
    polyhost logs {endpoint} --container pytorch-mnist --url {url}

  dashboard (every endpoint and container, live charts, log tails):
    {dashboard_hint}
"""


def run(args: argparse.Namespace) -> int:
    _say("[1/5] data")
    try:
        data_dir = data.ensure_dataset(args.data)
    except data.DataError as error:
        print(f"run_demo: {error}", file=sys.stderr)
        return 1
    test = data.load_split(data_dir, "t10k").head(args.eval_images)
    _say(f"  {data_dir}")

    _say("[2/5] training")
    train_models(args, data_dir)

    server = PolyhostServer(
        "polyhost", args.work / "polyhost.log", port=args.port, state_dir=args.work / "state"
    )
    reuse = server.already_running()
    s3: LocalS3 | None = None
    try:
        _say("[3/5] packaging" + ("" if args.no_s3 or reuse else " and uploading to S3"))
        if reuse and not args.no_s3:
            _say(
                f"  polyhost already answers at {server.url}; it cannot see this script's S3, so "
                "the models go by file:// URLs"
            )
        if not (args.no_s3 or reuse):
            s3 = LocalS3("s3", args.work / "s3.log").start()
            _say(f"  S3 (moto) at {s3.url}")
        tf_url, pt_url = model_urls(args, s3)
        _say(
            f"  ModelDataUrl tensorflow-mnist: {tf_url}\n  ModelDataUrl pytorch-mnist:    {pt_url}"
        )

        _say("[4/5] deploying with boto3")
        if reuse:
            _say(f"  using the polyhost server already running at {server.url}")
        else:
            server.env = s3.env() if s3 is not None else {}
            if s3 is not None:
                server.role_credentials = s3.role_credentials(walkthrough.ROLE, args.work / "roles")
            server.start()
            _say(f"  started polyhost at {server.url} (log: {server.log_path})")
        sm_client, runtime_sm_client = walkthrough.clients(server.url)
        walkthrough.delete_if_present(sm_client)
        description = walkthrough.deploy(sm_client, tf_url, pt_url)
        _say(f"  {description['EndpointName']}: {description['EndpointStatus']}")

        _say(f"[5/5] invoking each container on {len(test.labels)} held-out images")
        for hostname in (walkthrough.TENSORFLOW_HOSTNAME, walkthrough.PYTORCH_HOSTNAME):
            _say("  " + walkthrough.evaluate(runtime_sm_client, hostname, test).summary())
        samples = write_sample_requests(args.work, test)
        _say(how_to_call(server.url, samples, dashboard(server, started_here=not reuse)))

        if reuse or args.exit:
            return 0
        _say("Serving until Ctrl-C ...")
        code = server.wait()
        _say(f"polyhost exited with status {code}; its log: {server.log_path}")
        return 1
    except KeyboardInterrupt:
        _say("\nstopping ...")
        return 0
    except WaiterError as error:
        reason = (error.last_response or {}).get("FailureReason") or str(error)
        print(f"run_demo: the endpoint did not come up: {reason}", file=sys.stderr)
        print(f"run_demo: polyhost's log: {server.log_path}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, RuntimeError) as error:
        print(f"run_demo: {error}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        if s3 is not None:
            s3.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # The services run in their own sessions (so Ctrl-C stops them in order, from here): a
    # SIGTERM or a closed terminal must therefore also pass through the clean-up in run().
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
