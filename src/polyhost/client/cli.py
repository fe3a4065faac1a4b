"""Client commands of `polyhost` (deploy, invoke, ls, logs, rm, top): they talk to a server over
HTTP.

Each command is a thin wrapper over polyhost.client; this module only declares the arguments
and turns failures into one readable stderr message and an exit status (0 ok, 1 failed,
2 bad usage or a bad file, 130 interrupted). No traceback reaches the user for an error
that the server or the file explains.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from polyhost.client.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CommandFailed

if TYPE_CHECKING:
    from polyhost.client.connection import Connection

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _with_url(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--url",
        default=None,
        help="the polyhost server (default: $POLYHOST_URL, else http://127.0.0.1:7080)",
    )
    return parser


def _with_admin(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--admin-url",
        default=None,
        help="the admin listener (default: $POLYHOST_ADMIN_URL, else http://127.0.0.1:7081)",
    )
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        help="file holding the admin listener's bearer token (default: $POLYHOST_ADMIN_TOKEN)",
    )
    return parser


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def add_client_commands(sub: Subparsers) -> None:
    deploy = _with_url(
        sub.add_parser(
            "deploy",
            help="create or update an endpoint from a YAML file and wait until it serves",
            description="Create or update model(s), endpoint config and endpoint from one YAML "
            "file; running it again changes only what differs. Waits for InService.",
        )
    )
    deploy.add_argument("file", type=Path, help="endpoint.yaml")
    deploy.add_argument("--no-wait", action="store_true", help="return once the calls are made")
    deploy.add_argument(
        "--timeout", type=_positive, default=900.0, help="seconds to wait (default 900)"
    )

    invoke = _with_url(
        sub.add_parser(
            "invoke",
            help="call InvokeEndpoint and print the answer",
            description="Send BODY (text, @file, or - for stdin) to an endpoint; the answer's "
            "bytes go to stdout, errors to stderr with exit status 1.",
        )
    )
    invoke.add_argument("endpoint")
    invoke.add_argument("body", help="the request body: text, @path to read a file, - for stdin")
    invoke.add_argument("--container", help="TargetContainerHostname (Direct mode)")
    invoke.add_argument("--content-type", help="Content-Type of the body")
    invoke.add_argument("--accept", help="Accept: the content type wanted back")
    invoke.add_argument("--variant", help="TargetVariant")
    invoke.add_argument("--custom-attributes", help="X-Amzn-SageMaker-Custom-Attributes")
    invoke.add_argument("--inference-id", help="InferenceId")
    invoke.add_argument(
        "--target-model",
        metavar="PATH",
        help="TargetModel of a multi-model endpoint: the archive's path below its prefix",
    )
    invoke.add_argument(
        "--stream",
        action="store_true",
        help="call InvokeEndpointWithResponseStream and print each part as it arrives",
    )
    invoke.add_argument(
        "-v", "--verbose", action="store_true", help="print response metadata to stderr"
    )

    listing = _with_url(
        sub.add_parser("ls", help="list endpoints with their status and containers")
    )
    listing.add_argument(
        "--instances",
        action="store_true",
        help="also list every running instance with its node (read from the admin listener)",
    )
    _with_admin(listing)

    logs = _with_url(
        sub.add_parser(
            "logs",
            help="print the logs of an endpoint's containers",
            description="Print container logs (one stream per variant/instance/container).",
        )
    )
    logs.add_argument("endpoint")
    logs.add_argument("--container", help="only this container hostname")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until Ctrl-C")
    logs.add_argument("--tail", type=_count, help="start with the last N lines of each stream")
    logs.add_argument(
        "--interval", type=_positive, default=0.5, help="seconds between polls with --follow"
    )
    logs.add_argument(
        "--raw",
        action="store_true",
        help="print control characters as the container wrote them, even to a terminal "
        "(by default a terminal is shown them as visible escapes such as \\x1b)",
    )

    rm = _with_url(
        sub.add_parser("rm", help="delete an endpoint (with --all also its config and models)")
    )
    rm.add_argument("endpoint")
    rm.add_argument("--all", action="store_true", help="also delete its endpoint config and models")
    rm.add_argument("--no-wait", action="store_true", help="do not wait until it is gone")
    rm.add_argument(
        "--timeout", type=_positive, default=300.0, help="seconds to wait (default 300)"
    )

    top = sub.add_parser(
        "top",
        help="every container's requests/s, errors, latency, CPU and memory, live",
        description="A live view of every container, read from the admin listener's JSON API "
        "and refreshed every second. Ctrl-C quits.",
    )
    _with_admin(top)
    top.add_argument(
        "--sort",
        choices=("requests", "errors", "p99", "cpu", "memory"),
        default="requests",
        help="column to sort by, largest first (default: requests)",
    )
    top.add_argument("--endpoint", help="only this endpoint's containers")
    top.add_argument(
        "--interval", type=_positive, default=1.0, help="seconds between refreshes (default 1)"
    )


def _deploy(args: argparse.Namespace, connection: Connection) -> int:
    from polyhost.client.deploy import Deployer
    from polyhost.client.spec import SpecError, load

    try:
        deployment = load(args.file)
    except SpecError as error:
        raise CommandFailed(f"{args.file}: {error}", EXIT_USAGE) from None
    Deployer(connection.sagemaker(), sys.stdout, timeout_s=args.timeout, wait=not args.no_wait).run(
        deployment
    )
    return 0


def _invoke(args: argparse.Namespace, connection: Connection) -> int:
    from polyhost.client.invoke import InvokeOptions, invoke, read_body

    options = InvokeOptions(
        endpoint=args.endpoint,
        body=read_body(args.body),
        container=args.container,
        content_type=args.content_type,
        accept=args.accept,
        variant=args.variant,
        custom_attributes=args.custom_attributes,
        inference_id=args.inference_id,
        target_model=args.target_model,
        stream=args.stream,
    )
    invoke(connection.runtime(), options, sys.stdout.buffer, sys.stderr, args.verbose)
    return 0


def _ls(args: argparse.Namespace, connection: Connection) -> int:
    from polyhost.client.listing import list_command

    list_command(connection.sagemaker(), sys.stdout)
    if args.instances:
        from polyhost.client.admin import AdminClient
        from polyhost.client.listing import list_instances

        print(file=sys.stdout)
        list_instances(AdminClient.resolve(args.admin_url, args.admin_token_file), sys.stdout)
    return 0


def _logs(args: argparse.Namespace, connection: Connection) -> int:
    from polyhost.client.logs import logs_command

    logs_command(
        connection,
        args.endpoint,
        sys.stdout.buffer,
        sys.stderr,
        container=args.container,
        tail=args.tail,
        follow=args.follow,
        interval_s=args.interval,
        raw=args.raw,
    )
    return 0


def _rm(args: argparse.Namespace, connection: Connection) -> int:
    from polyhost.client.remove import remove

    remove(
        connection.sagemaker(),
        args.endpoint,
        sys.stdout,
        everything=args.all,
        wait=not args.no_wait,
        timeout_s=args.timeout,
    )
    return 0


_RUNNERS: dict[str, Callable[[argparse.Namespace, Connection], int]] = {
    "deploy": _deploy,
    "invoke": _invoke,
    "ls": _ls,
    "logs": _logs,
    "rm": _rm,
}


def _top(args: argparse.Namespace) -> int:
    """`polyhost top` talks to the admin listener (bearer token, no SigV4): no boto3 needed."""
    from polyhost.client.admin import AdminClient
    from polyhost.client.top import top

    try:
        client = AdminClient.resolve(args.admin_url, args.admin_token_file)
        return top(
            client, sys.stdout, sort=args.sort, endpoint=args.endpoint, interval_s=args.interval
        )
    except CommandFailed as error:
        _fail(error.message)
        return error.exit_code


def run_client_command(args: argparse.Namespace) -> int:
    if args.command == "top":
        return _top(args)
    runner = _RUNNERS.get(args.command)
    if runner is None:
        raise SystemExit(f"unknown command {args.command}")
    # botocore is imported only here: `polyhost serve` and `--help` need none of it.
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    from polyhost.client.connection import Connection, ServerError, Unreachable
    from polyhost.client.errors import describe_client_error

    connection = Connection.resolve(args.url)
    try:
        return runner(args, connection)
    except CommandFailed as error:
        _fail(error.message)
        return error.exit_code
    except ClientError as error:
        _fail(describe_client_error(error))
        return EXIT_FAILURE
    except ServerError as error:
        _fail(f"{error.code}: {error.message}")
        return EXIT_FAILURE
    except (Unreachable, EndpointConnectionError) as error:
        _fail(f"cannot reach polyhost at {connection.url}: is `polyhost serve` running? ({error})")
        return EXIT_FAILURE
    except BotoCoreError as error:
        _fail(f"request to {connection.url} failed: {error}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _fail("interrupted; the server carries on with any change already sent")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `polyhost logs ... | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not complain about the closed pipe either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _fail(message: str) -> None:
    print(f"polyhost: {message}", file=sys.stderr, flush=True)
