"""Inference components: the operations, their lifecycle, and where their copies run.

An endpoint whose config's variants name no model hosts inference components. Each component
is one model (a stored model, or an inline container) with its own compute requirements and
copy count. The control plane stores each component as a resource of its own, places its
copies on the endpoint's instances (`placement.py`, re-run under the lock on every change so
no two components ever claim the same room) and hands the deployer a spec of its own, keyed
`component_key(name)`: its copies are the spec's replicas, each with the component's limits.
The deployer runs it like any endpoint (start, health, restarts, blue/green replacement,
adoption after a restart) and reports back here.

    Creating --copies up--> InService --Update*--> Updating --copies up--> InService
        \\--no copy started--> Failed                \\--failed--> InService (previous copies,
                                                                    FailureReason set)
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from polyhost.control.endpoints import EndpointState
from polyhost.control.listing import offset_from_token, offset_token
from polyhost.control.operations import operation
from polyhost.control.placement import Demand, Fleet, Placement, place
from polyhost.control.seam import (
    ComponentRef,
    ContainerSpec,
    EndpointSpec,
    RollingUpdate,
    StatusReport,
    VariantSpec,
)
from polyhost.control.specs import (
    DEFAULT_DOWNLOAD_TIMEOUT_S,
    model_containers,
    rolling_update,
    spec_from_json,
    spec_to_json,
)
from polyhost.control.store import Kind, Resource
from polyhost.errors import ValidationException
from polyhost.naming import COMPONENT_KEY_PREFIX, component_key

if TYPE_CHECKING:
    from polyhost.control.service import ControlPlane

KIND: Kind = "inference-component"
DEFAULT_PAGE = 10
IN_PROGRESS = frozenset({"Creating", "Updating", "Deleting"})


def _tags(params: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["Key"], t["Value"]) for t in params.get("Tags") or []]


def _demand(resource: Resource) -> Demand:
    doc = resource.doc
    compute = doc["Specification"].get("ComputeResourceRequirements") or {}
    return Demand(
        name=resource.name,
        cpus=float(compute.get("NumberOfCpuCoresRequired", 0.0)),
        memory_mb=int(compute.get("MinMemoryRequiredInMb", 0)),
        copies=int(doc["RuntimeConfig"]["CopyCount"]),
        current=tuple(doc.get("placement") or ()),
    )


class InferenceComponents:
    """The inference component operations; they share the control plane's store, locks and
    deployer seam, so they hold the plane itself."""

    def __init__(self, plane: ControlPlane) -> None:
        self._plane = plane

    # -- the operations -----------------------------------------------------------------------
    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["InferenceComponentName"]
        with self._plane._deploy_lock:
            with self._plane._lock:
                if self._plane._store.get(KIND, name) is not None:
                    raise ValidationException(
                        f'Cannot create already existing inference component "'
                        f'{self._plane._arn(KIND, name)}".'
                    )
                endpoint, variant = self._host_variant(params["EndpointName"], params)
                specification = params.get("Specification")
                runtime = params.get("RuntimeConfig")
                if specification is None or runtime is None:
                    raise ValidationException(
                        "CreateInferenceComponent needs a Specification and a RuntimeConfig "
                        "(CopyCount)."
                    )
                self._check_specification(specification)
                doc = {
                    "EndpointName": endpoint.name,
                    "VariantName": variant.variant_name,
                    "Specification": specification,
                    "RuntimeConfig": {"CopyCount": int(runtime["CopyCount"])},
                    "placement": [],
                    "revision": 0,
                }
                resource = self._plane._insert(
                    KIND, name, doc, status="Creating", tags=_tags(params)
                )
                specs = self._replace_all(endpoint.name, touched=resource.name)
            self._apply_all(specs)
        return {"InferenceComponentArn": resource.arn}

    def describe(self, params: dict[str, Any]) -> dict[str, Any]:
        resource = self._component(params["InferenceComponentName"])
        doc = resource.doc
        specification = dict(doc["Specification"])
        container = specification.get("Container")
        if container is not None:
            summary: dict[str, Any] = {
                "DeployedImage": {
                    "SpecifiedImage": container["Image"],
                    "ResolvedImage": container["Image"],
                    "ResolutionTime": resource.created,
                }
            }
            for member in ("ArtifactUrl", "Environment"):
                if member in container:
                    summary[member] = container[member]
            specification["Container"] = summary
        out: dict[str, Any] = {
            "InferenceComponentName": resource.name,
            "InferenceComponentArn": resource.arn,
            "EndpointName": doc["EndpointName"],
            "EndpointArn": self._plane._arn("endpoint", doc["EndpointName"]),
            "VariantName": doc["VariantName"],
            "Specification": specification,
            "RuntimeConfig": {
                "DesiredCopyCount": int(doc["RuntimeConfig"]["CopyCount"]),
                "CurrentCopyCount": int(doc.get("current", 0)),
            },
            "CreationTime": resource.created,
            "LastModifiedTime": resource.modified,
            "InferenceComponentStatus": resource.status,
        }
        if doc.get("FailureReason"):
            out["FailureReason"] = doc["FailureReason"]
        if doc.get("LastDeploymentConfig"):
            out["LastDeploymentConfig"] = doc["LastDeploymentConfig"]
        return self._plane._shape_output("DescribeInferenceComponent", out)

    def listing(self, params: dict[str, Any]) -> dict[str, Any]:
        """Filtered and sorted in memory: an account's components are few (SageMaker's quota
        is in the hundreds), and the endpoint and variant filters are not columns."""
        rows = [r for r in self._plane._store.all(KIND) if _matches(r, params)]
        order = params.get("SortBy", "CreationTime")
        key = {
            "Name": lambda r: (r.name.lower(), r.created),
            "Status": lambda r: (r.status or "", r.created),
        }.get(order, lambda r: (r.created, r.name.lower()))
        rows.sort(key=key, reverse=params.get("SortOrder", "Descending") == "Descending")
        start = offset_from_token(params.get("NextToken"))
        size = int(params.get("MaxResults", DEFAULT_PAGE))
        out: dict[str, Any] = {
            "InferenceComponents": [
                {
                    "InferenceComponentName": r.name,
                    "InferenceComponentArn": r.arn,
                    "EndpointName": r.doc["EndpointName"],
                    "EndpointArn": self._plane._arn("endpoint", r.doc["EndpointName"]),
                    "VariantName": r.doc["VariantName"],
                    "InferenceComponentStatus": r.status,
                    "CreationTime": r.created,
                    "LastModifiedTime": r.modified,
                }
                for r in rows[start : start + size]
            ]
        }
        if start + size < len(rows):
            out["NextToken"] = offset_token(start + size)
        return out

    def update(self, params: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if params.get("Specification") is not None:
            self._check_specification(params["Specification"])
            changes["Specification"] = params["Specification"]
        if params.get("RuntimeConfig") is not None:
            changes["RuntimeConfig"] = {"CopyCount": int(params["RuntimeConfig"]["CopyCount"])}
        rolling = rolling_update(params.get("DeploymentConfig"))
        if params.get("DeploymentConfig") is not None:
            changes["LastDeploymentConfig"] = params["DeploymentConfig"]
        return self._change(params["InferenceComponentName"], changes, rolling)

    def update_runtime(self, params: dict[str, Any]) -> dict[str, Any]:
        copies = int(params["DesiredRuntimeConfig"]["CopyCount"])
        return self._change(
            params["InferenceComponentName"], {"RuntimeConfig": {"CopyCount": copies}}
        )

    def delete(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["InferenceComponentName"]
        with self._plane._deploy_lock:
            with self._plane._lock:
                resource = self._plane._store.delete(KIND, name)
                if resource is None:
                    raise self._component_missing(name)
                # Room freed: components short of copies may fit now.
                specs = self._replace_all(resource.doc["EndpointName"], touched=None)
            self._plane._tell(lambda: self._plane._deployer.remove(component_key(resource.name)))
            self._apply_all(specs)
        return {}

    def _apply_all(self, specs: list[EndpointSpec]) -> None:
        """Tell the deployer (after the commit) to run each spec."""
        deployer = self._plane._deployer
        for spec in specs:
            self._plane._tell(functools.partial(deployer.apply, spec))

    # -- lifecycle ----------------------------------------------------------------------------
    def _change(
        self, name: str, changes: dict[str, Any], rolling: RollingUpdate | None = None
    ) -> dict[str, Any]:
        with self._plane._deploy_lock:
            with self._plane._lock:
                resource = self._component(name)
                if resource.status in IN_PROGRESS:
                    raise ValidationException(
                        f'Cannot update in-progress inference component "{resource.arn}": '
                        f"its status is {resource.status}."
                    )
                previous = {
                    k: resource.doc.get(k) for k in ("Specification", "RuntimeConfig", "spec")
                }
                doc = {**resource.doc, **changes, "previous": previous, "FailureReason": None}
                self._plane._store.update(
                    dataclasses.replace(resource, status="Updating", modified=time.time(), doc=doc)
                )
                specs = self._replace_all(
                    doc["EndpointName"], touched=resource.name, rolling=rolling
                )
            self._apply_all(specs)
        return {"InferenceComponentArn": resource.arn}

    def _replace_all(
        self, endpoint_name: str, touched: str | None, rolling: RollingUpdate | None = None
    ) -> list[EndpointSpec]:
        """Place every component of the endpoint again and store the answer; the specs to
        hand the deployer: the touched component's, and any other whose copies moved (a
        component short of copies that fits now). Called under the lock."""
        endpoint = self._plane._store.get("endpoint", endpoint_name)
        if endpoint is None:
            return []
        host = EndpointState.from_doc(endpoint.doc).spec
        specs: list[EndpointSpec] = []
        for variant in host.variants:
            members = sorted(
                (
                    r
                    for r in self._plane._store.all(KIND)
                    if r.doc["EndpointName"].lower() == endpoint.name.lower()
                    and r.doc["VariantName"] == variant.variant_name
                ),
                key=lambda r: r.created,
            )
            placement = place(self._fleet(variant, members), [_demand(r) for r in members])
            for resource in members:
                copies = list(placement.copies.get(resource.name, ()))
                moved = copies != list(resource.doc.get("placement") or ())
                if resource.name != touched and not moved:
                    continue
                how = rolling if resource.name == touched else None
                specs.append(self._restage(resource, host, variant, placement, copies, how))
        return specs

    def _restage(
        self,
        resource: Resource,
        host: EndpointSpec,
        variant: VariantSpec,
        placement: Placement,
        copies: list[int],
        rolling: RollingUpdate | None = None,
    ) -> EndpointSpec:
        """Store the component's new placement and revision; its spec to run."""
        revision = int(self._plane._store.next_value("revision"))
        spec = dataclasses.replace(
            self._component_spec(resource, host, variant, copies, revision), rolling=rolling
        )
        previous = resource.doc.get("previous")
        if previous is None and resource.doc.get("spec") is not None:
            # What to go back to if the new copies fail to start.
            previous = {k: resource.doc.get(k) for k in ("Specification", "RuntimeConfig", "spec")}
        doc = {
            **resource.doc,
            "previous": previous,
            "placement": copies,
            "revision": revision,
            "pending": spec_to_json(spec),
            "short": placement.short.get(resource.name),
        }
        status = resource.status if resource.status in IN_PROGRESS else "Updating"
        self._plane._store.update(
            dataclasses.replace(resource, status=status, modified=time.time(), doc=doc)
        )
        return spec

    def _fleet(self, variant: VariantSpec, members: Iterable[Resource]) -> Fleet:
        capacity = self._plane._instance_types.capacity(variant.instance_type)
        managed = variant.max_instances is not None
        floor = (variant.min_instances or 0) if managed else variant.instance_count
        used = [i for r in members for i in (r.doc.get("placement") or ())]
        instances = max([floor, *(i + 1 for i in used)])
        if managed and not used:
            instances = max(floor, min(variant.instance_count, variant.max_instances or 0))
        return Fleet(
            capacity=capacity,
            instances=instances,
            managed=managed,
            min_instances=variant.min_instances or 0,
            max_instances=variant.max_instances or 0,
        )

    def component_instances(self, endpoint: EndpointSpec) -> dict[str, int]:
        """The instances each variant of a components endpoint runs now (DescribeEndpoint)."""
        members = [
            r
            for r in self._plane._store.all(KIND)
            if r.doc["EndpointName"].lower() == endpoint.endpoint_name.lower()
        ]
        return {
            v.variant_name: self._fleet(
                v, [r for r in members if r.doc["VariantName"] == v.variant_name]
            ).instances
            for v in endpoint.variants
        }

    def _component_spec(
        self,
        resource: Resource,
        host: EndpointSpec,
        variant: VariantSpec,
        copies: list[int],
        revision: int,
    ) -> EndpointSpec:
        specification = resource.doc["Specification"]
        compute = specification.get("ComputeResourceRequirements") or {}
        startup = specification.get("StartupParameters") or {}
        container, model_name, role = self._container_of(resource.name, specification)
        memory = compute.get("MaxMemoryRequiredInMb")
        return EndpointSpec(
            endpoint_name=component_key(resource.name),
            endpoint_arn=resource.arn,
            endpoint_config_name=host.endpoint_config_name,
            variants=(
                VariantSpec(
                    variant_name=variant.variant_name,
                    model_name=model_name,
                    containers=(container,),
                    mode="Serial",
                    instance_count=len(copies),
                    instance_type=variant.instance_type,
                    startup_timeout_s=startup.get("ContainerStartupHealthCheckTimeoutInSeconds"),
                    download_timeout_s=int(
                        startup.get("ModelDataDownloadTimeoutInSeconds", DEFAULT_DOWNLOAD_TIMEOUT_S)
                    ),
                    execution_role_arn=role or variant.execution_role_arn,
                    cpus=compute.get("NumberOfCpuCoresRequired"),
                    memory_mb=int(memory) if memory is not None else None,
                    reserved_memory_mb=compute.get("MinMemoryRequiredInMb"),
                    routing=variant.routing,
                    copy_instances=tuple(copies),
                ),
            ),
            revision=revision,
            component=ComponentRef(
                component_name=resource.name,
                endpoint_name=host.endpoint_name,
                variant_name=variant.variant_name,
            ),
        )

    def _container_of(
        self, component: str, specification: dict[str, Any]
    ) -> tuple[ContainerSpec, str, str | None]:
        """The container a copy runs, the model's name, and its role: from the stored model
        (its one container) or the inline Container. The hostname is the component's name."""
        inline = specification.get("Container")
        if inline is not None:
            return (
                ContainerSpec(
                    hostname=component,
                    image=inline["Image"],
                    model_data_url=inline.get("ArtifactUrl"),
                    environment=dict(inline.get("Environment") or {}),
                ),
                component,
                None,
            )
        model = self._plane._get("model", specification["ModelName"])
        _, containers = model_containers(model.name, model.doc)
        found = containers[0]
        return (
            dataclasses.replace(found, hostname=component),
            model.name,
            model.doc.get("ExecutionRoleArn"),
        )

    def _check_specification(self, specification: dict[str, Any]) -> None:
        """What a component must say to be run here (the shape allows leaving most out)."""
        model_name = specification.get("ModelName")
        inline = specification.get("Container")
        if (model_name is None) == (inline is None):
            raise ValidationException(
                "Specification must give exactly one of ModelName (a model created with "
                "CreateModel) and Container (Image, ArtifactUrl, Environment)."
            )
        compute = specification.get("ComputeResourceRequirements")
        if compute is None:
            raise ValidationException(
                "Specification.ComputeResourceRequirements is required: copies are placed by "
                "the vCPUs and memory they reserve (at least MinMemoryRequiredInMb)."
            )
        low, high = compute.get("MinMemoryRequiredInMb"), compute.get("MaxMemoryRequiredInMb")
        if low is not None and high is not None and high < low:
            raise ValidationException(
                f"ComputeResourceRequirements.MaxMemoryRequiredInMb ({high}) must not be less "
                f"than MinMemoryRequiredInMb ({low})."
            )
        if model_name is not None:
            model = self._plane._get("model", model_name)
            _, containers = model_containers(model.name, model.doc)
            if len(containers) != 1 or containers[0].multi_model:
                raise ValidationException(
                    f"Model {model.name} has {len(containers)} containers"
                    f"{' in MultiModel mode' if containers and containers[0].multi_model else ''}"
                    ": an inference component runs a model of one single-model container."
                )
            image = containers[0].image
        else:
            assert inline is not None
            image = inline["Image"]
        if not self._plane._images.knows_image(image):
            raise ValidationException(
                f"Image '{image}' is not one this server knows. Known images: "
                f"{', '.join(self._plane._images.known_images())}."
            )

    def _host_variant(
        self, endpoint_name: str, params: dict[str, Any]
    ) -> tuple[Resource, VariantSpec]:
        endpoint = self._plane._get("endpoint", endpoint_name)
        spec = EndpointState.from_doc(endpoint.doc).spec
        if not spec.for_components:
            raise ValidationException(
                f"Endpoint {endpoint.name} does not host inference components: its endpoint "
                "configuration's variants name models. Create an endpoint from a "
                "configuration whose ProductionVariants give InstanceType and "
                "InitialInstanceCount and no ModelName."
            )
        if endpoint.status in ("Failed", "Deleting"):
            raise ValidationException(
                f"Endpoint {endpoint.name} is {endpoint.status}: components are placed on an "
                "endpoint that is Creating, Updating or InService."
            )
        wanted = params.get("VariantName")
        names = [v.variant_name for v in spec.variants]
        if wanted is None:
            if len(spec.variants) != 1:
                raise ValidationException(
                    f"Endpoint {endpoint.name} has variants {', '.join(names)}: give VariantName."
                )
            return endpoint, spec.variants[0]
        for variant in spec.variants:
            if variant.variant_name == wanted:
                return endpoint, variant
        raise ValidationException(
            f"Variant {wanted} not found on endpoint {endpoint.name}: VariantName must be one "
            f"of [{', '.join(names)}]."
        )

    def _component(self, name: str) -> Resource:
        resource = self._plane._store.get(KIND, name)
        if resource is None:
            raise self._component_missing(name)
        return resource

    def _component_missing(self, name: str) -> ValidationException:
        return ValidationException(
            f'Could not find inference component "{self._plane._arn(KIND, name)}".'
        )

    def components_on(self, endpoint_name: str) -> list[str]:
        return [
            r.name
            for r in self._plane._store.all(KIND)
            if r.doc["EndpointName"].lower() == endpoint_name.lower()
        ]

    # -- the deployer's reports and restarts --------------------------------------------------
    def component_report(self, report: StatusReport) -> None:
        """A report of a component's deployment (under the plane's lock)."""
        # The key holds the name lowercased; the store finds a name whatever its case.
        name = report.endpoint_name[len(COMPONENT_KEY_PREFIX) :]
        resource = self._plane._store.get(KIND, name)
        if resource is None:
            return
        doc = dict(resource.doc)
        if report.revision != doc.get("revision"):
            return  # superseded
        copies = sum(v.current_instance_count for v in report.variants)
        short = doc.get("short")
        status = resource.status or "Creating"
        if report.status == "InService" and report.failure_reason is None:
            status = "InService"
            doc["current"] = copies
            doc["FailureReason"] = short
            if doc.get("pending") is not None:
                doc["spec"] = doc.pop("pending")
            doc.pop("previous", None)
        elif report.status == "InService":
            # The new copies did not start; the previous ones serve: the change is rolled back.
            previous = doc.pop("previous", None) or {}
            doc.pop("pending", None)
            doc.update({k: v for k, v in previous.items() if v is not None})
            if previous.get("spec") is not None:
                rollback = spec_from_json(previous["spec"])
                doc["placement"] = list(rollback.variants[0].copy_instances)
                doc["revision"] = rollback.revision  # the revision that still serves
            doc["current"] = copies
            doc["FailureReason"] = (
                f"The update failed and was rolled back: {report.failure_reason}"
            )[:1024]
            status = "InService"
        elif report.status == "Failed":
            doc.pop("previous", None)
            doc.pop("pending", None)
            doc["FailureReason"] = (
                report.failure_reason or "The component's copies did not start."
            )[:1024]
            doc["current"] = 0
            status = "Failed"
        else:
            return
        changed = status != resource.status or doc != resource.doc
        if changed:
            self._plane._store.update(
                dataclasses.replace(resource, status=status, modified=time.time(), doc=doc)
            )

    def desired_components(self) -> list[EndpointSpec]:
        """Every component deployment that should run (at server start)."""
        specs: list[EndpointSpec] = []
        for resource in self._plane._store.all(KIND):
            raw = resource.doc.get("pending") or resource.doc.get("spec")
            if raw is not None and resource.status != "Failed":
                specs.append(spec_from_json(raw))
        return specs


