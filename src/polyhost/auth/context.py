"""The request context: the condition keys a request carries, as IAM policies see them.

Keys are case-insensitive in IAM, so they are stored lowercased (policies are lowercased at
load, so a lookup is one dict access). Values are tuples of strings: every key polyhost provides
is single-valued, but the evaluator follows IAM's set semantics for multivalued keys too.

The time keys are not stored: they are rendered from `now` only when a condition asks for them
(the authorizer never caches the decisions of a principal whose policies read the time).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

# The keys polyhost puts in a request context, spelt as IAM documents them.
USERNAME = "aws:username"
SOURCE_IP = "aws:SourceIp"
SECURE_TRANSPORT = "aws:SecureTransport"
CURRENT_TIME = "aws:CurrentTime"
EPOCH_TIME = "aws:EpochTime"
TARGET_CONTAINER_HOSTNAME = "sagemaker:TargetContainerHostname"
TARGET_MODEL = "sagemaker:TargetModel"
TARGET_VARIANT = "sagemaker:TargetVariant"
INFERENCE_COMPONENT_NAME = "sagemaker:InferenceComponentName"

# Lowercased key -> IAM's spelling (for messages). A policy naming another key is refused at
# load: a misspelt key would otherwise be silently absent, which turns a Deny into a no-op.
KNOWN_KEYS: dict[str, str] = {
    key.lower(): key
    for key in (
        USERNAME,
        SOURCE_IP,
        SECURE_TRANSPORT,
        CURRENT_TIME,
        EPOCH_TIME,
        TARGET_CONTAINER_HOSTNAME,
        TARGET_MODEL,
        TARGET_VARIANT,
        INFERENCE_COMPONENT_NAME,
    )
}
TIME_KEYS = frozenset({CURRENT_TIME.lower(), EPOCH_TIME.lower()})

Values = tuple[str, ...]
_TRUE: Values = ("true",)
_FALSE: Values = ("false",)


def format_current_time(now: float) -> str:
    """`aws:CurrentTime` as IAM renders it: ISO 8601, UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


class RequestContext:
    """The condition keys of one request. Build it with `request_context`."""

    __slots__ = ("_values", "now")

    def __init__(self, values: Mapping[str, Values], now: float) -> None:
        self._values: dict[str, Values] = {k.lower(): tuple(v) for k, v in values.items()}
        self.now = now

    @classmethod
    def _normalized(cls, values: dict[str, Values], now: float) -> RequestContext:
        """A context of `values` already keyed lowercase with tuple values (no copy): what
        `request_context` builds, on every authorized request."""
        context = cls.__new__(cls)
        context._values = values
        context.now = now
        return context

    def get(self, key: str) -> Values | None:
        """The values of `key` (lowercased), or None when the request does not carry it."""
        if key in TIME_KEYS:
            if key == "aws:epochtime":
                return (str(int(self.now)),)
            return (format_current_time(self.now),)
        return self._values.get(key)

    def __repr__(self) -> str:
        return f"RequestContext({dict(self._values)!r}, now={self.now!r})"


def request_context(
    *,
    username: str,
    source_ip: str | None = None,
    secure_transport: bool = False,
    now: float | None = None,
    target_container_hostname: str | None = None,
    target_model: str | None = None,
    target_variant: str | None = None,
    inference_component_name: str | None = None,
    extra: Mapping[str, str | Sequence[str]] | None = None,
) -> RequestContext:
    """The context of a request by `username`; a key given as None or "" is absent.

    An absent key matters: IAM makes a condition on a missing key false (true for the negated
    operators and `...IfExists`), so pass the runtime's target headers only when the request
    carried them.
    """
    values: dict[str, Values] = {
        "aws:username": (username,),
        "aws:securetransport": _TRUE if secure_transport else _FALSE,
    }
    if source_ip:
        values["aws:sourceip"] = (source_ip,)
    if target_container_hostname:
        values["sagemaker:targetcontainerhostname"] = (target_container_hostname,)
    if target_model:
        values["sagemaker:targetmodel"] = (target_model,)
    if target_variant:
        values["sagemaker:targetvariant"] = (target_variant,)
    if inference_component_name:
        values["sagemaker:inferencecomponentname"] = (inference_component_name,)
    if extra:
        for key, given in extra.items():
            items = (given,) if isinstance(given, str) else tuple(given)
            values[key.lower()] = items
    return RequestContext._normalized(values, time.time() if now is None else now)
