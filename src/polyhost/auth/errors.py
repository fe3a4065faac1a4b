"""Why access was refused, and the AWS error code each refusal carries on each wire.

The same refusal is spelt differently by AWS's protocol families: JSON services (AWS JSON 1.0
and 1.1, rest-json: the SageMaker control plane and runtime, CloudWatch Logs) answer
`InvalidSignatureException`, query-style services (CloudWatch's query and query-compatible
protocols) answer `SignatureDoesNotMatch`. So the verifier raises a protocol-neutral
`SignatureRefused` (a `Refusal` plus AWS's message) and the adapter, which knows its protocol,
turns it into a `ServiceError` with `refused.service_error(protocol)`; `http/errors.py` then puts
that on the wire like any other error.

Messages follow AWS's wording and never say which part of a request failed to match its
signature, so a refusal teaches a forger nothing. `SignatureRefused.detail` says more for the
server log; it never goes on the wire.
"""

from __future__ import annotations

import enum

from polyhost.errors import ServiceError


class WireProtocol(enum.Enum):
    """The protocol family an adapter speaks, which decides how a refusal is spelt."""

    JSON = "json"  # awsJson1_0, awsJson1_1, rest-json: codes end in "Exception"
    QUERY = "query"  # awsQuery and query-compatible protocols (CloudWatch)


class Refusal(enum.Enum):
    """A protocol-neutral reason: the adapter maps it to a code with `code_for`."""

    MISSING_AUTHENTICATION = "missing-authentication"
    INCOMPLETE_SIGNATURE = "incomplete-signature"
    UNRECOGNIZED_CLIENT = "unrecognized-client"
    INVALID_SIGNATURE = "invalid-signature"


# -- the codes, one class each so `http/errors.py` encodes them like any ServiceError ------------
class MissingAuthenticationTokenException(ServiceError):
    code = "MissingAuthenticationTokenException"
    status = 403


class IncompleteSignatureException(ServiceError):
    code = "IncompleteSignatureException"
    status = 403


class UnrecognizedClientException(ServiceError):
    code = "UnrecognizedClientException"
    status = 403


class InvalidSignatureException(ServiceError):
    code = "InvalidSignatureException"
    status = 403


class AccessDeniedException(ServiceError):
    code = "AccessDeniedException"
    status = 403


class MissingAuthenticationToken(ServiceError):
    code = "MissingAuthenticationToken"
    status = 403


class IncompleteSignature(ServiceError):
    code = "IncompleteSignature"
    status = 403


class InvalidClientTokenId(ServiceError):
    code = "InvalidClientTokenId"
    status = 403


class SignatureDoesNotMatch(ServiceError):
    code = "SignatureDoesNotMatch"
    status = 403


class AccessDenied(ServiceError):
    code = "AccessDenied"
    status = 403


_ERRORS: dict[tuple[Refusal, WireProtocol], type[ServiceError]] = {
    (Refusal.MISSING_AUTHENTICATION, WireProtocol.JSON): MissingAuthenticationTokenException,
    (Refusal.INCOMPLETE_SIGNATURE, WireProtocol.JSON): IncompleteSignatureException,
    (Refusal.UNRECOGNIZED_CLIENT, WireProtocol.JSON): UnrecognizedClientException,
    (Refusal.INVALID_SIGNATURE, WireProtocol.JSON): InvalidSignatureException,
    (Refusal.MISSING_AUTHENTICATION, WireProtocol.QUERY): MissingAuthenticationToken,
    (Refusal.INCOMPLETE_SIGNATURE, WireProtocol.QUERY): IncompleteSignature,
    (Refusal.UNRECOGNIZED_CLIENT, WireProtocol.QUERY): InvalidClientTokenId,
    (Refusal.INVALID_SIGNATURE, WireProtocol.QUERY): SignatureDoesNotMatch,
}

MISSING_TOKEN_MESSAGE = "Missing Authentication Token"
UNRECOGNIZED_MESSAGE = "The security token included in the request is invalid."
SIGNATURE_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)


def code_for(reason: Refusal, protocol: WireProtocol) -> str:
    """The AWS error code of `reason` on `protocol`."""
    return _ERRORS[reason, protocol].code


class SignatureRefused(Exception):
    """A request whose signature polyhost does not accept: always HTTP 403.

    `message` is what AWS would say and is safe to send; `detail` is for the server log only
    (it may name the part of the request that did not verify, which the wire never does).
    """

    status = 403

    def __init__(self, reason: Refusal, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.detail = detail or message

    def code(self, protocol: WireProtocol) -> str:
        return code_for(self.reason, protocol)

    def service_error(self, protocol: WireProtocol) -> ServiceError:
        """This refusal as the `ServiceError` an adapter of `protocol` answers with."""
        return _ERRORS[self.reason, protocol](self.message)


def access_denied(
    protocol: WireProtocol,
    *,
    account_id: str,
    username: str,
    action: str,
    resource: str,
    explicit: bool,
) -> ServiceError:
    """The answer to a request its principal's policies do not allow, worded as IAM words it.

    IAM names the caller, the action and the resource, and whether an explicit Deny or the lack
    of an Allow decided; it does not name the statement (the CLI's explain view does that).
    """
    reason = (
        "with an explicit deny in an identity-based policy"
        if explicit
        else f"because no identity-based policy allows the {action} action"
    )
    message = (
        f"User: arn:aws:iam::{account_id}:user/{username} is not authorized to perform: "
        f"{action} on resource: {resource} {reason}"
    )
    if protocol is WireProtocol.QUERY:
        return AccessDenied(message)
    return AccessDeniedException(message)


class PolicyError(ValueError):
    """A policy document or principals file that cannot be used, with where and what is wrong.

    The message names the principal, the policy and statement (index and Sid) and the element;
    it never contains a secret access key or session token.
    """
