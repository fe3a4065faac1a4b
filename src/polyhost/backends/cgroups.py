"""Memory and CPU limits for container processes through Linux control groups (v2, else v1).

Which cgroup interface a machine offers varies: pure v2 (`/sys/fs/cgroup` is cgroup2), hybrid
(v1 controllers plus a v2 tree that may have none), none at all, or a read-only view inside a
container. So nothing here assumes: each limit is placed where the OS really offers its
controller, and the caller gets an exact account of what was enforced and why the rest was not.

A container gets a `polyhost/<name>` cgroup beneath the server's own cgroup (so limits can only
tighten what the server already has), or beneath the hierarchy's root when the server's own
cgroup cannot take children. The leaf is removed again when the container stops. Its name is
unique per run of a container (the process backend adds the run id), so two servers on one
machine never share a cgroup, nor signal each other's processes through one.

Every container gets a cgroup whenever the machine allows one, limits or not: the kernel keeps
every process a container starts in its cgroup, even one that double-forks and calls `setsid`
to leave its process group, so a stop reaches it (`Placement.pids`). Without limits the cgroup
is a plain "tracking" leaf in the first hierarchy that takes one (v2 first).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from polyhost.backends.base import ResourceLimits

log = logging.getLogger("polyhost.backends.cgroups")

MEMORY = "memory"
CPU = "cpu"
CPU_PERIOD_US = 100_000
PARENT_NAME = "polyhost"


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy and where the server sits in it."""

    version: int  # 1 or 2
    mountpoint: Path
    controllers: frozenset[str]  # v1: the mount's controllers; v2: read from cgroup.controllers
    own_path: str  # the server's cgroup, relative to the mount, e.g. "/" or "/user.slice/x"

    def candidates(self) -> list[Path]:
        """Folders a `polyhost` parent may be created in: the server's own cgroup, then root."""
        own = self.mountpoint / self.own_path.lstrip("/")
        return [own] if own == self.mountpoint else [own, self.mountpoint]


