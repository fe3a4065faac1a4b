"""`polyhost auth`: check a principals file offline, as IAM's policy simulator does, and mint keys.

`check` loads the file exactly as the server would (so a file it accepts, the server accepts),
then decides one request and prints the outcome and the statement that decided. The runtime's
actions are InvokeEndpoint, InvokeEndpointWithResponseStream and InvokeEndpointAsync, each
its own (as in IAM); a misspelt one is refused rather than decided as an implicit deny. Nothing here
talks to a server: a policy can be tried before it is deployed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from polyhost.auth.actions import unknown_runtime_action
from polyhost.auth.authorizer import Authorizer
from polyhost.auth.context import request_context
from polyhost.auth.errors import PolicyError
from polyhost.auth.keys import new_principal
from polyhost.auth.policy import Decision
from polyhost.auth.principals import load_principals


class CommandError(Exception):
    """A usage problem the command reports in one line (exit code 2)."""


def parse_context(pairs: Sequence[str]) -> dict[str, list[str]]:
    """`key=value` pairs; a key given twice has several values (a multivalued key)."""
    context: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--context takes KEY=VALUE, not {pair!r}")
        context.setdefault(key.strip(), []).append(value)
    return context


def check(
    path: Path, principal_name: str, action: str, resource: str, context: Sequence[str]
) -> Decision:
    """The decision for one request by `principal_name`; raises CommandError or PolicyError."""
    principals = load_principals(path)
    principal = principals.by_name.get(principal_name)
    if principal is None:
        for candidate in principals.principals:
            if candidate.name.lower() == principal_name.lower():
                principal = candidate
    if principal is None:
        names = ", ".join(p.name for p in principals.principals) or "none"
        raise CommandError(f"no principal named {principal_name!r} in {path}; it has: {names}")
    unknown = unknown_runtime_action(action)
    if unknown is not None:
        raise CommandError(unknown)
    values = parse_context(context)
    known = {
        "sagemaker:targetcontainerhostname": "target_container_hostname",
        "sagemaker:targetmodel": "target_model",
        "sagemaker:targetvariant": "target_variant",
        "sagemaker:inferencecomponentname": "inference_component_name",
        "aws:sourceip": "source_ip",
    }
    named: dict[str, str] = {}
    extra: dict[str, list[str]] = {}
    for key, given in values.items():
        field = known.get(key.lower())
        if field is not None and len(given) == 1:
            named[field] = given[0]
        elif key.lower() != "aws:username":
            extra[key] = given
    secure = (extra.pop("aws:SecureTransport", None) or ["false"])[0].lower() == "true"
    ctx = request_context(
        username=principal.name,
        secure_transport=secure,
        source_ip=named.get("source_ip"),
        target_container_hostname=named.get("target_container_hostname"),
        target_model=named.get("target_model"),
        target_variant=named.get("target_variant"),
        inference_component_name=named.get("inference_component_name"),
        extra=extra or None,
    )
    return Authorizer.simulate(principal, action, resource, ctx)


def explain(decision: Decision) -> str:
    """`Allow` or `Deny`, then the statement that decided, as the simulator shows it."""
    verdict = "Allow" if decision.allowed else "Deny"
    return f"{verdict}\n{decision.explain()}"


def new_principal_entry(name: str) -> str:
    """A principals-file entry with a fresh key pair, as indented JSON."""
    try:
        entry = new_principal(name)
    except ValueError as error:
        raise CommandError(str(error)) from None
    return json.dumps(entry, indent=2)


__all__ = ["CommandError", "PolicyError", "check", "explain", "new_principal_entry"]
