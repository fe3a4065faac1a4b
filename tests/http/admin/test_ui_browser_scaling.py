"""The dashboard's auto scaling panel in a real browser (see test_ui_browser): a component with
a scalable target gets a card with its capacity chart, its range and policies, and the scaling
activity that registering it with a higher MinCapacity made."""

from __future__ import annotations

import pytest

from tests.control.test_components import components_endpoint, create_component
from tests.http.admin.test_ui_browser import Page, browser, offline_page, wait_for  # noqa: F401
from tests.support.server import PolyhostProcess, ServerFactory

COPIES = "sagemaker:inference-component:DesiredCopyCount"


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    return start_server(name="dash-scaling")


def test_a_scaled_component_shows_its_chart_and_activities(
    server: PolyhostProcess,
    offline_page: Page,  # noqa: F811
) -> None:
    sagemaker, aas = server.sagemaker(), server.autoscaling()
    components_endpoint(sagemaker, "dash-host", instances=1, instance_type="ml.m5.xlarge")
    create_component(sagemaker, "dash-ic", "dash-host", copies=1, cpus=0.25, memory_mb=128)
    resource = "inference-component/dash-ic"
    aas.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=COPIES,
        MinCapacity=2, MaxCapacity=3,
    )  # fmt: skip
    aas.put_scaling_policy(
        PolicyName="per-copy", ServiceNamespace="sagemaker", ResourceId=resource,
        ScalableDimension=COPIES, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 5.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"
            },
        },
    )  # fmt: skip
    page = offline_page.page
    page.goto(server.admin_url + "/ui")
    card = page.locator(f'.scaling-target[data-resource="{resource}"]')
    card.wait_for()
    assert card.locator(".chart canvas").count() == 1
    ranged = card.locator(".scaling-range")
    wait_for(lambda: "Min 2 · Max 3 · now 2 of 2 copies" in ranged.inner_text(), "two copies")
    policies = card.locator(".scaling-policies").inner_text()
    assert (
        "per-copy (TargetTrackingScaling, SageMakerInferenceComponentInvocationsPerCopy" in policies
    )
    first = card.locator(".activities tbody tr").first
    wait_for(lambda: "Successful" in first.inner_text(), "the activity to succeed")
    text = first.inner_text()
    assert "Setting desired copy count to 2." in text and "minimum capacity was set to 2" in text
    # The chart's legend names both series: the recorded copies beside the invocations.
    legend = card.locator(".u-legend").inner_text()
    assert "copies" in legend and "invocations" in legend
    assert offline_page.outside == [] and offline_page.errors == []
