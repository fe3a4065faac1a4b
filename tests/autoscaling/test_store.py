"""The store: what it keeps survives reopening; activities are newest first and pruned."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyhost.autoscaling import store as store_module
from polyhost.autoscaling.store import AutoscalingStore, SchemaTooNew


def target(resource_id: str, created: float = 1.0) -> dict[str, object]:
    return {
        "ResourceId": resource_id,
        "ScalableDimension": "sagemaker:inference-component:DesiredCopyCount",
        "ScalableTargetARN": f"arn:t/{resource_id}",
        "CreationTime": created,
        "MinCapacity": 0,
        "MaxCapacity": 2,
    }


def test_targets_policies_and_actions_survive_reopening(tmp_path: Path) -> None:
    store = AutoscalingStore.open(tmp_path)
    store.put_target(target("inference-component/a"))
    store.put_policy(
        {"PolicyARN": "arn:p", "ResourceId": "inference-component/a", "PolicyName": "p"}
    )
    store.put_scheduled(
        {
            "ScheduledActionARN": "arn:s",
            "ResourceId": "inference-component/a",
            "ScheduledActionName": "s",
        }
    )
    store.close()
    store = AutoscalingStore.open(tmp_path)
    assert store.target("inference-component/a") == target("inference-component/a")
    assert store.target_by_arn("arn:t/inference-component/a") is not None
    assert store.policy("arn:p") is not None and store.policy_named("inference-component/a", "p")
    assert store.scheduled_named("inference-component/a", "s") is not None
    store.delete_target("inference-component/a")
    assert store.policies() == [] and store.scheduled() == [] and store.targets() == []
    store.close()


def test_activities_are_newest_first_updated_in_place_and_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_ACTIVITIES", 3)
    store = AutoscalingStore.open(tmp_path)
    for n in range(5):
        store.put_activity(
            {"ActivityId": f"a{n}", "ResourceId": "r", "StartTime": float(n),
             "StatusCode": "InProgress"}
        )  # fmt: skip
    assert [a["ActivityId"] for a in store.activities("r")] == ["a4", "a3", "a2"]
    store.put_activity(
        {"ActivityId": "a3", "ResourceId": "r", "StartTime": 3.0, "StatusCode": "Successful"}
    )
    assert [a["ActivityId"] for a in store.in_progress()] == ["a2", "a4"]
    store.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    AutoscalingStore.open(tmp_path).close()
    import sqlite3

    with sqlite3.connect(tmp_path / "autoscaling.db") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(SchemaTooNew, match="newer"):
        AutoscalingStore.open(tmp_path)
