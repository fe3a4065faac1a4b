"""What a refused boto3 call said, in one order for every test: (code, HTTP status, message)."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from botocore.exceptions import ClientError


class ClientErrorParts(NamedTuple):
    """A tuple, so `client_error(e) == ("ValidationException", 400, "...")` compares whole."""

    code: str
    status: int
    message: str


def client_error(error: ClientError | pytest.ExceptionInfo[ClientError]) -> ClientErrorParts:
    """(code, HTTP status, message) of a ClientError, or of the one `pytest.raises` caught."""
    exception = error.value if isinstance(error, pytest.ExceptionInfo) else error
    assert isinstance(exception, ClientError), exception
    response = exception.response
    return ClientErrorParts(
        code=response["Error"]["Code"],
        status=response["ResponseMetadata"]["HTTPStatusCode"],
        message=response["Error"]["Message"],
    )
