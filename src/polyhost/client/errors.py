"""How client commands fail: one exception carrying the message and exit status, and the
translation of botocore's errors into lines a person can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandFailed(Exception):
    """Ends a command: `message` goes to stderr, `exit_code` becomes the process status."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")) or str(error)


def is_not_found(error: ClientError) -> bool:
    """SageMaker answers a missing resource with ValidationException 'Could not find ...'."""
    code = error_code(error)
    if code in ("ResourceNotFound", "ResourceNotFoundException"):
        return True
    return code == "ValidationException" and "could not find" in error_message(error).lower()


def is_already_existing(error: ClientError) -> bool:
    return "cannot create already existing" in error_message(error).lower()


def describe_client_error(error: ClientError) -> str:
    """`Code: message`, plus the container's own status/message/log stream for a ModelError."""
    response: dict[str, Any] = dict(error.response)
    lines = [f"{error_code(error)}: {error_message(error)}"]
    for key in ("OriginalStatusCode", "OriginalMessage", "LogStreamArn"):
        if response.get(key) not in (None, ""):
            lines.append(f"  {key}: {response[key]}")
    return "\n".join(lines)
