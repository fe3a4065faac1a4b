"""CloudWatch's query protocol: the action authorised is the action that runs.

A principal may read CloudWatch but is explicitly denied GetMetricData. Forms that once slipped
a GetMetricData past that Deny (a second Action, an empty first Action, a non-ASCII field that
made the authoriser's reading fail) are refused or denied; the plain form is served.
"""

from __future__ import annotations

import http.client
import json

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.server import REGION, PolyhostProcess, ServerFactory

KEY, SECRET = "AKIAWATCHER000000001", "watcher-secret-key-0123456789abcdef"
WATCHER = {
    "name": "watcher",
    "access_key_id": KEY,
    "secret_access_key": SECRET,
    "policies": [
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "cloudwatch:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "cloudwatch:GetMetricData", "Resource": "*"},
            ],
        }
    ],
}
GET_METRIC_DATA = (
    "MetricDataQueries.member.1.Id=q1"
    "&MetricDataQueries.member.1.MetricStat.Metric.Namespace=AWS%2FSageMaker"
    "&MetricDataQueries.member.1.MetricStat.Metric.MetricName=Invocations"
    "&MetricDataQueries.member.1.MetricStat.Period=60"
    "&MetricDataQueries.member.1.MetricStat.Stat=Sum"
    "&StartTime=2026-01-01T00%3A00%3A00Z&EndTime=2026-01-01T01%3A00%3A00Z"
)


@pytest.fixture(scope="module")
def server(
    start_server: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> PolyhostProcess:
    auth_file = tmp_path_factory.mktemp("query-auth") / "principals.json"
    auth_file.write_text(json.dumps({"principals": [WATCHER]}), encoding="utf-8")
    return start_server("--auth-file", str(auth_file), name="query-action")


def post_form(server: PolyhostProcess, form: str | bytes) -> tuple[int, str]:
    """POST a signed query-protocol form exactly as given; the status and the error code."""
    body = form.encode("utf-8") if isinstance(form, str) else form
    request = AWSRequest(
        method="POST",
        url=server.url + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(KEY, SECRET), "monitoring", REGION).add_auth(request)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/", skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", f"127.0.0.1:{server.port}")
    for name, value in request.headers.items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    answer = connection.getresponse()
    text = answer.read().decode("utf-8", "replace")
    connection.close()
    code = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""
    return answer.status, code


def test_a_plain_allowed_action_is_served(server: PolyhostProcess) -> None:
    assert post_form(server, "Action=ListMetrics&Version=2010-08-01") == (200, "")


def test_the_denied_action_is_denied(server: PolyhostProcess) -> None:
    status, code = post_form(server, f"Action=GetMetricData&Version=2010-08-01&{GET_METRIC_DATA}")
    assert (status, code) == (403, "AccessDenied")


@pytest.mark.parametrize(
    "actions",
    ["Action=ListMetrics&Action=GetMetricData", "Action=&Action=GetMetricData"],
    ids=["allowed-then-denied", "empty-then-denied"],
)
def test_a_repeated_action_is_refused_before_it_is_authorised(
    server: PolyhostProcess, actions: str
) -> None:
    status, code = post_form(server, f"{actions}&Version=2010-08-01&{GET_METRIC_DATA}")
    assert (status, code) == (400, "InvalidAction")


def test_a_non_ascii_field_does_not_change_which_action_is_authorised(
    server: PolyhostProcess,
) -> None:
    # Raw UTF-8, not percent-encoded: a reader that wants ASCII fails on it, and must not
    # then fall back to authorising some other action.
    form = f"Action=GetMetricData&Version=2010-08-01&{GET_METRIC_DATA}"
    form += "&MetricDataQueries.member.1.Label=café"
    assert post_form(server, form) == (403, "AccessDenied")


def test_an_empty_action_is_refused(server: PolyhostProcess) -> None:
    assert post_form(server, "Action=&Version=2010-08-01") == (400, "InvalidAction")


def test_a_body_that_is_not_utf8_is_refused_before_it_is_authorised(
    server: PolyhostProcess,
) -> None:
    form = f"Action=GetMetricData&Version=2010-08-01&{GET_METRIC_DATA}".encode() + b"&X=\xff"
    assert post_form(server, form) == (400, "InvalidParameterValue")
