"""The dashboard's endpoint table shows an asynchronous endpoint's backlog, in a real browser
(see test_ui_browser), against a real server whose queue uses moto's S3: requests held behind
a slow one appear as waiting, with the oldest one's age, and leave once they are answered."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.asyncinf.test_async_invocations import deploy_async, put_input, wait_object
from tests.http.admin.test_ui_browser import Page, browser, offline_page, wait_for  # noqa: F401
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory


@pytest.fixture(scope="module")
def server(start_server: ServerFactory, s3_server: MotoS3) -> PolyhostProcess:  # noqa: F811
    return start_server(name="dash-async", env=s3_server.env())


def test_an_asynchronous_endpoint_shows_its_backlog(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    offline_page: Page,  # noqa: F811
    tmp_path: Path,
) -> None:
    bucket = s3_server.new_bucket("dash")
    deploy_async(server.sagemaker(), "dash-async", bucket, concurrency=1)
    page = offline_page.page
    page.goto(server.admin_url + "/ui")
    backlog = page.locator('#endpoints tbody tr[data-endpoint="dash-async"] td.backlog')
    backlog.wait_for()
    wait_for(lambda: backlog.inner_text() == "0 waiting", "an empty backlog")
    release = tmp_path / "release"
    runtime = server.runtime()
    answers = [
        runtime.invoke_endpoint_async(
            EndpointName="dash-async",
            InputLocation=put_input(s3_server, bucket, b"x"),
            CustomAttributes=f"hold={release}" if index == 0 else "none=1",
        )
        for index in range(3)
    ]
    wait_for(
        lambda: backlog.inner_text().startswith("3 waiting, oldest "),
        "three requests waiting",
    )
    release.touch()
    for answer in answers:
        wait_object(s3_server, answer["OutputLocation"], timeout=60)
    wait_for(lambda: backlog.inner_text() == "0 waiting", "the backlog to drain")
    assert offline_page.outside == [] and offline_page.errors == []
