"""Client commands of `polyhost` (deploy, invoke, ls, logs, rm): they talk to a server over HTTP."""

from __future__ import annotations

import argparse


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    return None


def run_client_command(args: argparse.Namespace) -> int:
    raise SystemExit(f"unknown command {args.command}")