def _matches(resource: Resource, params: dict[str, Any]) -> bool:
    doc = resource.doc
    contains = params.get("NameContains")
    checks = (
        contains is None or contains.lower() in resource.name.lower(),
        params.get("EndpointNameEquals") is None
        or params["EndpointNameEquals"].lower() == doc["EndpointName"].lower(),
        params.get("VariantNameEquals") is None
        or params["VariantNameEquals"] == doc["VariantName"],
        params.get("StatusEquals") is None or params["StatusEquals"] == resource.status,
        params.get("CreationTimeBefore") is None
        or resource.created < float(params["CreationTimeBefore"]),
        params.get("CreationTimeAfter") is None
        or resource.created > float(params["CreationTimeAfter"]),
        params.get("LastModifiedTimeBefore") is None
        or resource.modified < float(params["LastModifiedTimeBefore"]),
        params.get("LastModifiedTimeAfter") is None
        or resource.modified > float(params["LastModifiedTimeAfter"]),
    )
    return all(checks)


# -- registered with the control plane -----------------------------------------------------


@operation("CreateInferenceComponent")
def _create_component(plane: ControlPlane, params: dict[str, Any]) -> dict[str, Any]:
    return plane.components.create(params)


@operation("DescribeInferenceComponent")
def _describe_component(plane: ControlPlane, params: dict[str, Any]) -> dict[str, Any]:
    return plane.components.describe(params)


@operation("ListInferenceComponents")
def _list_components(plane: ControlPlane, params: dict[str, Any]) -> dict[str, Any]:
    return plane.components.listing(params)


@operation("UpdateInferenceComponent")
def _update_component(plane: ControlPlane, params: dict[str, Any]) -> dict[str, Any]:
    return plane.components.update(params)


@operation("UpdateInferenceComponentRuntimeConfig")
def _update_component_runtime(plane: ControlPlane, params: dict[str, Any]) -> dict[str, Any]:
    return plane.components.update_runtime(params)


@operation("DeleteInferenceComponent")
def _delete_component(plane: ControlPlane, params: dict[str, Any]) -> dict[str, Any]:
    return plane.components.delete(params)
