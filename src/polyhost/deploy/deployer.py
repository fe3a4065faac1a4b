"""The deployer: turns the control plane's desired state into running container groups.

It lives on the server's event loop. `apply`/`remove` may be called from any thread (the
control plane runs in worker threads) and only schedule work. Create starts a group and
publishes its route; update is blue/green (the new group must be healthy before the routing
table is swapped; the old group drains its in-flight requests, then stops); a failed update
leaves the old group serving. Status goes back to the control plane through `StatusSink`.

A revision that changes only instance counts and weights (an inference component's copy count;
an endpoint's UpdateEndpointWeightsAndCapacities, `EndpointSpec.in_place`) is applied to the
serving group in place (`_resize`): new instances start beside the running ones and join the
route once healthy, removed ones leave the route, drain and stop, and the others are untouched
(same processes, same ports); a weight alone is a republished route.

Deleting or updating an endpoint cancels its deploy task, and with it the model data fetch the
task awaits (`ArtifactStore.fetch` stops its worker). A janitor on the same loop removes cached
models and container folders nothing uses any more (`Usage` is the deployer's account of that).

When an instance of a serving group is withdrawn (its node was lost) or comes back, the group
tells the deployer, which republishes the route without (or with) it and reports the variant's
CurrentInstanceCount: DescribeEndpoint shows the dip and the recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from polyhost.backends.base import Backend, InstancePlacer
from polyhost.backends.confinement import Confinement
from polyhost.control.seam import (
    AlarmReader,
    EndpointSpec,
    StatusReport,
    StatusSink,
    VariantSpec,
    VariantStatus,
)
from polyhost.deploy.failure import DeployFailure
from polyhost.deploy.guardrails import RollBack, bake, check, shifted_route
from polyhost.deploy.janitor import Janitor, Usage, revision_dir
from polyhost.deploy.ports import PortAllocator
from polyhost.deploy.progress import (
    DeploymentProgress,
    Policy,
    ProgressTracker,
    ProgressWatcher,
)
from polyhost.deploy.running import RunningContainer, RunningGroup
from polyhost.deploy.samples import container_samples
from polyhost.deploy.starter import GroupStarter
from polyhost.deploy.supervisor import supervise
from polyhost.errors import ServiceUnavailable
from polyhost.logs.streams import LogStream
from polyhost.metrics.collection import ContainerSample
from polyhost.modeldata.store import ArtifactStore
from polyhost.router.router import Router
from polyhost.router.table import EndpointRoute, variant_over
from polyhost.settings import Settings

log = logging.getLogger("polyhost.deploy")


def _with_count(spec: EndpointSpec, count: int) -> EndpointSpec:
    """`spec` with `count` copies (an inference component's spec has one variant)."""
    return replace(spec, variants=tuple(replace(v, instance_count=count) for v in spec.variants))


def _rebind(group: RunningGroup, spec: EndpointSpec) -> None:
    """Make `spec` the group's, its containers pointing at its variants and at their own
    container specs in them (routes and metric samples match by identity: a container left on
    the old spec's objects would no longer be its variant's entry, and its requests would
    drop out of InvocationsPerInstance)."""
    variants = {v.variant_name: v for v in spec.variants}
    for container in group.containers:
        variant = variants[container.variant.variant_name]
        container.variant = variant
        same = [c for c in variant.containers if c.hostname == container.spec.hostname]
        if same:
            container.spec = same[0]
    group.spec = spec


def _merge(group: RunningGroup, grown: RunningGroup, spec: EndpointSpec) -> None:
    """Take the containers `grown` started into `group`, whose spec becomes `spec`."""
    group.containers += grown.containers
    group.networks += grown.networks
    group.users += grown.users
    group.instances.update(grown.instances)
    _rebind(group, spec)


def _merged_route(old: RunningGroup, new: RunningGroup) -> EndpointRoute:
    """During a rolling update: the old copies still routed, and the new ones, as one."""
    routes = [r for r in (old.serving_route(), new.serving_route()) if r is not None]
    first = routes[0]
    variants = tuple(
        variant_over(
            variant,
            tuple(
                replica
                for route in routes
                for other in route.variants
                if other.name == variant.name
                for replica in other.replicas
            ),
        )
        for variant in first.variants
    )
    return first.with_variants(variants)


def _sized_variant(spec: EndpointSpec, variant_name: str, count: int) -> EndpointSpec:
    """`spec` with `count` instances of one variant (a serverless variant started or stopped)."""
    return replace(
        spec,
        variants=tuple(
            replace(v, instance_count=count) if v.variant_name == variant_name else v
            for v in spec.variants
        ),
    )


def _serverless_kept(serving: EndpointSpec, wanted: EndpointSpec) -> EndpointSpec:
    """`wanted` resized in place with each serverless variant as warm or cold as it is: its
    one instance is started and stopped by its requests, not by the new revision; but
    started now when the revision gives it ProvisionedConcurrency (ServerlessUpdateConfig)."""
    provisioned = {
        v.variant_name
        for v in wanted.variants
        if v.serverless is not None and v.serverless.provisioned_concurrency is not None
    }
    counts = {
        v.variant_name: max(v.instance_count, int(v.variant_name in provisioned))
        for v in serving.variants
        if v.serverless
    }
    if not counts:
        return wanted
    return replace(
        wanted,
        variants=tuple(
            replace(v, instance_count=counts[v.variant_name]) if v.variant_name in counts else v
            for v in wanted.variants
        ),
    )


def _sized(variant: VariantSpec) -> VariantSpec:
    """A variant less what a resize in place may change: its count, weight and copies'
    places, and a serverless variant's MaxConcurrency and ProvisionedConcurrency (its gate's
    settings; MemorySizeInMB is the container's limit, which only a new container changes)."""
    serverless = variant.serverless
    if serverless is not None:
        serverless = replace(serverless, max_concurrency=0, provisioned_concurrency=None)
    return replace(
        variant, instance_count=0, initial_weight=0.0, copy_instances=(), serverless=serverless
    )


def _resizable(serving: EndpointSpec, wanted: EndpointSpec) -> bool:
    """Whether `wanted` may be applied to what serves in place: an inference component's
    copies, or an endpoint revision that asks for it (`in_place`), differing from what serves
    only in instance counts and weights. An UpdateEndpoint never is: it replaces every
    container, which is also how a caller restarts an endpoint."""
    if wanted.component is None and not wanted.in_place:
        return False
    if len(serving.variants) != len(wanted.variants):
        return False
    return all(
        _sized(a) == _sized(b) for a, b in zip(serving.variants, wanted.variants, strict=True)
    ) and replace(serving, variants=(), revision=0, rolling=None, in_place=False) == replace(
        wanted, variants=(), revision=0, rolling=None, in_place=False
    )


def _count(spec: EndpointSpec) -> int:
    """The instances (or copies) of a spec's first variant: the one a rolling update has."""
    return spec.variants[0].instance_count if spec.variants else 0


def _fleet(spec: EndpointSpec) -> int:
    """The instances of every variant of `spec` (shadow variants' too)."""
    return sum(v.instance_count for v in spec.variants)


def _rollable(serving: EndpointSpec, wanted: EndpointSpec) -> bool:
    """Whether `wanted` has a RollingUpdatePolicy that can replace what serves: one variant
    each, of the same name (the control plane checked it; a revision restored after a restart
    that does not fit is deployed as without a policy)."""
    return (
        wanted.rolling_update is not None
        and len(serving.variants) == len(wanted.variants) == 1
        and serving.variants[0].variant_name == wanted.variants[0].variant_name
    )


def _start_timeout(timeout_s: float | None) -> RollBack:
    """Why a deployment whose new instances did not start in time is rolled back."""
    return RollBack(
        "the new fleet did not start within the deployment's MaximumExecutionTimeoutInSeconds "
        f"({timeout_s or 0:g} s)"
    )


# Told which revision serves an endpoint now (None: the endpoint was removed).
ServingWatcher = Callable[[str, EndpointSpec | None], None]
_T = TypeVar("_T")

# Longest wait at shutdown for model data workers to notice they were cancelled.
ARTIFACT_CLOSE_GRACE_S = 5.0


@dataclass
class _Deployment:
    """What runs for one endpoint: the serving group and the one being started.

    Not to be confused with `control.endpoints.EndpointState`, the desired state the control
    plane records; this is the deployer's view of what is actually running."""

    serving: RunningGroup | None = None
    attempt: RunningGroup | None = None  # the group being started (or the last failed one)
    task: asyncio.Task[None] | None = None
    revision: int = 0
    # Serialises the instance-count reports of the serving group, so the last one sent is
    # always the latest count.
    reports: asyncio.Lock | None = None
    # `task` has made its group the serving one and only reports it and drains and stops the
    # group it replaced: a resize in place may begin (once that is done) rather than cancel it.
    settled: bool = False


class EndpointDeployer:
    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        router: Router,
        artifacts: ArtifactStore | None = None,
        *,
        confinement: Confinement | None = None,
    ) -> None:
        """`confinement`: what keeps instances apart (the server's plan); none by default."""
        self._settings = settings
        self._router = router
        self._backend = backend
        self._artifacts = artifacts or ArtifactStore.from_settings(settings)
        self._starter = GroupStarter(
            backend=backend,
            artifacts=self._artifacts,
            ports=PortAllocator(),
            settings=settings,
            confinement=confinement,
        )
        self._sink: StatusSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoints: dict[str, _Deployment] = {}
        # Groups outside `_endpoints` whose containers may still run: being started by a deploy
        # task (which may have been superseded), or draining and stopping. Keyed by id().
        self._starting: dict[int, RunningGroup] = {}
        self._stopping: dict[int, RunningGroup] = {}
        self._janitor = Janitor(settings, self._artifacts, self.usage)
        self._janitor_task: asyncio.Task[None] | None = None
        self._reports: set[asyncio.Task[None]] = set()
        self._closing = False
        self._serving_watchers: list[ServingWatcher] = []
        self._alarm_state: AlarmReader | None = None
        self._idle_task: asyncio.Task[None] | None = None
        # Per endpoint: serialises a serverless variant's starts and stops.
        self._serverless_locks: dict[str, asyncio.Lock] = {}
        # Per endpoint, while a blue/green shift or a rolling update runs (deploy/progress.py).
        self._progress: dict[str, DeploymentProgress] = {}
        self._progress_watchers: list[ProgressWatcher] = []

    def bind_alarms(self, reader: AlarmReader) -> None:
        """How a deployment with guardrails reads its AutoRollbackConfiguration alarms."""
        self._alarm_state = reader

    def bind_status_sink(self, sink: StatusSink) -> None:
        self._sink = sink

    def watch_serving(self, watcher: ServingWatcher) -> None:
        """Call `watcher(endpoint_name, spec)` on the loop whenever a revision starts serving
        an endpoint (its route published), and with None when the endpoint is removed: what
        follows the serving revision rather than the routes (data capture) stays in step."""
        self._serving_watchers.append(watcher)

    def watch_progress(self, watcher: ProgressWatcher) -> None:
        """Call `watcher(endpoint_name, progress)` on the loop at each change of an endpoint's
        `deployment_progress`, with None once the deployment ended: every phase, however
        short (one read by polling may come and go between two reads)."""
        self._progress_watchers.append(watcher)

    def _progress_changed(self, endpoint_name: str, progress: DeploymentProgress | None) -> None:
        for watcher in self._progress_watchers:
            try:
                watcher(endpoint_name, progress)
            except Exception:  # a watcher's bug must not stop a deploy half-way
                log.exception("a watcher of %s's deployment progress failed", endpoint_name)

    def _serving(self, endpoint_name: str, spec: EndpointSpec | None) -> None:
        self._bind_serverless(endpoint_name, spec)
        for watcher in self._serving_watchers:
            try:
                watcher(endpoint_name, spec)
            except Exception:  # a watcher's bug must not stop a deploy half-way
                log.exception("a watcher of %s's serving revision failed", endpoint_name)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._janitor_task = loop.create_task(self._janitor.run())
        self._idle_task = loop.create_task(self._stop_idle())

    # -- the seam (any thread) ------------------------------------------------------------
    def apply(self, spec: EndpointSpec) -> None:
        self._call_soon(self._apply, spec)

    def remove(self, endpoint_name: str) -> None:
        self._call_soon(self._remove, endpoint_name)

    def _call_soon(self, fn: Callable[[_T], None], arg: _T) -> None:
        """Schedule `fn(arg)` on the deployer's loop; safe from any thread, the loop's included."""
        if self._loop is None:
            raise RuntimeError("deployer not started")
        self._loop.call_soon_threadsafe(fn, arg)

    # -- observation ------------------------------------------------------------------------
    def log_streams(self, endpoint_name: str) -> list[LogStream]:
        """Logs of the serving group, or of the last attempt when nothing serves (failed)."""
        state = self._endpoints.get(endpoint_name)
        if state is None:
            return []
        group = state.serving or state.attempt
        return group.log_streams() if group else []

    def all_log_streams(self) -> dict[str, list[LogStream]]:
        """`log_streams` of every endpoint that has any (on the event loop, no I/O): the log
        groups and streams CloudWatch Logs' API lists."""
        listing = {name: self.log_streams(name) for name in self._endpoints}
        return {name: streams for name, streams in listing.items() if streams}

    def deployment_progress(self, endpoint_name: str) -> DeploymentProgress | None:
        """Where the endpoint's traffic-shifting deployment stands (on the event loop); None
        when none runs."""
        return self._progress.get(endpoint_name)

    def groups(self) -> list[RunningGroup]:
        return [s.serving for s in self._endpoints.values() if s.serving is not None]

    def container_samples(self) -> Iterator[ContainerSample]:
        """Every serving container as the metrics see it (on the event loop, no I/O)."""
        return container_samples(self.groups())

    def usage(self) -> Usage:
        """What must not be removed now (on the event loop): the models and folders of every
        group that runs, starts or stops, the URLs still being fetched, and the folder of each
        endpoint's last attempt (a failed one: its log says why)."""
        containers_dir = self._settings.containers_dir
        model_dirs: set[Path] = set()
        urls: set[str] = set()
        revisions: set[Path] = set()
        alive = [s.serving for s in self._endpoints.values() if s.serving is not None]
        alive += [*self._starting.values(), *self._stopping.values()]
        for group in alive:
            spec = group.spec
            revisions.add(revision_dir(containers_dir, spec.endpoint_name, group.folder_revision))
            model_dirs.update(c.launch.model_dir for c in group.containers if c.launch.model_dir)
        for group in self._starting.values():
            urls.update(
                c.model_data_url for v in group.spec.variants for c in v.containers
                if c.model_data_url
            )  # fmt: skip
        for state in self._endpoints.values():
            if state.attempt is not None:
                spec = state.attempt.spec
                revisions.add(revision_dir(containers_dir, spec.endpoint_name, spec.revision))
        return Usage(
            model_dirs=frozenset(model_dirs),
            model_urls=frozenset(urls),
            endpoints=frozenset(self._endpoints),
            revision_dirs=frozenset(revisions),
        )

    # -- work on the loop -------------------------------------------------------------------
    def _apply(self, spec: EndpointSpec) -> None:
        if self._closing:
            return
        state = self._endpoints.setdefault(spec.endpoint_name, _Deployment())
        if spec.revision <= state.revision and (state.serving or state.task):
            return  # already running or starting this revision
        state.revision = spec.revision
        previous = state.task
        loop = asyncio.get_running_loop()
        serving = state.serving
        # Resized in place only when nothing else is under way for it (a start or another
        # resize, which the new spec supersedes the usual way), or when what is under way only
        # stops the group the serving one replaced (the resize waits for it).
        idle = previous is None or previous.done()
        settled, state.settled = state.settled, False
        # After the stop of the group `serving` replaced, if that is still under way.
        after = None if idle else previous
        if serving is not None and (idle or settled) and _resizable(serving.spec, spec):
            spec = _serverless_kept(serving.spec, spec)
            state.task = loop.create_task(self._resize(state, serving, spec, after))
            return
        if serving is not None and (idle or settled) and _rollable(serving.spec, spec):
            state.task = loop.create_task(self._roll(state, serving, spec, after))
            return
        if serving is not None and (idle or settled) and spec.blue_green is not None:
            state.task = loop.create_task(self._blue_green(state, serving, spec, after))
            return
        state.task = loop.create_task(self._deploy(state, spec, previous))

    async def _deploy(
        self, state: _Deployment, spec: EndpointSpec, previous: asyncio.Task[None] | None
    ) -> None:
        group = RunningGroup(spec)
        self._starting[id(group)] = group  # its models are in use from now on
        try:
            await self._deploy_group(state, group, previous)
        finally:
            self._starting.pop(id(group), None)

    async def _deploy_group(
        self, state: _Deployment, group: RunningGroup, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None and not previous.done():
            previous.cancel()  # and with it the model data fetch it awaits
            await asyncio.gather(previous, return_exceptions=True)
        spec = group.spec
        name = spec.endpoint_name
        if state.serving is None and not self._router.is_restoring(name):
            self._router.mark_not_serving(name, "Creating")
        state.attempt = group
        started = asyncio.get_running_loop().time()
        try:
            await self._starter.start(spec, group)
        except DeployFailure as failure:
            log.warning("endpoint %s revision %d failed: %s", name, spec.revision, failure.reason)
            await self._report_failure(state, spec, failure.reason)
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not leave the endpoint Creating forever
            log.exception("deploying %s failed", name)
            await self._report_failure(state, spec, f"Internal error while deploying: {error}")
            return
        assert group.route is not None
        old = state.serving
        state.serving = group
        state.attempt = None
        group.on_change = lambda: self._instances_changed(state, group)
        self._serving(name, spec)
        self._router.publish(group.serving_route() or group.route)
        self._supervise(group, group.containers)
        log.info(
            "endpoint %s revision %d InService in %.2fs (%d containers)",
            name,
            spec.revision,
            asyncio.get_running_loop().time() - started,
            len(group.containers),
        )
        # Settled before the report: a caller told InService may resize at once, and that
        # resize must wait for this task rather than replace the group it just started.
        state.settled = state.task is asyncio.current_task()
        await self._report_in_service(spec)
        if old is not None:
            await self._drain_and_stop(old)

    async def _blue_green(
        self,
        state: _Deployment,
        old: RunningGroup,
        spec: EndpointSpec,
        after: asyncio.Task[None] | None = None,
    ) -> None:
        """UpdateEndpoint with a BlueGreenUpdatePolicy (docs/deployment-guardrails.md): the new
        fleet starts beside the old one; each step of a CANARY or LINEAR shift routes part of
        it beside the whole old fleet and bakes; then all traffic goes to the new fleet
        (ALL_AT_ONCE bakes after that), the old fleet is kept TerminationWaitInSeconds, then
        drained and stopped. An alarm in ALARM, or the time bound, rolls it back
        (`_undo_shift`): all traffic to the old fleet, the new one drained and stopped."""
        if after is not None:
            await asyncio.wait({after})
        guard = spec.blue_green
        assert guard is not None
        loop = asyncio.get_running_loop()
        name = spec.endpoint_name
        deadline = None if guard.timeout_s is None else loop.time() + guard.timeout_s
        new = RunningGroup(spec)
        self._starting[id(new)] = new
        state.attempt = new
        shift: dict[str, int] | None = {}  # per variant, new instances routed; None: all
        progress = self._track(guard.traffic, spec, old.spec)
        wanted, old_total = _fleet(spec), _fleet(old.spec)

        def republish() -> None:
            # An instance of either fleet withdrawn or back: the shift's route without it.
            if state.attempt is new and not new.stopping and new.route is not None:
                self._router.publish(shifted_route(old, new, shift))

        old.on_change = republish
        try:
            try:
                remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
                await asyncio.wait_for(self._starter.start(spec, new), remaining)
                new.on_change = republish
                self._supervise(new, new.containers)
                for step in guard.steps:
                    shift = dict(zip(guard.variants, step, strict=True))
                    await check(guard, self._alarm_state, deadline)
                    republish()
                    log.info("%s: new fleet takes traffic beside the old: %s", name, shift)
                    progress.phase("Baking", new=sum(step), old=old_total, wait_s=guard.wait_s)
                    await bake(guard, guard.wait_s, self._alarm_state, deadline)
                shift = None
                await check(guard, self._alarm_state, deadline)
                republish()
                log.info("%s: all traffic shifted to revision %d", name, spec.revision)
                if not guard.steps:
                    progress.phase("Baking", new=wanted, old=0, wait_s=guard.wait_s)
                    await bake(guard, guard.wait_s, self._alarm_state, deadline)
                termination_s = guard.termination_wait_s
                progress.phase("Terminating", new=wanted, old=0, wait_s=termination_s)
                await bake(guard, termination_s, self._alarm_state, deadline)
            except DeployFailure as failure:
                old.on_change = lambda: self._instances_changed(state, old)
                log.warning("updating %s failed: %s", name, failure.reason)
                await self._report_failure(state, spec, failure.reason)
                return
            except TimeoutError:
                await self._undo_shift(
                    state, old, new, spec, progress, _start_timeout(guard.timeout_s)
                )
                return
            except RollBack as rollback:
                await self._undo_shift(state, old, new, spec, progress, rollback)
                return
            progress.end()
            state.serving = new
            state.attempt = None
            new.on_change = lambda: self._instances_changed(state, new)
            self._serving(name, spec)
            self._router.publish(shifted_route(old, new, None))
            log.info("endpoint %s revision %d InService (%s)", name, spec.revision, guard.traffic)
            state.settled = state.task is asyncio.current_task()
            await self._report_in_service(spec, new)
            await self._drain_and_stop(old)
        except asyncio.CancelledError:
            # Deleted, or the server stops: the new fleet goes (the old one is still serving,
            # and whoever cancelled stops it).
            if state.serving is not new:
                old.on_change = lambda: self._instances_changed(state, old)
                await self._starter.stop(new)
            raise
        finally:
            progress.end()
            self._starting.pop(id(new), None)

    def _track(self, policy: Policy, spec: EndpointSpec, old: EndpointSpec) -> ProgressTracker:
        """The progress of a deployment of `spec` replacing `old` (deploy/progress.py), at its
        start: the new fleet's first instances starting."""
        return ProgressTracker(
            self._progress,
            DeploymentProgress(
                endpoint_name=spec.endpoint_name,
                policy=policy,
                phase="Starting",
                from_config=old.endpoint_config_name,
                to_config=spec.endpoint_config_name,
                new_instances=0,
                wanted_instances=_fleet(spec),
                old_instances=_fleet(old),
                started_at=time.time(),
            ),
            self._progress_changed,
        )

    async def _report_rolling_back(
        self, spec: EndpointSpec, old: RunningGroup, old_spec: EndpointSpec, reason: str
    ) -> None:
        """The endpoint is RollingBack from `spec` to `old_spec`, which `old` runs (some of)."""
        await self._report(
            StatusReport(
                endpoint_name=spec.endpoint_name,
                revision=spec.revision,
                status="RollingBack",
                failure_reason=f"Rolling back the update to endpoint config "
                f"{spec.endpoint_config_name}: {reason}"[:1024],
                variants=self._variant_statuses(old_spec, serving=old),
                serving_config_name=old_spec.endpoint_config_name,
            )
        )

    async def _undo_shift(
        self,
        state: _Deployment,
        old: RunningGroup,
        new: RunningGroup,
        spec: EndpointSpec,
        progress: ProgressTracker,
        rollback: RollBack,
    ) -> None:
        """All traffic back to the old fleet, the new one drained (every request routed to it
        finishes) and stopped; RollingBack meanwhile, then InService on the old config."""
        name = spec.endpoint_name
        log.warning("rolling %s back from revision %d: %s", name, spec.revision, rollback.reason)
        new.on_change = None
        old.on_change = lambda: self._instances_changed(state, old)
        route = old.serving_route() or old.route
        assert route is not None
        self._router.publish(route)
        progress.phase("RollingBack", new=0, old=_fleet(old.spec), reason=rollback.reason)
        await self._report_rolling_back(spec, old, old.spec, rollback.reason)
        await self._drain_containers(new.route, new.containers)
        await self._starter.stop(new)
        state.attempt = None
        await self._report_failure(state, spec, f"rolled back: {rollback.reason}")

    def _supervise(self, group: RunningGroup, containers: list[RunningContainer]) -> None:
        loop = asyncio.get_running_loop()
        for container in containers:
            container.supervisor = loop.create_task(supervise(self._starter, group, container))
            group.supervisors.append(container.supervisor)

    async def _resize(
        self,
        state: _Deployment,
        group: RunningGroup,
        spec: EndpointSpec,
        after: asyncio.Task[None] | None = None,
    ) -> None:
        """Only instance counts (an inference component's copies) and weights changed: add
        the new instances to the serving group once they pass their ping, or route without the
        removed ones, drain and stop them; republish the route with the new weights. The
        instances that stay are not touched (a blue/green replacement would restart them).
        `after`: the task still stopping the group `group` replaced, left to finish (waiting
        does not cancel it, and a newer spec cancelling this task leaves it running too)."""
        if after is not None:
            await asyncio.wait({after})
        name = spec.endpoint_name
        old_route = group.route
        try:
            grown = await self._starter.grow(spec, group)
        except DeployFailure as failure:
            log.warning(
                "resizing %s to revision %d failed: %s", name, spec.revision, failure.reason
            )
            await self._report_failure(state, spec, failure.reason)
            return
        if state.serving is not group or group.stopping:
            await self._starter.stop(grown)
            return
        _merge(group, grown, spec)
        gone = self._shrink(group, spec)
        self._bind_serverless(name, group.spec)  # a ServerlessUpdateConfig's new limits
        self._router.publish(group.serving_route() or self._starter.route(spec, group))
        self._supervise(group, grown.containers)
        log.info(
            "%s resized in place to revision %d: %d containers started, %d stopped",
            name,
            spec.revision,
            len(grown.containers),
            len(gone),
        )
        state.settled = state.task is asyncio.current_task()
        await self._report_in_service(spec, group)
        if gone:
            # Not part of this task: a newer spec cancelling it must not leave them running.
            task = asyncio.get_running_loop().create_task(self._retire(group, old_route, gone))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    async def _retire(
        self, group: RunningGroup, route: EndpointRoute | None, gone: list[RunningContainer]
    ) -> None:
        await self._drain_containers(route, gone)
        await self._starter.stop_containers(group, gone)

    async def _roll(
        self,
        state: _Deployment,
        old: RunningGroup,
        spec: EndpointSpec,
        after: asyncio.Task[None] | None = None,
    ) -> None:
        """A RollingUpdatePolicy: UpdateInferenceComponent's (its copies) or UpdateEndpoint's
        (the instances of its one variant; docs/deployment-guardrails.md). Batch by batch:
        start new instances and route to them beside the old ones, bake WaitIntervalInSeconds
        with the alarms watched, then route without as many old instances, drain and stop
        them; once the new fleet is whole, the old instances left go with the last batch.
        An alarm in ALARM, new instances that fail to start, or the time bound roll it back
        (`_roll_back`)."""
        if after is not None:
            await asyncio.wait({after})
        rolling = spec.rolling_update
        assert rolling is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + rolling.timeout_s
        original = old.spec
        wanted = _count(spec)
        batch = rolling.batch(max(wanted, 1))
        new = RunningGroup(_with_count(spec, 0))
        self._starting[id(new)] = new
        state.attempt = new
        progress = self._track("ROLLING", spec, original)

        def both() -> EndpointRoute:
            return _merged_route(old, new)

        def republish() -> None:
            # An instance of either fleet withdrawn or back: both fleets' route without it.
            if state.attempt is new and not new.stopping:
                self._router.publish(both())

        old.on_change = new.on_change = republish
        try:
            try:
                while True:
                    await check(rolling, self._alarm_state, deadline)
                    have, left = _count(new.spec), _count(old.spec)
                    if have < wanted:
                        progress.phase("Starting", new=have, old=left)
                        have = min(wanted, have + batch)
                        await asyncio.wait_for(
                            self._add_batch(new, _with_count(spec, have), both),
                            max(deadline - loop.time(), 0.0),
                        )
                        log.info("%s: %d of %d new instances take traffic beside %d old",
                                 spec.endpoint_name, have, wanted, left)  # fmt: skip
                        progress.phase("Baking", new=have, old=left, wait_s=rolling.wait_s)
                        await bake(rolling, rolling.wait_s, self._alarm_state, deadline)
                    keep = 0 if have >= wanted else max(0, left - batch)
                    progress.phase("Terminating", new=have, old=keep)
                    await self._take_out(old, _with_count(original, keep), both)
                    if have >= wanted:
                        break
            except DeployFailure as failure:
                await self._roll_back(state, old, original, new, spec, progress, failure.reason)
                return
            except TimeoutError:
                reason = _start_timeout(rolling.timeout_s).reason
                await self._roll_back(state, old, original, new, spec, progress, reason)
                return
            except RollBack as rollback:
                await self._roll_back(state, old, original, new, spec, progress, rollback.reason)
                return
            progress.end()
            old.on_change = None
            _rebind(new, spec)
            new.route = self._starter.route(spec, new)
            state.serving = new
            state.attempt = None
            new.on_change = lambda: self._instances_changed(state, new)
            self._serving(spec.endpoint_name, spec)
            self._router.publish(new.serving_route() or new.route)
            log.info("%s rolled to revision %d", spec.endpoint_name, spec.revision)
            state.settled = state.task is asyncio.current_task()
            await self._report_in_service(spec, new)
            await self._drain_and_stop(old)
        except asyncio.CancelledError:
            # Deleted, or the server stops: whoever cancelled stops the old instances left.
            if state.serving is not new:
                old.on_change = lambda: self._instances_changed(state, old)
                await self._starter.stop(new)
            raise
        finally:
            progress.end()
            self._starting.pop(id(new), None)

    async def _roll_back(
        self,
        state: _Deployment,
        old: RunningGroup,
        original: EndpointSpec,
        new: RunningGroup,
        spec: EndpointSpec,
        progress: ProgressTracker,
        reason: str,
    ) -> None:
        """Undo a rolling update, RollbackMaximumBatchSize at a time (without it, the whole
        old fleet at once): the old instances removed so far start again and are routed to,
        then as many new ones leave the route, drain and stop. An endpoint is RollingBack
        meanwhile, then InService on its old configuration with the reason."""
        name = spec.endpoint_name
        rolling = spec.rolling_update
        assert rolling is not None
        log.warning("rolling %s back from revision %d: %s", name, spec.revision, reason)
        whole = _count(original)
        back = rolling.rollback_batch(whole)
        progress.phase("RollingBack", new=_count(new.spec), old=_count(old.spec), reason=reason)
        if spec.component is None:
            await self._report_rolling_back(spec, old, original, reason)

        def both() -> EndpointRoute:
            return _merged_route(old, new)

        try:
            while _count(old.spec) < whole or _count(new.spec) > 0:
                count = min(whole, _count(old.spec) + back)
                await self._add_batch(old, _with_count(original, count), both)
                keep = 0 if count >= whole else max(0, _count(new.spec) - back)
                progress.phase("RollingBack", new=keep, old=count, reason=reason)
                await self._take_out(new, _with_count(new.spec, keep), both)
        except DeployFailure as again:
            log.warning("%s: the previous instances did not start again: %s", name, again.reason)
        new.on_change = None
        old.on_change = lambda: self._instances_changed(state, old)
        route = old.serving_route() or old.route
        assert route is not None
        self._router.publish(route)
        await self._drain_containers(new.route, new.containers)
        await self._starter.stop(new)
        state.attempt = None
        await self._report_failure(
            state, spec, reason if spec.component else f"rolled back: {reason}"
        )

    async def _add_batch(
        self, group: RunningGroup, spec: EndpointSpec, routed: Callable[[], EndpointRoute]
    ) -> None:
        """Start the instances `spec` has beyond those `group` runs, and once they pass their
        ping publish `routed()` (the endpoint's route, with them). Raises DeployFailure."""
        grown = await self._starter.grow(spec, group)
        _merge(group, grown, spec)
        group.route = self._starter.route(spec, group)
        self._supervise(group, grown.containers)
        self._router.publish(routed())

    async def _take_out(
        self, group: RunningGroup, spec: EndpointSpec, routed: Callable[[], EndpointRoute]
    ) -> None:
        """Publish `routed()` without the instances of `group` that `spec` has no more, then
        let the requests they are answering finish (bounded) and stop them."""
        route = group.route  # with them: their in-flight counts are read from it
        gone = self._shrink(group, spec)
        self._router.publish(routed())
        await self._drain_containers(route, gone)
        await self._starter.stop_containers(group, gone)

    # -- serverless variants (docs/serverless.md) --------------------------------------------
    def _bind_serverless(self, endpoint_name: str, spec: EndpointSpec | None) -> None:
        """Give the router a gate for each serverless variant of the revision that serves
        now (none when the endpoint is gone): it throttles and asks for cold starts."""
        variants = {
            v.variant_name: (
                v.serverless.max_concurrency,
                v.serverless.provisioned_concurrency is not None,
                self._warmer(endpoint_name, v.variant_name),
            )
            for v in (spec.variants if spec is not None else ())
            if v.serverless is not None
        }
        self._router.bind_serverless(endpoint_name, variants)

    def _warmer(self, endpoint_name: str, variant_name: str) -> Callable[[], Awaitable[None]]:
        async def warm() -> None:
            await self._warm(endpoint_name, variant_name)

        return warm

    def _serverless_lock(self, endpoint_name: str) -> asyncio.Lock:
        return self._serverless_locks.setdefault(endpoint_name, asyncio.Lock())

    async def _warm(self, endpoint_name: str, variant_name: str) -> None:
        """A cold start: the serverless variant's one instance started beside the serving
        group's others (the resize-in-place machinery), routed once its ping passes."""
        async with self._serverless_lock(endpoint_name):
            state = self._endpoints.get(endpoint_name)
            group = None if state is None else state.serving
            if self._closing or state is None or group is None or group.stopping:
                raise ServiceUnavailable(
                    f"Endpoint {endpoint_name} is not serving: retry once DescribeEndpoint "
                    "reports InService."
                )
            spec = group.spec
            if any(v.variant_name == variant_name and v.instance_count for v in spec.variants):
                return  # started meanwhile (by a request the gate did not share a start with)
            wanted = _sized_variant(spec, variant_name, 1)
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                grown = await self._starter.grow(wanted, group)
            except DeployFailure as failure:
                log.warning("cold start of %s/%s failed: %s", endpoint_name, variant_name,
                            failure.reason)  # fmt: skip
                raise ServiceUnavailable(
                    f"Endpoint {endpoint_name}'s serverless variant {variant_name} could not "
                    f"start: {failure.reason}"
                ) from None
            if self._closing or state.serving is not group or group.stopping:
                await self._starter.stop(grown)
                raise ServiceUnavailable(
                    f"Endpoint {endpoint_name} was updated or deleted during the cold start "
                    f"of its variant {variant_name}. Retry shortly."
                )
            _merge(group, grown, wanted)
            group.route = self._starter.route(wanted, group)
            self._router.publish(group.serving_route() or group.route)
            self._supervise(group, grown.containers)
            log.info("%s/%s: cold start in %.2fs", endpoint_name, variant_name,
                     loop.time() - started)  # fmt: skip
            self._instances_changed(state, group)

    async def _stop_idle(self) -> None:
        """Stop each serverless variant's container once it has had no request for
        `--serverless-idle-s` (not one ProvisionedConcurrency keeps warm)."""
        idle_s = self._settings.serverless_idle_s
        while True:
            await asyncio.sleep(min(max(idle_s / 4, 0.05), 5.0))
            try:
                await self._stop_idle_once(idle_s)
            except Exception:  # a bug must not leave idle containers running for ever
                log.exception("stopping idle serverless containers failed")

    async def _stop_idle_once(self, idle_s: float) -> None:
        now = asyncio.get_running_loop().time()
        for name, state in list(self._endpoints.items()):
            group = state.serving
            if group is None or group.stopping:
                continue
            for gate in list(self._router.serverless_gates(name).values()):
                if gate.provisioned or gate.in_flight or gate.starting:
                    continue
                if now - gate.last_used < idle_s:
                    continue
                if any(
                    v.variant_name == gate.variant_name and v.instance_count
                    for v in group.spec.variants
                ):
                    await self._cool(state, group, gate.variant_name)

    async def _cool(self, state: _Deployment, group: RunningGroup, variant_name: str) -> None:
        name = group.spec.endpoint_name
        async with self._serverless_lock(name):
            gate = self._router.serverless_gates(name).get(variant_name)
            if state.serving is not group or group.stopping or gate is None or gate.in_flight:
                return
            route = group.route
            gone = self._shrink(group, _sized_variant(group.spec, variant_name, 0))
            self._router.publish(group.serving_route() or self._starter.route(group.spec, group))
            log.info("%s/%s: idle, its container stopped", name, variant_name)
            try:
                await self._drain_containers(route, gone)
                await self._starter.stop_containers(group, gone)
            finally:
                self._instances_changed(state, group)

    def _shrink(self, group: RunningGroup, spec: EndpointSpec) -> list[RunningContainer]:
        """Route `group` as `spec` says (fewer replicas); the containers left out."""
        kept = {(v.variant_name, f"i-{i}") for v in spec.variants for i in range(v.instance_count)}
        gone = [c for c in group.containers if c.instance not in kept]
        group.containers = [c for c in group.containers if c.instance in kept]
        _rebind(group, spec)
        group.route = self._starter.route(spec, group)
        return gone

    async def _drain_containers(
        self, route: EndpointRoute | None, gone: list[RunningContainer]
    ) -> None:
        """Wait (bounded) until the replicas of `gone` have no request in flight."""
        if route is None:
            return
        instances = {c.instance for c in gone}
        replicas = [
            r for v in route.variants for r in v.replicas if (v.name, r.instance_id) in instances
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.invocation_timeout_s + 1
        while loop.time() < deadline and any(r.outstanding for r in replicas):
            await asyncio.sleep(0.05)

    def _instances_changed(self, state: _Deployment, group: RunningGroup) -> None:
        """An instance of `group` was withdrawn or is back: route and report accordingly."""
        if state.serving is not group or group.stopping:
            return
        route = group.serving_route()
        if route is not None:
            self._router.publish(route)
        task = asyncio.get_running_loop().create_task(self._report_counts(state, group))
        self._reports.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._reports.discard)

    async def _report_counts(self, state: _Deployment, group: RunningGroup) -> None:
        if state.reports is None:
            state.reports = asyncio.Lock()
        async with state.reports:
            if state.serving is not group or group.stopping:
                return
            spec = group.spec
            await self._report_in_service(spec, group)

    async def release_unclaimed(self, endpoint_names: list[str]) -> None:
        """After a restart: once the deploys of `endpoint_names` (every endpoint that should
        run) have finished, let a backend that places instances stop what its previous run
        left and nothing claimed (adopted instances are claimed; the rest is not wanted)."""
        backend = self._backend
        if not isinstance(backend, InstancePlacer):
            return
        while True:
            tasks = [
                s.task
                for name in endpoint_names
                if (s := self._endpoints.get(name)) is not None and s.task is not None
            ]
            pending = [t for t in tasks if not t.done()]
            if not pending:
                break
            await asyncio.gather(*pending, return_exceptions=True)
        if self._closing:
            return
        try:
            released = await backend.release_unclaimed()
        except Exception:
            log.exception("stopping the instances a previous run left failed")
            return
        if released:
            log.info("stopped instances nothing claims: %s", ", ".join(released))
        else:
            log.info("no instance left by a previous run needs stopping")

    async def _report_failure(self, state: _Deployment, spec: EndpointSpec, reason: str) -> None:
        serving = state.serving
        if serving is None:
            self._router.mark_not_serving(spec.endpoint_name, "Failed")
            await self._report(
                StatusReport(
                    endpoint_name=spec.endpoint_name,
                    revision=spec.revision,
                    status="Failed",
                    failure_reason=reason,
                    variants=self._variant_statuses(spec, current=0),
                )
            )
            return
        # A failed update: the old group keeps serving, and the endpoint says why.
        await self._report(
            StatusReport(
                endpoint_name=spec.endpoint_name,
                revision=spec.revision,
                status="InService",
                failure_reason=f"Update to endpoint config {spec.endpoint_config_name} failed: "
                f"{reason}"[:1024],
                variants=self._variant_statuses(serving.spec, serving=serving),
                serving_config_name=serving.spec.endpoint_config_name,
            )
        )

    async def _drain_and_stop(self, group: RunningGroup) -> None:
        """Let requests already routed to `group` finish (bounded), then stop it."""
        self._stopping[id(group)] = group  # its containers run until stopped
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._settings.invocation_timeout_s + 1
            route = group.route
            while route is not None and loop.time() < deadline:
                if all(r.outstanding == 0 for v in route.variants for r in v.replicas):
                    break
                await asyncio.sleep(0.05)
            await self._starter.stop(group)
        finally:
            self._stopping.pop(id(group), None)

    def _remove(self, endpoint_name: str) -> None:
        state = self._endpoints.pop(endpoint_name, None)
        self._serverless_locks.pop(endpoint_name, None)
        self._router.withdraw(endpoint_name)
        self._serving(endpoint_name, None)
        if state is None:
            return
        asyncio.get_running_loop().create_task(self._stop_state(state))

    async def _stop_state(self, state: _Deployment) -> None:
        if state.task is not None and not state.task.done():
            state.task.cancel()
            await asyncio.gather(state.task, return_exceptions=True)
        if state.serving is not None:
            await self._drain_and_stop(state.serving)

    async def shutdown(self) -> None:
        """Stop every container (server exit); endpoints come back on the next start.

        Deploy tasks are cancelled first (their fetches with them); then the containers stop
        while the model data workers get a short grace to notice, so exit is never held up by
        a download that hangs."""
        self._closing = True
        if self._janitor_task is not None:
            self._janitor_task.cancel()
        if self._idle_task is not None:
            self._idle_task.cancel()
        states = list(self._endpoints.values())
        self._endpoints.clear()
        for state in states:
            if state.task is not None and not state.task.done():
                state.task.cancel()
        await asyncio.gather(
            *(s.task for s in states if s.task is not None), return_exceptions=True
        )
        grace = min(self._settings.stop_grace_s, ARTIFACT_CLOSE_GRACE_S)
        await asyncio.gather(
            *(self._starter.stop(s.serving) for s in states if s.serving is not None),
            self._artifacts.close(grace),
            return_exceptions=True,
        )

    async def _report_in_service(
        self, spec: EndpointSpec, serving: RunningGroup | None = None
    ) -> None:
        """`spec` serves: InService, its variants as `serving` runs them."""
        await self._report(
            StatusReport(
                endpoint_name=spec.endpoint_name,
                revision=spec.revision,
                status="InService",
                variants=self._variant_statuses(spec, serving=serving),
                serving_config_name=spec.endpoint_config_name,
            )
        )

    async def _report(self, report: StatusReport) -> None:
        if self._sink is None:
            return
        try:
            await asyncio.to_thread(self._sink.report, report)
        except Exception:
            log.exception("status report for %s failed", report.endpoint_name)

    @staticmethod
    def _variant_statuses(
        spec: EndpointSpec, current: int | None = None, serving: RunningGroup | None = None
    ) -> tuple[VariantStatus, ...]:
        def count(variant_name: str, planned: int) -> int:
            if current is not None:
                return current
            return planned if serving is None else serving.serving_instances(variant_name)

        return tuple(
            VariantStatus(
                variant_name=v.variant_name,
                current_instance_count=count(v.variant_name, v.instance_count),
                desired_instance_count=v.instance_count,
                current_weight=v.initial_weight,
                desired_weight=v.initial_weight,
                deployed_images=tuple(c.image for c in v.containers),
                status="InService" if current is None else "Failed",
            )
            for v in spec.variants
        )
