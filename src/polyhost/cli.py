"""The `polyhost` command: `serve` runs the server; the others talk to one over HTTP."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from polyhost.settings import Settings


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the polyhost server")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7080)
    p.add_argument("--state-dir", type=Path, default=Path("./state"))
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--account-id", default="123456789012")
    p.add_argument("--image-config", type=Path, default=None, help="images.toml of user images")
    p.add_argument(
        "--invocation-timeout", type=float, default=60.0, help="seconds a container may take"
    )
    p.add_argument(
        "--max-inflight", type=int, default=64, help="requests in flight per container before 429"
    )
    p.add_argument("--stop-grace", type=float, default=30.0, help="seconds from SIGTERM to SIGKILL")
    p.add_argument(
        "--startup-timeout",
        type=float,
        default=240.0,
        help="seconds a container may take to pass /ping when its variant does not say",
    )
    p.add_argument(
        "--keep-alive-timeout", type=float, default=75.0, help="seconds an idle connection stays"
    )
    p.add_argument("--no-access-log", action="store_true")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback bind although requests are not authenticated",
    )
    p.add_argument("--log-level", default="info")


def _serve(args: argparse.Namespace) -> int:
    settings = Settings(
        host=args.host,
        port=args.port,
        state_dir=args.state_dir.resolve(),
        region=args.region,
        account_id=args.account_id,
        image_config=args.image_config,
        insecure=args.insecure,
        invocation_timeout_s=args.invocation_timeout,
        max_inflight_per_container=args.max_inflight,
        stop_grace_s=args.stop_grace,
        default_startup_timeout_s=args.startup_timeout,
        keep_alive_timeout_s=args.keep_alive_timeout,
        access_log=not args.no_access_log,
    )
    if not settings.is_loopback and not settings.insecure:
        print(
            f"polyhost: refusing to bind {settings.host}: requests are not authenticated, so only "
            "a loopback address is safe. Pass --insecure to bind it anyway.",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    from polyhost.server import run

    try:
        run(settings)
    except OSError as error:  # e.g. the port is taken: say so, without a traceback
        print(f"polyhost: cannot serve on {settings.host}:{settings.port}: {error}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyhost", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    from polyhost.client_cli import add_client_commands

    add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    from polyhost.client_cli import run_client_command

    return run_client_command(args)
