"""The codes of each refusal on each wire, and IAM's wording of an access denial."""

from __future__ import annotations

import pytest

from polyhost.auth.errors import Refusal, WireProtocol, access_denied, code_for
from polyhost.errors import ServiceError


@pytest.mark.parametrize(
    ("reason", "json_code", "query_code"),
    [
        (
            Refusal.MISSING_AUTHENTICATION,
            "MissingAuthenticationTokenException",
            "MissingAuthenticationToken",
        ),
        (Refusal.INCOMPLETE_SIGNATURE, "IncompleteSignatureException", "IncompleteSignature"),
        (Refusal.UNRECOGNIZED_CLIENT, "UnrecognizedClientException", "InvalidClientTokenId"),
        (Refusal.INVALID_SIGNATURE, "InvalidSignatureException", "SignatureDoesNotMatch"),
    ],
)
def test_every_refusal_has_a_code_per_protocol(
    reason: Refusal, json_code: str, query_code: str
) -> None:
    assert code_for(reason, WireProtocol.JSON) == json_code
    assert code_for(reason, WireProtocol.QUERY) == query_code


def test_access_denied_for_want_of_an_allow() -> None:
    error = access_denied(
        WireProtocol.JSON,
        account_id="111122223333",
        username="alice",
        action="sagemaker:InvokeEndpoint",
        resource="arn:aws:sagemaker:us-east-1:111122223333:endpoint/e",
        explicit=False,
    )
    assert isinstance(error, ServiceError)
    assert (error.code, error.status) == ("AccessDeniedException", 403)
    assert error.message == (
        "User: arn:aws:iam::111122223333:user/alice is not authorized to perform: "
        "sagemaker:InvokeEndpoint on resource: arn:aws:sagemaker:us-east-1:111122223333:endpoint/e "
        "because no identity-based policy allows the sagemaker:InvokeEndpoint action"
    )


def test_access_denied_by_an_explicit_deny_on_a_query_wire() -> None:
    error = access_denied(
        WireProtocol.QUERY,
        account_id="1",
        username="bob",
        action="cloudwatch:GetMetricData",
        resource="*",
        explicit=True,
    )
    assert error.code == "AccessDenied"
    assert error.message.endswith("with an explicit deny in an identity-based policy")
