"""The one error type of the TensorFlow stack: TensorFlow Serving's `{"error": "..."}` body.

TensorFlow Serving answers every failure as `{"error": <message>}` with an HTTP status derived
from the failure's kind (400 bad input, 404 unknown model or version, 415 from SageMaker's front
for other content types). Clients written for SageMaker's TensorFlow container parse that shape,
so every error this stack raises carries it.
"""

from __future__ import annotations

from polyhost.stacks.toolkit.server import InvocationError


class TfsError(InvocationError):
    """A request TensorFlow Serving would refuse; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(status, message, json_key="error")
