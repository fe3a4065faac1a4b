"""Smithy RPC v2 CBOR, as botocore's `RpcV2CBORSerializer` and `RpcV2CBORParser` speak it.

Requests: `POST /service/{targetPrefix}/operation/{Operation}`, headers
`smithy-protocol: rpc-v2-cbor` and `Content-Type: application/cbor`, the input as one CBOR map
(timestamps as tag 1, epoch seconds). Answers: `Content-Type: application/cbor`, the same
`smithy-protocol` header, the output as a CBOR map; errors as a map with `__type`
(`namespace#ShapeName`) and `message`, which botocore's parser reads.

cbor2 decodes: it refuses containers nested past its depth limit and lengths the body cannot
hold. Of its semantic tags only tag 1 (epoch time) is decoded; every other one stays a plain
`CBORTag` (which no member accepts): shared references (28/29) could make a small body expand
exponentially when walked, rationals (30) cost a gcd of huge numbers, and nothing CloudWatch
sends uses them. So a hostile body costs no more than its (capped) size.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

import cbor2

from polyhost.errors import SerializationException
from polyhost.metrics.cloudwatch_api import Timestamp

CONTENT_TYPE = b"application/cbor"
PROTOCOL_HEADER = (b"smithy-protocol", b"rpc-v2-cbor")


# Every tag cbor2 would otherwise decode itself, but epoch time (1).
_RAW_TAGS = (
    0,
    2,
    3,
    4,
    5,
    25,
    28,
    29,
    30,
    35,
    36,
    37,
    52,
    54,
    100,
    256,
    258,
    260,
    261,
    1004,
    55799,
)


def _raw(tag: int) -> Callable[[Any, bool], Any]:
    def keep(value: Any, immutable: bool) -> Any:
        return cbor2.CBORTag(tag, value)

    return keep


_DECODERS = {tag: _raw(tag) for tag in _RAW_TAGS}


def decode_cbor(body: bytes) -> Any:
    if not body:
        return {}
    try:
        value = cbor2.loads(body, semantic_decoders=_DECODERS)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as error:
        raise SerializationException(f"The request body is not valid CBOR: {error}") from None
    if not isinstance(value, dict):
        raise SerializationException(
            f"The request body must be a CBOR map of the operation's members, not "
            f"{type(value).__name__}."
        )
    return value


def _tagged(value: Any) -> Any:
    """`Timestamp`s become datetimes, which cbor2 writes as tag 1 (epoch seconds)."""
    if isinstance(value, Timestamp):
        return value.as_datetime()
    if isinstance(value, dict):
        return {key: _tagged(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tagged(item) for item in value]
    return value


def encode_cbor(value: Any) -> bytes:
    return cbor2.dumps(_tagged(value), datetime_as_timestamp=True, timezone=UTC)
