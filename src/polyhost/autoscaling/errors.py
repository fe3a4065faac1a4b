"""Application Auto Scaling's own error codes (its model's error shapes), all HTTP 400 as there.

ValidationException is the taxonomy's own (polyhost.errors): the same code and status."""

from __future__ import annotations

from polyhost.errors import ResourceNotFoundException, ServiceError, ValidationException

__all__ = [
    "ConcurrentUpdateException",
    "InvalidNextTokenException",
    "LimitExceededException",
    "ObjectNotFoundException",
    "ResourceNotFoundException",
    "ValidationException",
]


class ObjectNotFoundException(ServiceError):
    code = "ObjectNotFoundException"
    status = 400


class ConcurrentUpdateException(ServiceError):
    code = "ConcurrentUpdateException"
    status = 400


class LimitExceededException(ServiceError):
    code = "LimitExceededException"
    status = 400


class InvalidNextTokenException(ServiceError):
    code = "InvalidNextTokenException"
    status = 400
