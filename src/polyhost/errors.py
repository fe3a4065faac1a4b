"""One error taxonomy shared by every wire adapter.

The core raises these; `http/errors.py` puts them on the wire, once per protocol (AWS JSON 1.1
for the control plane and polyhost's own routes, rest-json for the runtime). Codes, statuses
and wording follow SageMaker (docs/contract.md), so clients such as botocore's waiters that
match on them behave as they do against SageMaker.
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """An error a caller sees: one code, one HTTP status, a message that says what to fix.

    Each subclass is one code and one status. How it goes onto the wire is the adapter's
    business (`http/errors.py`): AWS JSON 1.1 sends `{"__type", "message"}`, rest-json sends an
    `x-amzn-ErrorType` header and `{"message", ...body_fields()}`.
    """

    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body_fields(self) -> dict[str, object]:
        """Members of the JSON error body beyond `message` (ModelError adds some)."""
        return {}

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Headers the answer needs besides the error type (e.g. `Allow` on a 405)."""
        return []


class InternalFailure(ServiceError):
    """Something failed inside polyhost; the log has the traceback, the wire never does."""

    code = "InternalFailure"
    status = 500


class ValidationException(ServiceError):
    """Bad input, and also (as on SageMaker) a missing resource or a duplicate name."""

    code = "ValidationException"
    status = 400


class ResourceNotFound(ServiceError):
    code = "ResourceNotFound"
    status = 400


class ResourceInUse(ServiceError):
    code = "ResourceInUse"
    status = 400


class ResourceLimitExceeded(ServiceError):
    code = "ResourceLimitExceeded"
    status = 400


class ConflictException(ServiceError):
    code = "ConflictException"
    status = 400


class UnknownOperationException(ServiceError):
    code = "UnknownOperationException"
    status = 400


class SerializationException(ServiceError):
    """The request body is not the JSON object the operation expects."""

    code = "SerializationException"
    status = 400


class NoSuchRoute(ServiceError):
    """A path polyhost does not serve."""

    code = "UnknownOperationException"
    status = 404


class MethodNotAllowed(ServiceError):
    """A known path asked with the wrong method; the answer names the one to use."""

    code = "UnknownOperationException"
    status = 405

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"allow", self.allow.encode())]


class NotFound(ServiceError):
    """A polyhost-only route found nothing to read (an unknown endpoint's logs, say)."""

    code = "ValidationException"
    status = 404


# -- the runtime (InvokeEndpoint) ---------------------------------------------------------------
class InvokeValidationError(ServiceError):
    code = "ValidationError"
    status = 400


class ModelError(ServiceError):
    """The container answered with an error, timed out, or could not be reached mid-request."""

    code = "ModelError"
    status = 424

    def __init__(
        self,
        message: str,
        *,
        original_status_code: int | None = None,
        original_message: str | None = None,
        log_stream_arn: str | None = None,
    ) -> None:
        super().__init__(message)
        self.original_status_code = original_status_code
        self.original_message = original_message
        self.log_stream_arn = log_stream_arn

    def body_fields(self) -> dict[str, object]:
        fields: dict[str, object] = {}
        if self.original_status_code is not None:
            fields["OriginalStatusCode"] = self.original_status_code
        if self.original_message is not None:
            fields["OriginalMessage"] = self.original_message
        if self.log_stream_arn is not None:
            fields["LogStreamArn"] = self.log_stream_arn
        return fields


class ModelNotReadyException(ServiceError):
    code = "ModelNotReadyException"
    status = 429


class ThrottlingException(ServiceError):
    """AWS's common throttling error (a serverless variant past its MaxConcurrency)."""

    code = "ThrottlingException"
    status = 400


class ServiceUnavailable(ServiceError):
    code = "ServiceUnavailable"
    status = 503


class StateDirUnwritable(ServiceUnavailable):
    """A control-plane write the state dir's disk could not take (full, or failing): nothing
    was changed. A 503 rather than InternalFailure because the fault is the machine's, it
    passes once space is freed, and the message can say where: the operator needs the folder,
    not a pointer to the server log."""


# -- CloudWatch (the metric history's read API) ---------------------------------------------------
# Codes are CloudWatch's query-protocol codes (its model's `error.code`), which botocore reports
# whatever protocol the client speaks.
class InvalidParameterValue(ServiceError):
    code = "InvalidParameterValue"
    status = 400


class InvalidParameterCombination(ServiceError):
    code = "InvalidParameterCombination"
    status = 400


class MissingParameter(ServiceError):
    code = "MissingParameter"
    status = 400


class InvalidNextToken(ServiceError):
    code = "InvalidNextToken"
    status = 400


class InvalidAction(ServiceError):
    """A query-protocol request naming an Action CloudWatch's API here does not serve."""

    code = "InvalidAction"
    status = 400


class InternalServiceError(ServiceError):
    """CloudWatch's name for an unexpected failure (its InternalServiceFault)."""

    code = "InternalServiceError"
    status = 500


# -- the admin listener (/metrics, the dashboard's JSON API) --------------------------------------
class AdminUnauthorized(ServiceError):
    """The admin listener wants `Authorization: Bearer <token>` and did not get the right one.

    One answer for a missing, malformed or wrong token, so a caller learns nothing about which.
    """

    code = "UnauthorizedException"
    status = 401

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"www-authenticate", b'Bearer realm="polyhost-admin"')]


# -- CloudWatch Logs (the container logs' read API) ----------------------------------------------
# Codes are CloudWatch Logs' own (its model's error shapes), all HTTP 400 as there.
class InvalidParameterException(ServiceError):
    code = "InvalidParameterException"
    status = 400


class ResourceNotFoundException(ServiceError):
    code = "ResourceNotFoundException"
    status = 400
