"""The control plane: SageMaker's model, endpoint config, endpoint and tag operations.

A plain object that knows nothing of HTTP: `call(operation, params)` takes the decoded JSON of
a request and returns the JSON of the answer, or raises a `ServiceError`. Each call runs in
three steps, each in its own module: validation (shape + cross-field rules, every violation
at once, then the members polyhost refuses rather than ignore: `support.py`), the store
(SQLite, committed before the answer), and for endpoints the deployer seam (told only after
the commit, so what it runs is always what a restart would bring back).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from polyhost.control.components import InferenceComponents
from polyhost.control.endpoints import (
    IN_PROGRESS,
    EndpointState,
    apply_report,
    begin_update,
    check_weights_and_capacities,
    describe,
    desired_spec,
    with_weights_and_capacities,
)
from polyhost.control.guardrails import deployment_guardrails
from polyhost.control.image_catalog import ImageCatalog
from polyhost.control.instance_types import InstanceTypes
from polyhost.control.listing import (
    offset_from_token,
    offset_token,
    page_query,
    paginate,
)
from polyhost.control.operations import HANDLERS, operation
from polyhost.control.rules import RULES, RuleContext
from polyhost.control.schema import Schema, load_schema, project
from polyhost.control.seam import (
    AlarmReader,
    ContainerSpec,
    Deployer,
    EndpointSpec,
    StatusReport,
)
from polyhost.control.specs import build_spec, config_variants, model_containers
from polyhost.control.store import Kind, Resource, Store, StoreClosed, StoreUnwritable
from polyhost.control.support import capabilities, refuse_unsupported
from polyhost.control.validation import Validator, raise_if_any
from polyhost.errors import (
    InternalFailure,
    StateDirUnwritable,
    UnknownOperationException,
    ValidationException,
)
from polyhost.modeldata.local_policy import LocalModelPolicy
from polyhost.naming import is_component_key
from polyhost.settings import Settings

log = logging.getLogger("polyhost.control")

MAX_TAGS = 50
DEFAULT_TAG_PAGE = 50

# How messages name each kind ("Could not find endpoint configuration ...").
LABELS: dict[Kind, str] = {
    "model": "model",
    "endpoint-config": "endpoint configuration",
    "endpoint": "endpoint",
    "inference-component": "inference component",
}


def unwritable_message(error: StoreUnwritable) -> str:
    """What a caller is told when the state dir did not take a write: where, and what to do."""
    if error.full:
        problem = f"The state dir {error.folder} is full"
        fix = "free space on its disk, then retry"
    else:
        problem = f"The state dir {error.folder} could not be written"
        fix = "check its disk, then retry"
    return (
        f"{problem}: polyhost could not record this change (SQLite: {error.detail}). Nothing "
        f"was changed; {fix}."
    )


def _tags(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(t["Key"], t["Value"]) for t in params.get("Tags") or []]


class ControlPlane:
    """Thread-safe: the HTTP adapter calls it from worker threads, the deployer from its own."""

    def __init__(
        self,
        settings: Settings,
        deployer: Deployer,
        images: ImageCatalog,
        schema: Schema | None = None,
    ) -> None:
        self._settings = settings
        self._deployer = deployer
        self._images = images
        # The cross-field rules' view of the server; CreateModel's checks file:// model data
        # against the same local policy the artifact store applies when it fetches.
        self._rule_context = RuleContext(images, LocalModelPolicy.from_settings(settings))
        self._schema = schema or load_schema(OPERATIONS, cache_dir=settings.state_dir / "cache")
        self._validator = Validator(self._schema)
        self._capabilities = capabilities(settings)
        # What an instance holds, for placing inference components (`components.py`).
        self._instance_types = InstanceTypes(settings.instance_types)
        self._store = Store(settings.db_path)
        # Guards read-check-write sequences (existence checks, tag limits, status changes).
        self._lock = threading.RLock()
        # Held from an endpoint change's commit until the deployer has been told, so the
        # deployer sees changes of one endpoint in the order they were committed.
        self._deploy_lock = threading.Lock()
        self.components = InferenceComponents(self)
        # Endpoints whose update was restarted cold (after a server start): nothing old serves.
        self._cold: set[str] = set()
        # CloudWatch alarms' states, for AutoRollbackConfiguration (`bind_alarms`).
        self._alarm_state: AlarmReader | None = None

    def bind_alarms(self, reader: AlarmReader) -> None:
        """How UpdateEndpoint checks that the alarms a DeploymentConfig names exist."""
        self._alarm_state = reader

    # -- the entry points ---------------------------------------------------------------------
    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = HANDLERS.get(operation)
        if handler is None:
            raise UnknownOperationException(self._unknown(operation))
        shape = self._schema.input(operation)
        violations = self._validator.check(shape, params) if shape else []
        rule = RULES.get(operation)
        if rule is not None:
            violations += rule(params, self._rule_context)
        raise_if_any(violations)
        clean: dict[str, Any] = project(self._schema, shape, params) if shape else {}
        # Only a request SageMaker itself would take: its own messages for bad values first.
        refuse_unsupported(operation, clean, self._capabilities)
        try:
            return handler(self, clean)
        except StoreClosed:
            raise InternalFailure("The server is shutting down; try again.") from None
        except StoreUnwritable as error:
            raise StateDirUnwritable(unwritable_message(error)) from None

    def report(self, report: StatusReport) -> None:
        """A deployer status report (any thread); stale or unknown endpoints are ignored."""
        key = report.endpoint_name.lower()
        if is_component_key(report.endpoint_name):
            with self._lock:
                try:
                    self.components.component_report(report)
                except (StoreClosed, StoreUnwritable) as error:
                    log.warning("could not record a component's report: %s", error)
            return
        with self._lock:
            try:
                resource = self._store.get("endpoint", report.endpoint_name)
                if resource is None or resource.status is None:
                    return
                state = EndpointState.from_doc(resource.doc)
                now = time.time()
                moved = apply_report(
                    resource.status, state, report, now=now, cold=key in self._cold
                )
                if moved is None:
                    log.debug("ignoring stale report %s", report)
                    return
                status, new_state = moved
                if new_state.pending is None:
                    self._cold.discard(key)
                # LastModifiedTime marks changes a client sees, not every heartbeat of a report.
                changed = (status, new_state.config_name, new_state.failure_reason) != (
                    resource.status,
                    state.config_name,
                    state.failure_reason,
                )
                modified = now if changed else resource.modified
                self._store.update(
                    self._replace(
                        resource, status=status, modified=modified, doc=new_state.to_doc()
                    )
                )
            except StoreClosed:
                return
            except StoreUnwritable as error:
                # The deployer's next report (or a restart's reconciliation) records it.
                log.warning(
                    "endpoint %s: could not record a status report: %s",
                    report.endpoint_name,
                    unwritable_message(error),
                )
                return
            if status != resource.status:
                log.info(
                    "endpoint %s: %s -> %s%s",
                    resource.name,
                    resource.status,
                    status,
                    f" ({new_state.failure_reason})" if new_state.failure_reason else "",
                )

    def desired_endpoints(self) -> list[EndpointSpec]:
        """Every endpoint that should run, as the spec to run (called once, at server start)."""
        specs: list[EndpointSpec] = []
        with self._lock:
            for resource in self._store.all("endpoint"):
                state = EndpointState.from_doc(resource.doc)
                spec = desired_spec(resource.status or "", state)
                if spec is None:
                    continue
                if state.pending is not None:
                    self._cold.add(resource.name.lower())
                specs.append(spec)
            specs += self.components.desired_components()
        return specs

    def close(self) -> None:
        self._store.close()

    # -- helpers ------------------------------------------------------------------------------
    def _unknown(self, operation: str) -> str:
        supported = ", ".join(OPERATIONS)
        if operation in self._schema.all_operations:
            return (
                f"polyhost does not implement the SageMaker operation {operation}. "
                f"It implements: {supported}."
            )
        shown = operation if len(operation) <= 100 else operation[:97] + "..."
        return f"Unknown operation '{shown}'. polyhost implements: {supported}."

    def _arn(self, kind: Kind, name: str) -> str:
        return self._settings.arn(kind, name)

    def _not_found(self, kind: Kind, name: str) -> ValidationException:
        return ValidationException(f'Could not find {LABELS[kind]} "{self._arn(kind, name)}".')

    def _get(self, kind: Kind, name: str) -> Resource:
        resource = self._store.get(kind, name)
        if resource is None:
            raise self._not_found(kind, name)
        return resource

    def _insert(self, kind: Kind, name: str, doc: dict[str, Any], **extra: Any) -> Resource:
        now = time.time()
        arn = self._arn(kind, name)
        resource = Resource(kind, name, arn, now, now, extra.get("status"), doc)
        if not self._store.insert(resource, extra.get("tags", ())):
            raise ValidationException(f'Cannot create already existing {LABELS[kind]} "{arn}".')
        return resource

    @staticmethod
    def _replace(
        resource: Resource, *, status: str, modified: float, doc: dict[str, Any]
    ) -> Resource:
        return Resource(
            resource.kind, resource.name, resource.arn, resource.created, modified, status, doc
        )

    def _shape_output(self, operation: str, out: dict[str, Any]) -> dict[str, Any]:
        """Drop what the output shape does not have (Tags given at creation, say)."""
        shape = self._schema.output(operation)
        shaped: dict[str, Any] = project(self._schema, shape, out) if shape else out
        return shaped

    def _list(
        self,
        kind: Kind,
        params: dict[str, Any],
        key: str,
        summary: Callable[[Resource], dict[str, Any]],
    ) -> dict[str, Any]:
        query = page_query(params)
        rows, token = paginate(query, self._store.page(kind, query))
        out: dict[str, Any] = {key: [summary(r) for r in rows]}
        if token:
            out["NextToken"] = token
        return out

    # -- models -------------------------------------------------------------------------------
    @operation("CreateModel")
    def _create_model(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = {k: v for k, v in params.items() if k != "Tags"}
        resource = self._insert("model", params["ModelName"], doc, tags=_tags(params))
        return {"ModelArn": resource.arn}

    @operation("DescribeModel")
    def _describe_model(self, params: dict[str, Any]) -> dict[str, Any]:
        model = self._get("model", params["ModelName"])
        out = {**model.doc, "ModelName": model.name, "ModelArn": model.arn}
        out["CreationTime"] = model.created
        return self._shape_output("DescribeModel", out)

    @operation("ListModels")
    def _list_models(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._list(
            "model",
            params,
            "Models",
            lambda r: {"ModelName": r.name, "ModelArn": r.arn, "CreationTime": r.created},
        )

    @operation("DeleteModel")
    def _delete_model(self, params: dict[str, Any]) -> dict[str, Any]:
        # Allowed while an endpoint uses it: the endpoint runs its own snapshot.
        with self._lock:
            if self._store.delete("model", params["ModelName"]) is None:
                raise self._not_found("model", params["ModelName"])
        return {}

    # -- endpoint configs ---------------------------------------------------------------------
    def _models_of(self, config: Mapping[str, Any]) -> dict[str, Resource]:
        """The models the config's variants name, all of which must exist."""
        names = [str(v["ModelName"]) for v, _ in config_variants(config) if v.get("ModelName")]
        found = self._store.get_many("model", names)
        for name in names:
            if name.lower() not in found:
                raise self._not_found("model", name)
        return found

    @operation("CreateEndpointConfig")
    def _create_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        models = self._models_of(params)
        _serverless_models(params, models)
        doc = {k: v for k, v in params.items() if k != "Tags"}
        resource = self._insert(
            "endpoint-config", params["EndpointConfigName"], doc, tags=_tags(params)
        )
        return {"EndpointConfigArn": resource.arn}

    @operation("DescribeEndpointConfig")
    def _describe_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        config = self._get("endpoint-config", params["EndpointConfigName"])
        out = {**config.doc, "EndpointConfigName": config.name, "EndpointConfigArn": config.arn}
        out["CreationTime"] = config.created
        return self._shape_output("DescribeEndpointConfig", out)

    @operation("ListEndpointConfigs")
    def _list_endpoint_configs(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._list(
            "endpoint-config",
            params,
            "EndpointConfigs",
            lambda r: {
                "EndpointConfigName": r.name,
                "EndpointConfigArn": r.arn,
                "CreationTime": r.created,
            },
        )

    @operation("DeleteEndpointConfig")
    def _delete_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        # Allowed while an endpoint uses it (the SageMaker SDK deletes it before the endpoint).
        with self._lock:
            if self._store.delete("endpoint-config", params["EndpointConfigName"]) is None:
                raise self._not_found("endpoint-config", params["EndpointConfigName"])
        return {}

    # -- endpoints ----------------------------------------------------------------------------
    def _resolve(self, endpoint: str, config_name: str, revision: int) -> EndpointSpec:
        """Snapshot config + models into a spec; everything named must exist and be runnable."""
        config = self._get("endpoint-config", config_name)
        models = self._models_of(config.doc)
        for model in models.values():
            _, containers = model_containers(model.name, model.doc)
            for container in containers:
                if not self._images.knows_image(container.image):
                    raise ValidationException(
                        f"Model {model.name} uses image '{container.image}', which this server "
                        f"does not know. Known images: {', '.join(self._images.known_images())}."
                    )
            self._check_multi_model(model.name, containers)
            if config.doc.get("ShadowProductionVariants") and any(
                c.multi_model for c in containers
            ):
                raise ValidationException(
                    f"Model {model.name} has a container with Mode MultiModel, which polyhost "
                    "does not run beside a shadow variant: its requests name a TargetModel "
                    "the shadow may not hold. Remove ShadowProductionVariants, or use a "
                    "single-model container."
                )
        return build_spec(
            endpoint_name=endpoint,
            endpoint_arn=self._arn("endpoint", endpoint),
            config_name=config.name,
            config=config.doc,
            models={key: (m.name, m.doc) for key, m in models.items()},
            revision=revision,
        )

    def _check_multi_model(self, model_name: str, containers: tuple[ContainerSpec, ...]) -> None:
        """A model with a MultiModel container runs on a backend that hands each loaded model's
        files to its container where that container sees them: by their path for a process,
        through its mounted model folder for a Docker container, shipped to its node on Ray.
        Every backend this server has does; a backend that cannot is refused here."""
        if not any(c.multi_model for c in containers):
            return
        backend = self._settings.backend
        if backend not in ("process", "docker", "ray"):
            raise ValidationException(
                f"Model {model_name} has a container with Mode MultiModel, which this server "
                f"does not serve on the {backend} backend (it serves them on the process, "
                "docker and ray backends)."
            )

    @operation("CreateEndpoint")
    def _create_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        with self._deploy_lock:
            with self._lock:
                if self._store.get("endpoint", name) is not None:
                    arn = self._arn("endpoint", name)
                    raise ValidationException(f'Cannot create already existing endpoint "{arn}".')
                revision = self._store.next_value("revision")
                spec = self._resolve(name, params["EndpointConfigName"], revision)
                state = EndpointState(
                    config_name=spec.endpoint_config_name,
                    spec=spec,
                    revision=revision,
                    deployment_config=params.get("DeploymentConfig"),
                )
                resource = self._insert(
                    "endpoint", name, state.to_doc(), status="Creating", tags=_tags(params)
                )
                self._cold.discard(name.lower())
            self._tell(lambda: self._deployer.apply(spec))
        return {"EndpointArn": resource.arn}

    @operation("DescribeEndpoint")
    def _describe_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._get("endpoint", params["EndpointName"])
        state = EndpointState.from_doc(endpoint.doc)
        out = describe(
            name=endpoint.name,
            arn=endpoint.arn,
            status=endpoint.status or "Creating",
            created=endpoint.created,
            modified=endpoint.modified,
            state=state,
        )
        if state.spec.for_components:
            # Instances come and go with the components placed on them (managed scaling).
            counts = self.components.component_instances(state.spec)
            for variant in out["ProductionVariants"]:
                count = counts.get(variant["VariantName"])
                if count is not None:
                    variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"] = count
        return self._shape_output("DescribeEndpoint", out)

    @operation("ListEndpoints")
    def _list_endpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._list(
            "endpoint",
            params,
            "Endpoints",
            lambda r: {
                "EndpointName": r.name,
                "EndpointArn": r.arn,
                "CreationTime": r.created,
                "LastModifiedTime": r.modified,
                "EndpointStatus": r.status,
            },
        )

    @operation("UpdateEndpoint")
    def _update_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._deploy_lock:
            with self._lock:
                endpoint = self._get("endpoint", params["EndpointName"])
                status = endpoint.status or "Creating"
                if status in IN_PROGRESS:
                    raise ValidationException(
                        f'Cannot update in-progress endpoint "{endpoint.arn}".'
                    )
                revision = self._store.next_value("revision")
                spec = self._resolve(endpoint.name, params["EndpointConfigName"], revision)
                current = EndpointState.from_doc(endpoint.doc)
                deployment = params.get("DeploymentConfig")
                if not deployment and params.get("RetainDeploymentConfig") is True:
                    deployment = current.deployment_config
                guardrails = deployment_guardrails(
                    deployment,
                    new=spec,
                    serving=current.spec,
                    alarm_state=self._alarm_state,
                )
                if guardrails is not None:
                    spec = replace(spec, guardrails=guardrails)
                now = time.time()
                state = begin_update(
                    current,
                    spec,
                    now=now,
                    status=status,
                    deployment_config=deployment,
                )
                self._store.update(
                    self._replace(endpoint, status="Updating", modified=now, doc=state.to_doc())
                )
                self._cold.discard(endpoint.name.lower())
            self._tell(lambda: self._deployer.apply(spec))
        return {"EndpointArn": endpoint.arn}

    @operation("UpdateEndpointWeightsAndCapacities")
    def _update_weights_and_capacities(self, params: dict[str, Any]) -> dict[str, Any]:
        """New instance counts and weights for some variants, applied in place by the
        deployer (the instances that stay keep running); Updating until they are live."""
        desired: list[dict[str, Any]] = params["DesiredWeightsAndCapacities"]
        with self._deploy_lock:
            with self._lock:
                endpoint = self._get("endpoint", params["EndpointName"])
                self._check_in_service(endpoint)
                state = EndpointState.from_doc(endpoint.doc)
                check_weights_and_capacities(endpoint.arn, state.spec, desired)
                revision = self._store.next_value("revision")
                spec = with_weights_and_capacities(state.spec, desired, revision)
                now = time.time()
                state = begin_update(
                    state, spec, now=now, status="InService", deployment_config=None
                )
                self._store.update(
                    self._replace(endpoint, status="Updating", modified=now, doc=state.to_doc())
                )
                self._cold.discard(endpoint.name.lower())
            self._tell(lambda: self._deployer.apply(spec))
        return {"EndpointArn": endpoint.arn}

    @staticmethod
    def _check_in_service(endpoint: Resource) -> None:
        """Weights and capacities change only on an endpoint that serves and is not changing."""
        status = endpoint.status or "Creating"
        if status in IN_PROGRESS:
            raise ValidationException(
                f'Cannot update in-progress endpoint "{endpoint.arn}": it is {status}; wait '
                "until it is InService (DescribeEndpoint, or the endpoint_in_service waiter)."
            )
        if status != "InService":
            raise ValidationException(
                f'Cannot update endpoint "{endpoint.arn}" in status {status}: its weights and '
                "capacities change only while it is InService. Deploy it again with "
                "UpdateEndpoint (or delete and create it)."
            )

    @operation("DeleteEndpoint")
    def _delete_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._deploy_lock:
            with self._lock:
                components = self.components.components_on(params["EndpointName"])
                if components:
                    raise ValidationException(
                        f"Endpoint {params['EndpointName']} still hosts inference components "
                        f"({', '.join(sorted(components))}): delete them first "
                        "(DeleteInferenceComponent)."
                    )
                endpoint = self._store.delete("endpoint", params["EndpointName"])
                if endpoint is None:
                    raise self._not_found("endpoint", params["EndpointName"])
                self._cold.discard(endpoint.name.lower())
            self._tell(lambda: self._deployer.remove(endpoint.name))
        return {}

    @staticmethod
    def _tell(notify: Callable[[], None]) -> None:
        """Tell the deployer; the change is committed, so a deployer error must not undo it."""
        try:
            notify()
        except Exception:
            # A restart reconciles from the store; the answer stays the committed truth.
            log.exception("the deployer refused a change")

    # -- tags ---------------------------------------------------------------------------------
    def _tagged(self, arn: str) -> Resource:
        """The resource an ARN names (only this server's models, configs and endpoints).

        Found whatever the ARN's case, so only when the lowercased ARN is the resource's own:
        that is the ARN the auth layer authorised (`auth.actions.tagged_resource`)."""
        parts = arn.split(":", 5)
        kind_name = parts[5] if len(parts) == 6 else ""
        kind, _, name = kind_name.partition("/")
        if kind not in LABELS or not name:
            raise ValidationException(
                "polyhost keeps tags on models, endpoint configurations, endpoints and "
                f"inference components only; '{arn}' names none of them."
            )
        typed: Kind = kind  # type: ignore[assignment]  # checked against LABELS above
        resource = self._store.get(typed, name)
        if resource is None or resource.arn.lower() != arn.lower():  # another region or account
            raise ValidationException(f'Could not find {LABELS[typed]} "{arn}".')
        return resource

    @operation("AddTags")
    def _add_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        tags = _tags(params)
        with self._lock:
            resource = self._tagged(params["ResourceArn"])
            count = self._store.add_tags(resource.kind, resource.name, tags, MAX_TAGS)
        if count is not None:
            raise ValidationException(
                f"A resource can have at most {MAX_TAGS} tags; {resource.arn} would have {count}."
            )
        return {"Tags": params["Tags"]}

    @operation("ListTags")
    def _list_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        resource = self._tagged(params["ResourceArn"])
        tags = self._store.tags(resource.kind, resource.name)
        start = offset_from_token(params.get("NextToken"))
        size = int(params.get("MaxResults", DEFAULT_TAG_PAGE))
        page = tags[start : start + size]
        out: dict[str, Any] = {"Tags": [{"Key": k, "Value": v} for k, v in page]}
        if start + size < len(tags):
            out["NextToken"] = offset_token(start + size)
        return out

    @operation("DeleteTags")
    def _delete_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            resource = self._tagged(params["ResourceArn"])
            self._store.delete_tags(resource.kind, resource.name, params["TagKeys"])
        return {}


OPERATIONS: tuple[str, ...] = tuple(HANDLERS)


def _serverless_models(config: Mapping[str, Any], models: Mapping[str, Resource]) -> None:
    """A serverless variant serves a model of its own containers: not a MultiModel one, whose
    models are loaded one by one into containers that stay (SageMaker refuses it too)."""
    for variant, _ in config_variants(config):
        if not variant.get("ServerlessConfig") or not variant.get("ModelName"):
            continue
        model = models[str(variant["ModelName"]).lower()].doc
        containers = [model.get("PrimaryContainer") or {}, *(model.get("Containers") or [])]
        if any(c.get("Mode") == "MultiModel" for c in containers if isinstance(c, dict)):
            raise ValidationException(
                f"Variant {variant['VariantName']} has a ServerlessConfig, but its model "
                f"{variant['ModelName']} is a multi-model one (Mode MultiModel), which a "
                "serverless variant cannot serve: give the variant InstanceType and "
                "InitialInstanceCount, or a model with Mode SingleModel."
            )
