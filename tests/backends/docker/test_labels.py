"""Labels and the server id: what lets a restarted server find exactly its own containers."""

from __future__ import annotations

from pathlib import Path

from polyhost.backends.docker import labels


def test_the_server_id_is_made_once_and_kept_in_the_state_folder(tmp_path: Path) -> None:
    first = labels.server_id(tmp_path)
    assert labels.server_id(tmp_path) == first
    assert (tmp_path / "server-id").read_text().strip() == first
    assert labels.server_id(tmp_path / "other") != first


def test_a_damaged_server_id_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "server-id").write_text("../../etc\n")
    made = labels.server_id(tmp_path)
    assert made != "../../etc" and len(made) == 16


def test_labels_name_the_endpoint_variant_instance_and_hostname() -> None:
    found = labels.labels("abc", "ep-1.r3.AllTraffic.i-0.model-a")
    assert found == {
        labels.SERVER: "abc",
        labels.CONTAINER_ID: "ep-1.r3.AllTraffic.i-0.model-a",
        labels.ENDPOINT: "ep-1",
        labels.VARIANT: "AllTraffic",
        labels.INSTANCE: "i-0",
        labels.HOSTNAME: "model-a",
    }
    assert labels.labels("abc", "odd") == {labels.SERVER: "abc", labels.CONTAINER_ID: "odd"}


def test_container_names_are_unique_safe_and_bounded() -> None:
    assert labels.container_name("abc", "e.r1.v.i-0.h") == "polyhost-abc-e.r1.v.i-0.h"
    long_a = labels.container_name("abc", "a" * 300 + "x")
    long_b = labels.container_name("abc", "a" * 300 + "y")
    assert len(long_a) <= labels.MAX_NAME and long_a != long_b
    assert labels.container_name("abc", "a b/c") == "polyhost-abc-a_b_c"
