"""One error taxonomy shared by every wire adapter.

The core raises these; the AWS JSON adapter turns a `ServiceError` into `{"__type", "message"}`
and the runtime adapter turns a `RuntimeServiceError` into an `x-amzn-ErrorType` header plus
`{"message"}` body. Codes, statuses and wording follow SageMaker (see CONTRACT.md), so clients
such as botocore's waiters that match on them behave as they do against SageMaker.
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """A control-plane error: `__type` code, HTTP status and a message that says what to fix."""

    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


class InternalFailureError(ServiceError):
    code = "InternalFailure"
    status = 500


class RuntimeServiceError(Exception):
    """A data-plane (InvokeEndpoint) error, sent as `x-amzn-ErrorType` + `{"message": ...}`."""

    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body_fields(self) -> dict[str, object]:
        """Extra members of the JSON error body beyond `message` (ModelError adds some)."""
        return {}


class InvokeValidationError(RuntimeServiceError):
    code = "ValidationError"
    status = 400


class ModelError(RuntimeServiceError):
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


class ModelNotReadyException(RuntimeServiceError):
    code = "ModelNotReadyException"
    status = 429


class InternalFailure(RuntimeServiceError):
    code = "InternalFailure"
    status = 500


class ServiceUnavailable(RuntimeServiceError):
    code = "ServiceUnavailable"
    status = 503