def _unescape(field_text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (`\\040`)."""
    out, i = [], 0
    while i < len(field_text):
        if field_text[i] == "\\" and field_text[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_text[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str, Path, frozenset[str]]]:
    """(fstype, mount root, mountpoint, super options) of every cgroup/cgroup2 mount."""
    mounts: list[tuple[str, str, Path, frozenset[str]]] = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        if not sep:
            continue
        left, right = before.split(), after.split()
        if len(left) < 5 or len(right) < 3 or right[0] not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(right[2].split(","))
        mounts.append((right[0], _unescape(left[3]), Path(_unescape(left[4])), options))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Controller name → the process's cgroup path; the v2 (unified) entry is under ""."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
        for name in controllers.split(","):
            if name:
                paths[name] = path
    return paths


def _relative(own: str, mount_root: str) -> str:
    """A cgroup path as seen inside a mount whose root is a sub-tree (bind mounts, namespaces)."""
    if mount_root in ("", "/"):
        return own
    if own == mount_root or own.startswith(mount_root.rstrip("/") + "/"):
        return own[len(mount_root.rstrip("/")) :] or "/"
    return own


def discover(mountinfo_text: str, proc_cgroup_text: str) -> list[Hierarchy]:
    """The hierarchies that could hold limits: v2 first (when it has controllers), then v1."""
    own = parse_proc_cgroup(proc_cgroup_text)
    found: list[Hierarchy] = []
    for fstype, root, mountpoint, options in parse_mountinfo(mountinfo_text):
        if fstype == "cgroup2":
            if "" not in own:
                continue
            try:
                offered = (mountpoint / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            found.append(Hierarchy(2, mountpoint, frozenset(offered), _relative(own[""], root)))
        else:
            names = frozenset(o for o in options if o in (MEMORY, CPU))
            if not names:
                continue
            path = next((own[name] for name in sorted(names) if name in own), None)
            if path is not None:
                found.append(Hierarchy(1, mountpoint, names, _relative(path, root)))
    found.sort(key=lambda h: -h.version)
    return found


def discover_here() -> list[Hierarchy]:
    """`discover` for this machine and this process; empty when cgroups are not mounted."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        return []
    return discover(mountinfo, proc_cgroup)


def _write(path: Path, value: str) -> None:
    """cgroupfs files take one write(2) each; buffered writes could split a value."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def format_bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size and count % size == 0:
            return f"{count // size}{unit}"
    return f"{count} bytes"


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _enable_subtree(folder: Path, controllers: set[str]) -> None:
    """v2: let `folder`'s children use `controllers` (a no-op when they already may)."""
    if not controllers:
        return
    enabled = set((folder / "cgroup.subtree_control").read_text().split())
    wanted = controllers - enabled
    if wanted:
        _write(folder / "cgroup.subtree_control", " ".join(f"+{name}" for name in sorted(wanted)))


def _make_leaf(hierarchy: Hierarchy, container_id: str, controllers: set[str]) -> Path:
    """Create `<candidate>/polyhost/<container_id>`, trying each candidate folder in turn."""
    last: OSError | None = None
    for base in hierarchy.candidates():
        for _attempt in range(3):  # a sibling's cleanup may remove an empty parent under us
            try:
                parent = base / PARENT_NAME
                if hierarchy.version == 2:
                    _enable_subtree(base, controllers)
                parent.mkdir(exist_ok=True)
                if hierarchy.version == 2:
                    _enable_subtree(parent, controllers)
                leaf = parent / container_id
                leaf.mkdir(exist_ok=True)
                return leaf
            except FileNotFoundError as error:
                last = error
                continue
            except OSError as error:
                last = error
                break
    assert last is not None
    raise last


@dataclass
class Leaf:
    """One cgroup folder a container lives in, and the limits it carries."""

    path: Path
    version: int
    resources: list[str]  # MEMORY / CPU enforced through this folder
    descriptions: list[str]


@dataclass
class Placement:
    """What was set up for one container before it starts, and what could not be."""

    leaves: list[Leaf] = field(default_factory=list)
    not_enforced: dict[str, str] = field(default_factory=dict)  # resource → why not

    def enforced(self, resource: str) -> bool:
        return any(resource in leaf.resources for leaf in self.leaves)

    def descriptions(self) -> list[str]:
        """What is enforced, memory first (the limit people look for)."""
        texts = [text for leaf in self.leaves for text in leaf.descriptions]
        return sorted(texts, key=lambda text: not text.startswith("memory"))

    def add_process(self, pid: int) -> None:
        """Move the started process into every leaf; a leaf that refuses is dropped, noted."""
        for leaf in list(self.leaves):
            try:
                _write(leaf.path / "cgroup.procs", str(pid))
            except OSError as error:
                self.leaves.remove(leaf)
                for resource in leaf.resources:
                    self.not_enforced[resource] = (
                        f"could not move the process into {leaf.path}: {_reason(error)}"
                    )
                _remove_leaf(leaf.path)

    def pids(self) -> set[int]:
        """Every process still in the container's cgroups, including ones that left its group."""
        found: set[int] = set()
        for leaf in self.leaves:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (leaf.path / "cgroup.procs").read_text().split())
        return found

    def remove(self) -> bool:
        """Remove the leaves (and the shared parent when it is empty); True when all are gone."""
        remaining = [leaf for leaf in self.leaves if not _remove_leaf(leaf.path)]
        self.leaves = remaining
        return not remaining


