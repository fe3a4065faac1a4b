"""The AWS query protocol, as botocore's `QuerySerializer` and `QueryParser` speak it.

Requests: `POST /`, `Content-Type: application/x-www-form-urlencoded`, a form body with
`Action=<Operation>&Version=2010-08-01` and the parameters flattened (`Dimensions.member.1.Name`,
timestamps in ISO 8601). Answers: XML `<{Op}Response xmlns=...><{Op}Result>...</{Op}Result>
<ResponseMetadata><RequestId/></ResponseMetadata></{Op}Response>`, lists as `<member>`, maps as
`<entry><key/><value/></entry>`, members in the model's order; errors as
`<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from polyhost.awsmodel.shapes import Schema, Shape
from polyhost.errors import InvalidAction, InvalidParameterValue, ServiceError
from polyhost.http.aws.cloudwatch_model import API_VERSION, XML_NAMESPACE, CloudWatchModel
from polyhost.metrics.cloudwatch_api import Timestamp

CONTENT_TYPE = b"text/xml"
FORM_TYPE = b"application/x-www-form-urlencoded"
# Where the auth middleware leaves its reading of a form (`parse_form`) for the adapter.
QUERY_FORM_KEY = "polyhost.query_form"
MAX_FIELDS = 20_000  # 500 queries of GetMetricData with their dimensions fit well within
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def parse_form(body: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The Action and the other fields of a form body: one Action, not empty, in UTF-8 form
    data. The auth middleware and the CloudWatch adapter both read a query request with this
    one function, and the adapter reuses the middleware's reading, so what is authorised is
    what runs."""
    try:
        text = body.decode("utf-8")
        fields = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise InvalidParameterValue("The request body must be UTF-8 form data.") from None
    except ValueError:
        raise InvalidParameterValue(
            f"The request has more than {MAX_FIELDS} parameters; send fewer queries per call."
        ) from None
    action = version = None
    rest: list[tuple[str, str]] = []
    for key, value in fields:
        if key == "Action":
            # The action authorised must be the one that runs: a second Action is refused
            # rather than one of the two chosen (the auth middleware parses with this too).
            if action is not None:
                raise InvalidAction(
                    "The request names Action more than once: send one Action=<Operation>."
                )
            action = value
        elif key == "Version":
            version = value
        else:
            rest.append((key, value))
    if not action:
        raise InvalidAction(
            "The request names no Action: send Action=<Operation>&Version=2010-08-01."
        )
    if version is not None and version != API_VERSION:
        raise InvalidParameterValue(
            f"Version {version[:32]} is not served here: CloudWatch's API version is {API_VERSION}."
        )
    return action, rest


def _text(value: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", value))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Timestamp):
        value = value.as_datetime()
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("NaN" if value != value else "Infinity")
    return _text(str(value))


def _xml(schema: Schema, shape: Shape, value: Any, out: list[str]) -> None:
    if shape.type == "structure":
        for name, member in shape.members.items():
            if value.get(name) is not None:
                out.append(f"<{name}>")
                _xml(schema, schema.shape(member), value[name], out)
                out.append(f"</{name}>")
    elif shape.type == "list":
        assert shape.member is not None
        element = schema.shape(shape.member)
        for item in value:
            out.append("<member>")
            _xml(schema, element, item, out)
            out.append("</member>")
    elif shape.type == "map":
        assert shape.key is not None and shape.value is not None
        key_shape, value_shape = schema.shape(shape.key), schema.shape(shape.value)
        for key, item in value.items():
            out.append("<entry><key>")
            _xml(schema, key_shape, key, out)
            out.append("</key><value>")
            _xml(schema, value_shape, item, out)
            out.append("</value></entry>")
    else:
        out.append(_scalar(value))


def xml_answer(
    model: CloudWatchModel, operation: str, answer: dict[str, Any], request_id: str
) -> bytes:
    out = [f'<{operation}Response xmlns="{XML_NAMESPACE}"><{operation}Result>']
    _xml(model.schema, model.output(operation), answer, out)
    out.append(
        f"</{operation}Result><ResponseMetadata><RequestId>{request_id}</RequestId>"
        f"</ResponseMetadata></{operation}Response>"
    )
    return "".join(out).encode()


def xml_error(error: ServiceError, request_id: str) -> bytes:
    fault = "Sender" if error.status < 500 else "Receiver"
    return (
        f'<ErrorResponse xmlns="{XML_NAMESPACE}"><Error><Type>{fault}</Type>'
        f"<Code>{_text(error.code)}</Code><Message>{_text(error.message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
