"""SigV4 verification against requests signed by botocore itself, one test per attack."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Collection
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from polyhost.auth import sigv4
from polyhost.auth.errors import (
    SIGNATURE_MISMATCH_MESSAGE,
    UNRECOGNIZED_MESSAGE,
    Refusal,
    SignatureRefused,
    WireProtocol,
)
from polyhost.auth.sigv4 import (
    _MEMO_MAX,
    MAX_SKEW_S,
    SigV4Verifier,
    Verified,
    _SigningHmac,
    canonical_query,
    canonical_request,
    header_map,
    signing_key,
)
from tests.auth.helpers import (
    AKID,
    REGION,
    SECRET,
    SIGNED_AT,
    TOKEN,
    TOKEN_AKID,
    TOKEN_SECRET,
    Wire,
    capture_boto3,
    default_principals,
    frozen_signing_time,
    sign,
)

NOW = SIGNED_AT.timestamp()
SAGEMAKER = frozenset({"sagemaker"})
HOSTNAME = "X-Amzn-SageMaker-Target-Container-Hostname"


def verifier(now: float = NOW) -> SigV4Verifier:
    return SigV4Verifier(default_principals().lookup, region=REGION, clock=lambda: now)


def verify(wire: Wire, *, now: float = NOW, services: Collection[str] = SAGEMAKER) -> Verified:
    return verifier(now).verify(
        wire.method, wire.path, wire.query, wire.headers, services=services, body=wire.body
    )


def refusal(wire: Wire, **kwargs: Any) -> SignatureRefused:
    with pytest.raises(SignatureRefused) as caught:
        verify(wire, **kwargs)
    return caught.value


def with_authorization(wire: Wire, transform: str) -> Wire:
    """The request with its Authorization header rewritten by `transform` (old -> new)."""
    old, new = transform.split(" -> ")
    auth = next(v for n, v in wire.headers if n == "Authorization")
    return wire.replacing("Authorization", auth.replace(old, new))


# -- what verifies -----------------------------------------------------------------------------
def test_a_botocore_signed_invocation_verifies_and_names_its_principal() -> None:
    verified = verify(sign(headers={"Content-Type": "text/csv", HOSTNAME: "customIps1"}))
    assert verified.principal.name == "alice"
    assert verified.access_key_id == AKID
    assert (verified.region, verified.service) == (REGION, "sagemaker")
    assert "x-amzn-sagemaker-target-container-hostname" in verified.signed_headers


def test_headers_path_and_query_may_arrive_as_bytes() -> None:
    wire = sign(query="a=1")
    raw = [(n.encode(), v.encode()) for n, v in wire.headers]
    result = verifier().verify(
        wire.method,
        wire.path.encode(),
        wire.query.encode(),
        raw,
        services=SAGEMAKER,
        body=wire.body,
    )
    assert result.principal.name == "alice"


def test_a_precomputed_body_hash_is_as_good_as_the_body() -> None:
    wire = sign()
    digest = hashlib.sha256(wire.body).hexdigest()
    result = verifier().verify(
        wire.method, wire.path, wire.query, wire.headers, services=SAGEMAKER, body_sha256=digest
    )
    assert result.principal.name == "alice"


@pytest.mark.parametrize("given", [{}, {"body": b"", "body_sha256": "00"}])
def test_exactly_one_of_body_and_its_hash(given: dict[str, Any]) -> None:
    wire = sign()
    with pytest.raises(TypeError):
        verifier().verify(
            wire.method, wire.path, wire.query, wire.headers, services=SAGEMAKER, **given
        )


@pytest.mark.parametrize(
    ("service", "operation", "params", "services"),
    [
        ("sagemaker", "list_models", {}, {"sagemaker"}),
        (
            "sagemaker",
            "create_model",
            {"ModelName": "m", "PrimaryContainer": {"Image": "img", "Environment": {"A": "b c"}}},
            {"sagemaker"},
        ),
        (
            "sagemaker-runtime",
            "invoke_endpoint",
            {
                "EndpointName": "My-Endpoint",
                "Body": b"1,2,3",
                "ContentType": "text/csv",
                "Accept": "application/json",
                "CustomAttributes": "tfs-model-name=x, tfs-method=predict",
                "TargetContainerHostname": "customIps1",
                "InferenceId": "id-1",
            },
            {"sagemaker"},
        ),
        ("logs", "describe_log_groups", {"logGroupNamePrefix": "/aws/sagemaker/"}, {"logs"}),
        ("cloudwatch", "list_metrics", {"Namespace": "AWS/SageMaker"}, {"monitoring"}),
    ],
)
def test_what_unmodified_boto3_clients_send_verifies(
    service: str, operation: str, params: dict[str, object], services: set[str]
) -> None:
    wire = capture_boto3(service, operation, params)
    assert verify(wire, services=services).principal.name == "alice"


def test_a_boto3_client_with_a_session_token_verifies() -> None:
    wire = capture_boto3(
        "sagemaker-runtime",
        "invoke_endpoint",
        {"EndpointName": "e", "Body": b"{}"},
        access_key=TOKEN_AKID,
        secret=TOKEN_SECRET,
        token=TOKEN,
    )
    assert verify(wire).principal.name == "tom"


def test_the_date_header_may_stand_in_for_x_amz_date() -> None:
    wire = sign(headers={"Content-Type": "text/csv", "Date": "Fri, 17 May 2024 12:00:00 GMT"})
    assert not any(n.lower() == "x-amz-date" for n, _ in wire.headers)
    assert verify(wire).principal.name == "alice"


# -- the canonical request is botocore's ----------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "query", "headers"),
    [
        ("/", "", {"X-Amz-Target": "SageMaker.ListModels"}),
        ("/endpoints/My-Endpoint/invocations", "", {"Content-Type": "text/csv"}),
        ("/endpoints/a%20b/invocations", "", {}),
        ("/a/./b/../c//d/", "", {}),
        ("/p", "b=2&a=1&a=0&c=", {}),
        ("/p", "k=x%20y&k2=%2F~&k3=%C3%A9", {}),
        ("/p", "", {"X-Custom": "  spaced    out   value  "}),
    ],
)
def test_the_canonical_request_equals_botocores(
    path: str, query: str, headers: dict[str, str]
) -> None:
    wire = sign(path, query=query, headers=headers or {"Content-Type": "a/b"})
    assert wire.signer is not None and wire.request is not None
    mine = _canonical(wire)
    del wire.request.headers["Authorization"]
    with frozen_signing_time(SIGNED_AT):
        assert wire.signer.canonical_request(wire.request) == mine
    assert verify(wire).principal.name == "alice"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("b=2&a=1", "a=1&b=2"),
        ("a=2&a=1", "a=1&a=2"),
        ("flag&x=", "flag=&x="),
        # A client that over-encodes an unreserved character signs what AWS would rebuild.
        ("k=%7E%41", "k=~A"),
        ("k=a b", "k=a%20b"),
        ("k=%2f", "k=%2F"),
    ],
)
def test_the_query_is_decoded_and_re_encoded_as_aws_rebuilds_it(raw: str, canonical: str) -> None:
    assert canonical_query(raw) == canonical


def test_repeated_headers_are_joined_with_commas_as_botocore_does() -> None:
    request = AWSRequest(method="POST", url="http://127.0.0.1:7080/p", data=b"x")
    request.headers["X-Custom"] = "one"
    request.headers["X-Custom"] = "two"  # an HTTPMessage appends: the header now appears twice
    signer = SigV4Auth(Credentials(AKID, SECRET), "sagemaker", REGION)
    with frozen_signing_time(SIGNED_AT):
        signer.add_auth(request)
    wire = Wire("POST", "/p", "", [*request.headers.items(), ("Host", "127.0.0.1:7080")], b"x")
    assert "x-custom:one,two" in _canonical(wire)
    assert verify(wire).principal.name == "alice"


def _canonical(wire: Wire) -> str:
    auth = next(v for n, v in wire.headers if n == "Authorization")
    signed = re.search(r"SignedHeaders=([^,]+)", auth)
    assert signed is not None
    return canonical_request(
        wire.method,
        wire.path,
        wire.query,
        header_map(wire.headers),
        tuple(signed.group(1).split(";")),
        hashlib.sha256(wire.body).hexdigest(),
    )


# -- the attacks -------------------------------------------------------------------------------
def test_an_unsigned_request_is_missing_its_token() -> None:
    refused = refusal(sign().without("Authorization"))
    assert refused.reason is Refusal.MISSING_AUTHENTICATION
    assert refused.message == "Missing Authentication Token"
    assert refused.code(WireProtocol.JSON) == "MissingAuthenticationTokenException"
    assert refused.code(WireProtocol.QUERY) == "MissingAuthenticationToken"
    assert refused.status == 403


def test_an_unknown_access_key_is_unrecognized() -> None:
    refused = refusal(sign(access_key="AKIAUNKNOWNKEY000000"))
    assert refused.reason is Refusal.UNRECOGNIZED_CLIENT
    assert refused.message == UNRECOGNIZED_MESSAGE
    assert refused.code(WireProtocol.JSON) == "UnrecognizedClientException"
    assert refused.code(WireProtocol.QUERY) == "InvalidClientTokenId"


def test_a_signature_made_with_another_secret_does_not_match() -> None:
    refused = refusal(sign(secret="0" * 40))
    assert refused.reason is Refusal.INVALID_SIGNATURE
    assert refused.message == SIGNATURE_MISMATCH_MESSAGE
    assert refused.code(WireProtocol.JSON) == "InvalidSignatureException"
    assert refused.code(WireProtocol.QUERY) == "SignatureDoesNotMatch"


def _tamper_cases() -> list[tuple[str, Wire]]:
    base = sign(query="a=1", headers={"Content-Type": "text/csv", HOSTNAME: "customIps1"})
    return [
        ("body changed", Wire(base.method, base.path, base.query, base.headers, b'{"x": 2}')),
        ("body emptied", Wire(base.method, base.path, base.query, base.headers, b"")),
        ("header changed", base.replacing("Content-Type", "application/json")),
        ("target container changed", base.replacing(HOSTNAME, "special1")),
        ("header value padded inside", base.replacing("Content-Type", "text/ csv")),
        ("host changed", base.replacing("Host", "127.0.0.1:7081")),
        (
            "path changed",
            Wire(base.method, "/endpoints/Other/invocations", base.query, base.headers, base.body),
        ),
        (
            "path case changed",
            Wire(
                base.method,
                "/endpoints/my-endpoint/invocations",
                base.query,
                base.headers,
                base.body,
            ),
        ),
        ("query changed", Wire(base.method, base.path, "a=2", base.headers, base.body)),
        ("query added", Wire(base.method, base.path, "a=1&b=2", base.headers, base.body)),
        ("query dropped", Wire(base.method, base.path, "", base.headers, base.body)),
        ("method changed", Wire("PUT", base.path, base.query, base.headers, base.body)),
        ("signed header duplicated", base.with_header(HOSTNAME, "special1")),
        ("host duplicated", base.with_header("Host", "evil.example")),
        ("content type duplicated", base.with_header("Content-Type", "text/csv")),
        ("signature altered", with_authorization(base, "Signature= -> Signature=0")),
        (
            "signed headers list altered",
            with_authorization(base, "SignedHeaders=content-type; -> SignedHeaders="),
        ),
    ]


@pytest.mark.parametrize(("case", "wire"), _tamper_cases(), ids=[c for c, _ in _tamper_cases()])
def test_any_change_after_signing_is_one_and_the_same_mismatch(case: str, wire: Wire) -> None:
    refused = refusal(wire)
    assert refused.reason is Refusal.INVALID_SIGNATURE, refused.message
    # The message never says what differed: it is the same for every tampering.
    assert refused.message == SIGNATURE_MISMATCH_MESSAGE


def test_a_content_hash_header_must_be_the_body_hash() -> None:
    digest = hashlib.sha256(b"original").hexdigest()
    wire = sign(body=b"original", headers={"X-Amz-Content-SHA256": digest})
    assert verify(wire).principal.name == "alice"
    changed = Wire(wire.method, wire.path, wire.query, wire.headers, b"forged")
    refused = refusal(changed)
    assert (refused.reason, refused.message) == (
        Refusal.INVALID_SIGNATURE,
        SIGNATURE_MISMATCH_MESSAGE,
    )
    assert "x-amz-content-sha256" in refused.detail


def test_an_unsigned_payload_is_refused() -> None:
    wire = sign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    refused = refusal(wire)
    assert (refused.reason, refused.message) == (
        Refusal.INVALID_SIGNATURE,
        SIGNATURE_MISMATCH_MESSAGE,
    )


def test_a_sagemaker_header_added_after_signing_must_have_been_signed() -> None:
    refused = refusal(sign().with_header(HOSTNAME, "special1"))
    assert refused.reason is Refusal.INCOMPLETE_SIGNATURE
    assert refused.message == (
        "'x-amzn-sagemaker-target-container-hostname' must be a 'SignedHeader' in the AWS "
        "Authorization."
    )
    assert refused.code(WireProtocol.JSON) == "IncompleteSignatureException"


def test_an_unrelated_header_added_after_signing_is_harmless() -> None:
    assert verify(sign().with_header("User-Agent", "curl/8")).principal.name == "alice"


def test_stale_date_is_expired_with_awss_message() -> None:
    wire = sign(when=SIGNED_AT - dt.timedelta(minutes=16))
    refused = refusal(wire)
    assert refused.reason is Refusal.INVALID_SIGNATURE
    assert refused.message == (
        "Signature expired: 20240517T114400Z is now earlier than 20240517T114500Z "
        "(20240517T120000Z - 15 min.)"
    )


def test_a_date_in_the_future_is_not_yet_current() -> None:
    refused = refusal(sign(when=SIGNED_AT + dt.timedelta(minutes=16)))
    assert refused.message == (
        "Signature not yet current: 20240517T121600Z is still later than 20240517T121500Z "
        "(20240517T120000Z + 15 min.)"
    )


@pytest.mark.parametrize("minutes", [-15, -14, 0, 14, 15])
def test_a_clock_skew_within_15_minutes_either_way_is_accepted(minutes: int) -> None:
    assert verify(sign(when=SIGNED_AT + dt.timedelta(minutes=minutes))).principal.name == "alice"


def test_a_replay_verifies_within_15_minutes_and_never_after() -> None:
    wire = sign()
    assert verify(wire, now=NOW + 15 * 60).principal.name == "alice"
    refused = refusal(wire, now=NOW + 15 * 60 + 1)
    assert refused.message.startswith("Signature expired: 20240517T120000Z is now earlier than")


def test_signed_for_another_region() -> None:
    refused = refusal(sign(region="eu-west-1"))
    assert refused.reason is Refusal.INVALID_SIGNATURE
    assert refused.message == "Credential should be scoped to a valid region, not 'eu-west-1'."


def test_signed_for_another_service() -> None:
    wire = sign(service="monitoring")
    refused = refusal(wire)
    assert refused.reason is Refusal.INVALID_SIGNATURE
    assert refused.message == "Credential should be scoped to correct service: 'sagemaker'."
    assert verify(wire, services={"monitoring"}).service == "monitoring"


def test_a_scope_date_other_than_the_request_date() -> None:
    wire = sign().replacing("X-Amz-Date", "20240518T120000Z")
    refused = refusal(wire)
    assert refused.reason is Refusal.INVALID_SIGNATURE
    assert refused.message == (
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
        "HTTP: '20240517' != '20240518', from '20240518T120000Z'."
    )


def test_a_wrong_terminator() -> None:
    wire = with_authorization(sign(), "/aws4_request -> /aws5_request")
    assert refusal(wire).message == (
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'."
    )


# -- session tokens ----------------------------------------------------------------------------
def test_a_principal_with_a_session_token_must_send_it() -> None:
    signed = sign(access_key=TOKEN_AKID, secret=TOKEN_SECRET, token=TOKEN)
    assert verify(signed).principal.name == "tom"
    unsent = sign(access_key=TOKEN_AKID, secret=TOKEN_SECRET)
    refused = refusal(unsent)
    assert (refused.reason, refused.message) == (Refusal.UNRECOGNIZED_CLIENT, UNRECOGNIZED_MESSAGE)


def test_a_wrong_session_token_is_refused() -> None:
    wire = sign(access_key=TOKEN_AKID, secret=TOKEN_SECRET, token=TOKEN[:-4] + "AAA=")
    refused = refusal(wire)
    assert (refused.reason, refused.message) == (Refusal.UNRECOGNIZED_CLIENT, UNRECOGNIZED_MESSAGE)


def test_a_session_token_from_a_principal_without_one_is_refused() -> None:
    refused = refusal(sign(token=TOKEN))
    assert (refused.reason, refused.message) == (Refusal.UNRECOGNIZED_CLIENT, UNRECOGNIZED_MESSAGE)


def test_a_session_token_sent_twice_is_refused() -> None:
    wire = sign(access_key=TOKEN_AKID, secret=TOKEN_SECRET, token=TOKEN)
    refused = refusal(wire.with_header("X-Amz-Security-Token", TOKEN))
    assert refused.reason is Refusal.UNRECOGNIZED_CLIENT


def test_the_session_token_may_be_added_after_signing_as_aws_allows() -> None:
    wire = sign(access_key=TOKEN_AKID, secret=TOKEN_SECRET).with_header(
        "X-Amz-Security-Token", TOKEN
    )
    assert verify(wire).principal.name == "tom"


# -- malformed signatures ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (
            "Bearer abc",
            "Authorization header requires the AWS4-HMAC-SHA256 algorithm.",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={AKID}/20240517/us-east-1/sagemaker/aws4_request",
            "Authorization header requires 'Signature' parameter. Authorization header "
            "requires 'SignedHeaders' parameter.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host;x-amz-date, Signature=00",
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            "keyid/date/region/service/term, got 'a/b/c'",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential {AKID}/20240517/us-east-1/sagemaker/aws4_request",
            f"'Credential {AKID}/20240517/us-east-1/sagemaker/aws4_request' not a valid "
            "key=value pair (missing equal-sign) in Authorization header.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, Credential=a/b/c/d/e, SignedHeaders=host, "
            "Signature=00",
            "Authorization header has 'Credential' twice.",
        ),
    ],
)
def test_a_malformed_authorization_header_is_an_incomplete_signature(
    authorization: str, message: str
) -> None:
    refused = refusal(sign().replacing("Authorization", authorization))
    assert refused.reason is Refusal.INCOMPLETE_SIGNATURE
    assert refused.message == message


def test_two_authorization_headers() -> None:
    wire = sign()
    auth = next(v for n, v in wire.headers if n == "Authorization")
    refused = refusal(wire.with_header("Authorization", auth))
    assert refused.reason is Refusal.INCOMPLETE_SIGNATURE


def test_a_request_without_a_date() -> None:
    refused = refusal(sign().without("X-Amz-Date"))
    assert refused.reason is Refusal.INCOMPLETE_SIGNATURE
    assert refused.message == (
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    )


@pytest.mark.parametrize("value", ["2024-05-17T12:00:00Z", "20241317T120000Z", ""])
def test_a_date_not_in_iso_basic_format(value: str) -> None:
    refused = refusal(sign().replacing("X-Amz-Date", value))
    assert refused.reason is Refusal.INCOMPLETE_SIGNATURE
    assert refused.message == f"Date must be in ISO-8601 'basic format'. Got '{value}'."


def test_a_repeated_date_header() -> None:
    refused = refusal(sign().with_header("X-Amz-Date", "20240517T120000Z"))
    assert refused.reason is Refusal.INCOMPLETE_SIGNATURE


def test_host_must_be_signed() -> None:
    wire = with_authorization(
        sign(), "SignedHeaders=content-type;host; -> SignedHeaders=content-type;"
    )
    refused = refusal(wire)
    assert refused.reason is Refusal.INCOMPLETE_SIGNATURE
    assert (
        refused.message
        == "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    )


def test_the_date_must_be_signed() -> None:
    wire = with_authorization(sign(), ";x-amz-date -> ")
    refused = refusal(wire)
    assert refused.message == "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."


def test_a_signed_header_must_be_present() -> None:
    refused = refusal(sign().without("Content-Type"))
    assert refused.reason is Refusal.INCOMPLETE_SIGNATURE
    assert refused.message == (
        "'content-type' is named as a SignedHeader, but it does not exist in the HTTP request."
    )


# -- the adapter's side --------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", list(WireProtocol))
def test_a_refusal_becomes_a_403_service_error_of_the_adapters_protocol(
    protocol: WireProtocol,
) -> None:
    refused = refusal(sign(secret="0" * 40))
    error = refused.service_error(protocol)
    assert (error.code, error.status, error.message) == (
        refused.code(protocol),
        403,
        SIGNATURE_MISMATCH_MESSAGE,
    )


def test_no_refusal_ever_carries_the_secret() -> None:
    wires = [
        sign(secret="0" * 40),
        sign().without("Authorization"),
        *(w for _, w in _tamper_cases()),
    ]
    for wire in wires:
        refused = refusal(wire)
        for text in (refused.message, refused.detail, str(refused), repr(refused)):
            assert SECRET not in text and TOKEN_SECRET not in text


# -- what a verifier memoises never changes an answer ----------------------------------------------
def _tamper_base() -> Wire:
    return sign(query="a=1", headers={"Content-Type": "text/csv", HOSTNAME: "customIps1"})


def _warm(clock: Any = lambda: NOW) -> SigV4Verifier:
    """A verifier that has just verified `_tamper_base()`: its memos hold that request's
    Authorization header (all but the signature), date, path and signing key."""
    warm = SigV4Verifier(default_principals().lookup, region=REGION, clock=clock)
    base = _tamper_base()
    warm.verify(
        base.method, base.path, base.query, base.headers, services=SAGEMAKER, body=base.body
    )
    return warm


def _outcome(checker: SigV4Verifier, wire: Wire) -> tuple[Refusal, str] | str:
    try:
        verified = checker.verify(
            wire.method, wire.path, wire.query, wire.headers, services=SAGEMAKER, body=wire.body
        )
    except SignatureRefused as refused:
        return refused.reason, refused.message
    return verified.principal.name


@pytest.mark.parametrize(("case", "wire"), _tamper_cases(), ids=[c for c, _ in _tamper_cases()])
def test_after_a_verified_request_every_change_still_fails(case: str, wire: Wire) -> None:
    outcome = _outcome(_warm(), wire)
    assert outcome == (Refusal.INVALID_SIGNATURE, SIGNATURE_MISMATCH_MESSAGE)
    assert outcome == _outcome(verifier(), wire)  # exactly what a fresh verifier answers


@pytest.mark.parametrize(
    "transform",
    [
        "Signature= -> Signature=",  # unchanged: verifies
        "Signature= -> Signature=0",
        ", Signature= -> , Signature=  ",
        ", Signature= -> ,Signature=",
        ", Signature= -> , signature=",
        ", Signature= -> , Signature=x, Signature=",
        ", Signature= -> , Signature==",
        ", Signature= -> , Signature=, Extra=1, Signature=",
        ", Signature= -> , Signature=x,",
        "Credential= -> Signature=x, Credential=",
        "SignedHeaders= -> Signature=y, SignedHeaders=",
        ", Signature= -> , Signature",
        "AWS4-HMAC-SHA256 -> AWS4-HMAC-SHA256 ",
    ],
)
def test_an_authorization_header_sharing_a_memoised_prefix_parses_as_in_full(
    transform: str,
) -> None:
    wire = with_authorization(_tamper_base(), transform)
    if transform == ", Signature= -> , Signature=  ":
        # The signature emptied: a header whose last part is an empty Signature.
        auth = next(v for n, v in wire.headers if n == "Authorization")
        wire = wire.replacing("Authorization", auth[: auth.rindex("Signature=") + 10] + "  ")
    assert _outcome(_warm(), wire) == _outcome(verifier(), wire)


def test_the_time_window_applies_after_a_memoised_success() -> None:
    now = [NOW]
    warm = _warm(clock=lambda: now[0])
    base = _tamper_base()
    for moment, expected in [
        (NOW + MAX_SKEW_S - 1, "alice"),
        (NOW + MAX_SKEW_S + 1, Refusal.INVALID_SIGNATURE),
        (NOW - MAX_SKEW_S - 1, Refusal.INVALID_SIGNATURE),
        (NOW, "alice"),
    ]:
        now[0] = moment
        outcome = _outcome(warm, base)
        assert (outcome if isinstance(outcome, str) else outcome[0]) == expected, moment


def test_requests_of_other_seconds_and_malformed_dates_after_a_memoised_date() -> None:
    warm = _warm()
    later = sign(
        query="a=1",
        headers={"Content-Type": "text/csv", HOSTNAME: "customIps1"},
        when=SIGNED_AT + dt.timedelta(seconds=1),
    )
    assert _outcome(warm, later) == "alice"
    # The same date as the memoised one, but with the other request's signature: a mismatch.
    mixed = later.replacing("X-Amz-Date", "20240517T120000Z")
    assert _outcome(warm, mixed) == (Refusal.INVALID_SIGNATURE, SIGNATURE_MISMATCH_MESSAGE)
    broken = _tamper_base().replacing("X-Amz-Date", "20240517T120000")
    assert _outcome(warm, broken) == _outcome(verifier(), broken)
    assert _outcome(warm, broken)[0] is Refusal.INCOMPLETE_SIGNATURE


def test_a_verified_request_names_the_principal_its_key_names_now() -> None:
    first, second = default_principals(), default_principals()
    current = [first]
    checker = SigV4Verifier(lambda key: current[0].lookup(key), region=REGION, clock=lambda: NOW)
    base = _tamper_base()
    args = (base.method, base.path, base.query, base.headers)
    assert (
        checker.verify(*args, services=SAGEMAKER, body=base.body).principal
        is (first.by_access_key[AKID])
    )
    current[0] = second
    assert (
        checker.verify(*args, services=SAGEMAKER, body=base.body).principal
        is (second.by_access_key[AKID])
    )


@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 65, 300, 5000])
def test_the_precomputed_hmac_is_hmac_sha256(length: int) -> None:
    key = signing_key(SECRET, "20240517", REGION, "sagemaker")
    message = bytes(range(256)) * (length // 256 + 1)
    message = message[:length]
    expected = hmac.new(key, message, "sha256").hexdigest()
    assert _SigningHmac(key).hexdigest(message) == expected


def test_the_memos_stay_bounded_whatever_a_caller_sends() -> None:
    checker = _warm()
    base = _tamper_base()
    for i in range(3 * _MEMO_MAX):
        wire = with_authorization(base, f"SignedHeaders= -> X{i}=1, SignedHeaders=")
        wire = Wire(wire.method, f"/endpoints/e{i}/invocations", "", wire.headers, wire.body)
        _outcome(checker, wire.with_header(f"X-Name-{i}", "v"))
        header_map([(f"x-other-{i}".encode(), b"v")])
    assert len(checker._heads) <= _MEMO_MAX
    assert len(checker._uris) <= _MEMO_MAX
    assert len(sigv4._HEADER_NAMES) <= sigv4._HEADER_NAMES_MAX
    # And they still answer right once full.
    assert _outcome(checker, base) == "alice"