def _remove_leaf(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as error:
        if error.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        log.warning("cannot remove cgroup %s: %s", path, _reason(error))
        return False
    with contextlib.suppress(OSError):  # busy while siblings run: that is fine
        path.parent.rmdir()
    return True


def _v2_limits(leaf: Path, limits: ResourceLimits, controllers: set[str]) -> Leaf:
    resources: list[str] = []
    descriptions: list[str] = []
    if MEMORY in controllers and limits.memory_bytes is not None:
        _write(leaf / "memory.max", str(limits.memory_bytes))
        # Without this the kernel would swap the container instead of holding it to its limit.
        with contextlib.suppress(OSError):
            _write(leaf / "memory.swap.max", "0")
        resources.append(MEMORY)
        descriptions.append(f"memory.max={format_bytes(limits.memory_bytes)} via cgroup v2")
    if CPU in controllers and limits.cpus is not None:
        quota = max(1000, round(limits.cpus * CPU_PERIOD_US))
        _write(leaf / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        resources.append(CPU)
        descriptions.append(f"cpu.max={limits.cpus:g} CPU via cgroup v2")
    return Leaf(leaf, 2, resources, descriptions)


def _v1_limits(leaf: Path, limits: ResourceLimits, controllers: set[str]) -> Leaf:
    resources: list[str] = []
    descriptions: list[str] = []
    if MEMORY in controllers and limits.memory_bytes is not None:
        _write(leaf / "memory.limit_in_bytes", str(limits.memory_bytes))
        # memory+swap, when the kernel accounts swap, so the limit cannot be dodged by swapping.
        with contextlib.suppress(OSError):
            _write(leaf / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
        resources.append(MEMORY)
        descriptions.append(
            f"memory.limit_in_bytes={format_bytes(limits.memory_bytes)} via cgroup v1"
        )
    if CPU in controllers and limits.cpus is not None:
        quota = max(1000, round(limits.cpus * CPU_PERIOD_US))
        _write(leaf / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(leaf / "cpu.cfs_quota_us", str(quota))
        resources.append(CPU)
        descriptions.append(
            f"cpu.cfs_quota_us={quota}/{CPU_PERIOD_US} ({limits.cpus:g} CPU) via cgroup v1"
        )
    return Leaf(leaf, 1, resources, descriptions)


def prepare(
    container_id: str, limits: ResourceLimits, hierarchies: list[Hierarchy] | None = None
) -> Placement:
    """Create the container's cgroups with their limits, before its process starts.

    Never raises for an OS that cannot do it: the returned placement lists what is enforced
    and, in `not_enforced`, the reason for every requested limit that is not. When no limit
    needed a cgroup, the placement still holds one tracking leaf if any hierarchy takes it.
    """
    placement = Placement()
    wanted: set[str] = set()
    if limits.memory_bytes is not None:
        wanted.add(MEMORY)
    if limits.cpus is not None:
        wanted.add(CPU)
    if hierarchies is None:
        hierarchies = discover_here()
    for hierarchy in hierarchies:
        todo = (wanted - {r for leaf in placement.leaves for r in leaf.resources}) & set(
            hierarchy.controllers
        )
        if not todo:
            continue
        try:
            path = _make_leaf(hierarchy, container_id, todo)
        except OSError as error:
            for resource in todo:
                placement.not_enforced.setdefault(
                    resource,
                    f"cannot create a cgroup in the v{hierarchy.version} hierarchy at "
                    f"{hierarchy.mountpoint}: {_reason(error)}",
                )
            continue
        try:
            apply = _v2_limits if hierarchy.version == 2 else _v1_limits
            leaf = apply(path, limits, todo)
        except OSError as error:
            _remove_leaf(path)
            for resource in todo:
                placement.not_enforced.setdefault(
                    resource, f"cannot set the limit in {path}: {_reason(error)}"
                )
            continue
        placement.leaves.append(leaf)
    for resource in wanted:
        if placement.enforced(resource):
            placement.not_enforced.pop(resource, None)
        else:
            placement.not_enforced.setdefault(resource, f"no cgroup {resource} controller")
    if not placement.leaves:
        _add_tracking_leaf(placement, container_id, hierarchies)
    return placement


def _add_tracking_leaf(
    placement: Placement, container_id: str, hierarchies: list[Hierarchy]
) -> None:
    """A cgroup without limits, only so every process of the container can be found."""
    for hierarchy in hierarchies:
        try:
            path = _make_leaf(hierarchy, container_id, set())
        except OSError as error:
            log.debug("no tracking cgroup in %s: %s", hierarchy.mountpoint, _reason(error))
            continue
        placement.leaves.append(Leaf(path, hierarchy.version, [], []))
        return
