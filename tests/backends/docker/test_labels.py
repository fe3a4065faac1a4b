"""Labels: what marks a container as this server's, and names it on the daemon."""

from __future__ import annotations

from polyhost.backends.docker import labels


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
