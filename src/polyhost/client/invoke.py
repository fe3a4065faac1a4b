"""`polyhost invoke`: one InvokeEndpoint call; the answer's bytes go to stdout untouched.

The body comes from the argument, from a file (`@path`) or from stdin (`-`), and is sent as
bytes, so images and numpy payloads pass through as they are. Response metadata (content type,
invoked variant, custom attributes) goes to stderr with --verbose, keeping stdout pipeable.
--target-model names the model of a multi-model endpoint (TargetModel: its archive's path
below the endpoint's prefix).

With --stream the call is InvokeEndpointWithResponseStream: each part is written to stdout (and
flushed) as it arrives, so a model's tokens show as they are generated. A stream that breaks
after some parts leaves those on stdout and fails with the ModelStreamError, as boto3 raises it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from polyhost.client.errors import EXIT_USAGE, CommandFailed

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient


def read_body(argument: str, stdin: BinaryIO | None = None) -> bytes:
    """`-` → stdin, `@path` → the file's bytes, anything else → the text itself as UTF-8."""
    if argument == "-":
        return (stdin or sys.stdin.buffer).read()
    if argument.startswith("@"):
        path = Path(argument[1:]).expanduser()
        try:
            return path.read_bytes()
        except OSError as error:
            raise CommandFailed(
                f"cannot read the body from {path}: {error.strerror or error}", EXIT_USAGE
            ) from None
    return argument.encode("utf-8")


@dataclass(frozen=True)
class InvokeOptions:
    endpoint: str
    body: bytes
    container: str | None = None
    content_type: str | None = None
    accept: str | None = None
    variant: str | None = None
    custom_attributes: str | None = None
    inference_id: str | None = None
    target_model: str | None = None
    stream: bool = False


def invoke(
    runtime: SageMakerRuntimeClient,
    options: InvokeOptions,
    out: BinaryIO,
    err: TextIO,
    verbose: bool = False,
) -> None:
    """Call InvokeEndpoint (InvokeEndpointWithResponseStream with `options.stream`); botocore's
    ClientError (EventStreamError for a broken stream) propagates for the caller to report."""
    kwargs: dict[str, Any] = {"EndpointName": options.endpoint, "Body": options.body}
    for member, value in (
        ("TargetContainerHostname", options.container),
        ("ContentType", options.content_type),
        ("Accept", options.accept),
        ("TargetVariant", options.variant),
        ("CustomAttributes", options.custom_attributes),
        ("InferenceId", options.inference_id),
        ("TargetModel", options.target_model),
    ):
        if value is not None:
            kwargs[member] = value
    if options.stream:
        streamed = runtime.invoke_endpoint_with_response_stream(**kwargs)
        if verbose:
            _metadata(streamed, err)
        events = streamed["Body"]
        try:
            for event in events:
                part = event.get("PayloadPart")
                if part is not None:
                    out.write(part.get("Bytes", b""))
                    out.flush()
        finally:
            events.close()
        return
    answer = runtime.invoke_endpoint(**kwargs)
    stream = answer["Body"]
    try:
        while chunk := stream.read(64 * 1024):
            out.write(chunk)
    finally:
        stream.close()
    out.flush()
    if verbose:
        _metadata(answer, err)


def _metadata(answer: Any, err: TextIO) -> None:
    """The response's metadata, one `Label: value` line each, on stderr."""
    for key, label in (
        ("ContentType", "Content-Type"),
        ("InvokedProductionVariant", "Invoked-Production-Variant"),
        ("CustomAttributes", "Custom-Attributes"),
    ):
        if answer.get(key) is not None:
            print(f"{label}: {answer[key]}", file=err)
