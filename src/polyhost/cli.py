"""The `polyhost` command: `serve` runs the server; the others talk to one over HTTP."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from polyhost.settings import Settings, SettingSpec
from polyhost.settings import fields as settings_fields


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the polyhost server",
        description="Run the polyhost server. Every flag can also be set in the environment "
        "as POLYHOST_<FLAG> (e.g. POLYHOST_STATE_DIR); a flag beats the environment.",
    )
    for spec in settings_fields():
        _add_setting_flag(p, spec)
    p.add_argument("--log-level", default="info")


_METAVARS = {"int": "N", "float": "SECONDS", "path": "DIR"}


def _add_setting_flag(parser: argparse.ArgumentParser, spec: SettingSpec) -> None:
    """One flag per `Settings` field; unset flags stay out of the namespace (SUPPRESS), so the
    environment and the field's default apply."""
    shown = ", ".join(spec.default) if isinstance(spec.default, tuple) else spec.default
    help_text = (
        f"{spec.help} (default: {shown if shown not in (None, '') else 'none'}; env {spec.env})"
    )
    common: dict[str, Any] = {"dest": spec.name, "default": argparse.SUPPRESS, "help": help_text}
    if spec.kind in ("bool", "optional-bool"):
        parser.add_argument(spec.flag, action=argparse.BooleanOptionalAction, **common)
    elif spec.kind == "strings":
        parser.add_argument(spec.flag, action="append", metavar=spec.metavar, **common)
    elif spec.kind == "paths":
        parser.add_argument(spec.flag, action="append", type=Path, metavar=spec.metavar, **common)
    else:
        if spec.choices is not None:
            parser.add_argument(spec.flag, choices=spec.choices, **common)
            return
        metavar = spec.metavar or _METAVARS.get(spec.kind) or spec.flag.lstrip("-").upper()
        parser.add_argument(spec.flag, type=spec.parse, metavar=metavar, **common)


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        spec.name: getattr(args, spec.name)
        for spec in settings_fields()
        if hasattr(args, spec.name)
    }
    for spec in settings_fields():  # a repeatable flag collects a list; the field is a tuple
        if spec.kind in ("strings", "paths") and spec.name in overrides:
            overrides[spec.name] = tuple(overrides[spec.name])
    try:
        settings = Settings.from_env(**overrides)
    except ValueError as error:  # a malformed POLYHOST_* variable
        print(f"polyhost: {error}", file=sys.stderr)
        return 2
    settings = dataclasses.replace(settings, state_dir=settings.state_dir.resolve())
    if not settings.is_loopback and not settings.insecure and settings.auth_file is None:
        print(
            f"polyhost: refusing to bind {settings.host}: requests are not authenticated, so only "
            "a loopback address is safe. Pass --auth-file to require signed requests, or "
            "--insecure to bind it anyway.",
            file=sys.stderr,
        )
        return 2
    if not 1.0 <= settings.autoscaling_time_scale <= 6.0:
        print(
            "polyhost: --autoscaling-time-scale must be from 1 to 6 (one evaluated minute "
            f"lasts 60/N seconds), not {settings.autoscaling_time_scale:g}.",
            file=sys.stderr,
        )
        return 2
    refusal = _admin_refusal(settings)
    if refusal is not None:
        print(f"polyhost: {refusal}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    from polyhost.auth.errors import PolicyError
    from polyhost.auth.gate import load_access_control
    from polyhost.server import run

    try:
        load_access_control(settings)  # checked here so a bad file stops us with its reason
    except (PolicyError, OSError) as error:  # names principal and statement, never a secret
        print(f"polyhost: cannot use --auth-file {settings.auth_file}: {error}", file=sys.stderr)
        return 2
    from polyhost.backends.confinement import ConfinementError
    from polyhost.backends.factory import BackendUnavailable
    from polyhost.backends.registry import ImageConfigError
    from polyhost.backends.role_credentials import RoleCredentialsError

    try:
        run(settings)
    except (BackendUnavailable, ConfinementError, RoleCredentialsError, ImageConfigError) as error:
        # A backend that cannot run, a bad --role-credentials or --image-config: one line.
        print(f"polyhost: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. the port is taken: say so, without a traceback
        print(f"polyhost: cannot serve on {settings.host}:{settings.port}: {error}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _admin_refusal(settings: Settings) -> str | None:
    """Why the admin listener cannot start as configured, or None. Off loopback it serves every
    container's numbers and every endpoint's failure reason, so it needs a bearer token; a
    token file given anyway must hold a usable token (its content is never printed)."""
    from polyhost.http.admin.token import AdminTokenError, load_admin_token

    if settings.admin_port == 0:
        return None
    host = settings.admin_host
    if settings.admin_token_file is None:
        if settings.auth_file is not None:
            return None  # the server makes a token of its own (server.py)
        if dataclasses.replace(settings, host=host).is_loopback:
            return None
        return (
            f"refusing to bind the admin listener to {host}: off loopback it needs a bearer "
            "token. Pass --admin-token-file FILE (a random token, e.g. `openssl rand -hex 32`), "
            "bind it to 127.0.0.1 with --admin-host, or turn it off with --admin-port 0."
        )
    try:
        load_admin_token(settings.admin_token_file)
    except (AdminTokenError, OSError) as error:
        return f"cannot use --admin-token-file: {error}"
    return None


def _add_auth(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("auth", help="check a principals file offline; make key pairs")
    commands = p.add_subparsers(dest="auth_command", required=True)
    check = commands.add_parser(
        "check",
        help="decide one request as the server would, and name the statement that decided",
    )
    check.add_argument("file", type=Path, help="principals.json")
    check.add_argument("--principal", required=True, help="the principal's name")
    check.add_argument(
        "--action",
        required=True,
        help="e.g. sagemaker:InvokeEndpoint, sagemaker:InvokeEndpointWithResponseStream",
    )
    check.add_argument(
        "--resource", required=True, help="e.g. arn:aws:sagemaker:us-east-1:123456789012:endpoint/x"
    )
    check.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a condition key of the request, e.g. sagemaker:TargetContainerHostname=a "
        "(repeatable)",
    )
    new = commands.add_parser("new-principal", help="print a principals-file entry with new keys")
    new.add_argument("name")


def _auth(args: argparse.Namespace) -> int:
    from polyhost.auth import commands

    try:
        if args.auth_command == "new-principal":
            print(commands.new_principal_entry(args.name))
            return 0
        decision = commands.check(
            args.file, args.principal, args.action, args.resource, args.context
        )
    except (commands.CommandError, commands.PolicyError, OSError) as error:
        print(f"polyhost auth: {error}", file=sys.stderr)
        return 2
    print(commands.explain(decision))
    return 0 if decision.allowed else 1


def _add_images(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("images", help="build the Docker images of the built-in stacks")
    commands = p.add_subparsers(dest="images_command", required=True)
    build = commands.add_parser(
        "build",
        help="build polyhost/<stack>:<version> and :latest from this checkout",
        description="Build the images of the built-in serving stacks (images/<stack>/Dockerfile) "
        "with a wheel of this checkout, showing Docker's build log.",
    )
    build.add_argument(
        "stacks", nargs="*", metavar="STACK", help="sklearn, pytorch, tensorflow (default: all)"
    )
    build.add_argument(
        "--base-image", default="python:3.11-slim", help="the FROM image (default: %(default)s)"
    )
    build.add_argument(
        "--source", type=Path, default=None, help="the polyhost checkout (default: this one)"
    )
    build.add_argument(
        "--pip-find-links",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of wheels/sdists pip in the build may install from, copied into the "
        "build context (repeatable; default: the host's pip find-links)",
    )
    build.add_argument(
        "--pip-index-url",
        default=None,
        metavar="URL",
        help="the package index pip in the build uses, torch included (default: the host's "
        "PIP_INDEX_URL or pip.conf index-url, else PyPI)",
    )


def _images(args: argparse.Namespace) -> int:
    from polyhost.backends.docker.build import main as build_images

    return build_images(
        args.stacks, args.base_image, args.source, args.pip_index_url, args.pip_find_links
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyhost", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_auth(sub)
    _add_images(sub)
    from polyhost.client.cli import add_client_commands

    add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "auth":
        return _auth(args)
    if args.command == "images":
        return _images(args)
    from polyhost.client.cli import run_client_command

    return run_client_command(args)
