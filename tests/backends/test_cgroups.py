"""Finding the cgroup hierarchies from /proc text, and reporting limits that cannot be set."""

from __future__ import annotations

from pathlib import Path

from polyhost.backends import cgroups
from polyhost.backends.base import ResourceLimits

HYBRID_MOUNTINFO = """\
22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

HYBRID_PROC = """\
8:pids:/
4:memory:/jobs/abc
2:cpu,cpuacct:/
0::/
"""


def test_parse_proc_cgroup_maps_every_controller() -> None:
    paths = cgroups.parse_proc_cgroup(HYBRID_PROC + "9:name=systemd:/init.scope\n")
    assert paths["memory"] == "/jobs/abc"
    assert paths["cpu"] == paths["cpuacct"] == "/"
    assert paths[""] == "/"
    assert paths["name=systemd"] == "/init.scope"


def test_parse_mountinfo_keeps_cgroup_mounts_and_unescapes() -> None:
    text = HYBRID_MOUNTINFO + "50 31 0:40 / /mnt/my\\040cgroup rw - cgroup cgroup rw,memory\n"
    mounts = cgroups.parse_mountinfo(text)
    assert [m[0] for m in mounts] == ["cgroup", "cgroup", "cgroup", "cgroup2", "cgroup"]
    assert mounts[-1][2] == Path("/mnt/my cgroup")
    assert "cpuacct" in mounts[0][3]


def test_discover_hybrid_prefers_v2_then_v1(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("hugetlb\n")
    text = HYBRID_MOUNTINFO.replace("/sys/fs/cgroup/unified", str(unified))
    found = cgroups.discover(text, HYBRID_PROC)
    assert [(h.version, h.mountpoint.name) for h in found] == [
        (2, "unified"),
        (1, "cpu,cpuacct"),
        (1, "memory"),
    ]
    memory = found[2]
    assert memory.controllers == frozenset({"memory"})
    assert memory.own_path == "/jobs/abc"
    # The server's own cgroup first, the hierarchy's root as the fallback.
    assert memory.candidates() == [Path("/sys/fs/cgroup/memory/jobs/abc"), memory.mountpoint]
    assert found[1].candidates() == [found[1].mountpoint]


def test_discover_pure_v2_in_a_container_namespace(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mountinfo = f"30 20 0:26 /docker/abc {tmp_path} rw - cgroup2 cgroup2 rw\n"
    found = cgroups.discover(mountinfo, "0::/docker/abc/app\n")
    assert len(found) == 1
    assert found[0].version == 2
    assert {"cpu", "memory"} <= found[0].controllers
    assert found[0].own_path == "/app"


def test_a_limit_that_cannot_be_set_is_reported_and_only_a_tracking_leaf_is_left(
    tmp_path: Path,
) -> None:
    # A plain folder posing as a v1 memory hierarchy: the leaf can be made but it has no
    # memory.limit_in_bytes, as on a kernel without that controller file.
    fake = cgroups.Hierarchy(1, tmp_path, frozenset({"memory"}), "/")
    placement = cgroups.prepare("c1", ResourceLimits(memory_bytes=64 << 20, cpus=1.0), [fake])
    assert "cannot set the limit" in placement.not_enforced["memory"]
    assert placement.not_enforced["cpu"] == "no cgroup cpu controller"
    # No limit went through, but the container is still placed, to be found whole at its stop.
    (leaf,) = placement.leaves
    assert leaf.path == tmp_path / "polyhost" / "c1" and leaf.resources == []
    assert placement.descriptions() == []
    assert placement.remove()
    assert not (tmp_path / "polyhost").exists()


def test_without_limits_a_container_still_gets_a_tracking_cgroup(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    unified.mkdir()
    v1 = cgroups.Hierarchy(1, tmp_path / "memory", frozenset({"memory"}), "/")
    v2 = cgroups.Hierarchy(2, unified, frozenset(), "/")
    (unified / "cgroup.subtree_control").write_text("")
    placement = cgroups.prepare("c1", ResourceLimits(), [v2, v1])
    (leaf,) = placement.leaves  # one is enough to find every process: v2 first
    assert (leaf.path, leaf.version, leaf.resources) == (unified / "polyhost" / "c1", 2, [])
    assert placement.not_enforced == {}
    assert placement.remove()


def test_without_any_hierarchy_there_is_no_cgroup() -> None:
    placement = cgroups.prepare("c1", ResourceLimits(), [])
    assert placement.leaves == [] and placement.not_enforced == {}


def test_a_hierarchy_that_refuses_is_skipped_for_tracking(tmp_path: Path) -> None:
    refusing = cgroups.Hierarchy(1, tmp_path / "missing" / "mount", frozenset({"memory"}), "/")
    (tmp_path / "ok").mkdir()
    fine = cgroups.Hierarchy(1, tmp_path / "ok", frozenset({"cpu"}), "/")
    (leaf,) = cgroups.prepare("c1", ResourceLimits(), [refusing, fine]).leaves
    assert leaf.path == tmp_path / "ok" / "polyhost" / "c1"


def test_format_bytes() -> None:
    assert cgroups.format_bytes(512 << 20) == "512MiB"
    assert cgroups.format_bytes(2 << 30) == "2GiB"
    assert cgroups.format_bytes(1000) == "1000 bytes"
