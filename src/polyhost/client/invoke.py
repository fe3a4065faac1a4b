"""`polyhost invoke`: one InvokeEndpoint call; the answer's bytes go to stdout untouched.

The body comes from the argument, from a file (`@path`) or from stdin (`-`), and is sent as
bytes, so images and numpy payloads pass through as they are. Response metadata (content type,
invoked variant, custom attributes) goes to stderr with --verbose, keeping stdout pipeable.
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


def invoke(
    runtime: SageMakerRuntimeClient,
    options: InvokeOptions,
    out: BinaryIO,
    err: TextIO,
    verbose: bool = False,
) -> None:
    """Call InvokeEndpoint; botocore's ClientError propagates for the caller to report."""
    kwargs: dict[str, Any] = {"EndpointName": options.endpoint, "Body": options.body}
    for member, value in (
        ("TargetContainerHostname", options.container),
        ("ContentType", options.content_type),
        ("Accept", options.accept),
        ("TargetVariant", options.variant),
        ("CustomAttributes", options.custom_attributes),
        ("InferenceId", options.inference_id),
    ):
        if value is not None:
            kwargs[member] = value
    answer = runtime.invoke_endpoint(**kwargs)
    stream = answer["Body"]
    try:
        while chunk := stream.read(64 * 1024):
            out.write(chunk)
    finally:
        stream.close()
    out.flush()
    if verbose:
        for key, label in (
            ("ContentType", "Content-Type"),
            ("InvokedProductionVariant", "Invoked-Production-Variant"),
            ("CustomAttributes", "Custom-Attributes"),
        ):
            if answer.get(key) is not None:
                print(f"{label}: {answer[key]}", file=err)  # type: ignore[literal-required]
