"""A multi-model container's models on its Ray node: shipped by the server, one per load.

The router fetches and extracts each model through the artifact store on the server, as on any
backend, but a Ray node does not see the server's disk. `RayModelStaging.stage` packs the
extracted folder (`models.pack`, within `--model-max-bytes`), puts it in Ray's object store,
and asks the agent of the container's instance to unpack it into a folder of its own in the
container's model folder on its node (`InstanceAgent.stage_model`); the load names the path
the agent answers. `remove` asks the agent to remove that folder (`unstage_model`). The object
store's copy is dropped once the agent has unpacked it: a node keeps only loaded models, and the
cluster's object store none.

The staging looks its instance up at each call (`InstanceFinder.placed`), so it follows its
container when the instance is placed again after a loss (a new agent, perhaps on another
node): a model staged with an agent that is gone went with its container, which starts again
with an empty model folder (the agent empties it on every start and stop).

Each call is awaited without holding the event loop (`calls`): packing and `ray.put` on
RAY_CALLS, the agent's answer as a future, bounded in time, so a lost node fails the load with
a reason instead of hanging it. A stage given up on (its time passed) is withdrawn: the agent
removes the folder if it made it, or refuses to finish making it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from polyhost.backends.base import ModelStagingFailed, NodeModelStaging
from polyhost.backends.ray import models as ray_models
from polyhost.backends.ray.calls import awaited, cause, ray_call

if TYPE_CHECKING:
    from polyhost.backends.ray.container import PlacedInstance

log = logging.getLogger("polyhost.backends.ray")

STAGE_BASE_S = 60.0  # the agent's answer to a stage: this, plus the time its bytes take
STAGE_BYTES_PER_S = 50 * 1024 * 1024  # the slowest transfer and unpack a stage allows for
REMOVE_TIMEOUT_S = 30.0


class InstanceFinder(Protocol):
    """The Ray backend, as a staging sees it: where an instance is placed now."""

    def placed(self, key: str) -> PlacedInstance | None: ...


@dataclass(frozen=True)
class RayModelStaging(NodeModelStaging):
    """The staging of one multi-model container: its instance (`key`) and its id there. Tokens
    are the names of the models' folders on the node (`models.staged_name`)."""

    finder: InstanceFinder
    key: str
    container_id: str
    max_bytes: int

    async def stage(self, folder: Path, target: str) -> tuple[str, str]:
        instance = self._instance()
        digest, ref, size = await self._put(folder)
        name = ray_models.staged_name(target)
        timeout_s = STAGE_BASE_S + size / STAGE_BYTES_PER_S
        call = instance.agent.stage_model.remote(self.container_id, name, digest, [ref])
        del ref  # the call holds it; the object store's copy goes once the agent answered
        try:
            path: str = await asyncio.wait_for(awaited(call), timeout_s)
        except TimeoutError:
            self._withdraw(instance, name)
            raise ModelStagingFailed(
                f"the agent of its instance on node {instance.node_ip} did not unpack it within "
                f"{timeout_s:.0f} s"
            ) from None
        except asyncio.CancelledError:
            self._withdraw(instance, name)
            raise
        except Exception as error:
            raise ModelStagingFailed(self._failure(instance, error)) from None
        return name, path

    async def remove(self, token: str) -> None:
        instance = self.finder.placed(self.key)
        if instance is None or instance.lost is not None:
            return  # gone with its agent: the container starts again with an empty folder
        try:
            await asyncio.wait_for(
                awaited(instance.agent.unstage_model.remote(self.container_id, token)),
                REMOVE_TIMEOUT_S,
            )
        except TimeoutError:
            raise ModelStagingFailed(
                f"the agent on node {instance.node_ip} did not remove model folder {token} "
                f"within {REMOVE_TIMEOUT_S:g} s"
            ) from None
        except Exception as error:
            raise ModelStagingFailed(self._failure(instance, error)) from None

    def _instance(self) -> PlacedInstance:
        instance = self.finder.placed(self.key)
        if instance is None:
            raise ModelStagingFailed("its instance is not placed on the Ray cluster")
        if instance.lost is not None:
            raise ModelStagingFailed(f"its instance is gone: {instance.lost}")
        return instance

    async def _put(self, folder: Path) -> tuple[str, Any, int]:
        """The folder packed and put in the object store: (digest, reference, size)."""
        max_bytes = self.max_bytes

        def put() -> tuple[str, Any, int]:
            import ray

            digest, data = ray_models.pack(folder, max_bytes)
            return digest, ray.put(data), len(data)

        try:
            return await ray_call(put)
        except ray_models.ModelTooLarge:
            raise ModelStagingFailed(
                f"packed for its node, it is larger than {max_bytes} bytes (--model-max-bytes)"
            ) from None
        except OSError as error:
            raise ModelStagingFailed(
                f"it could not be packed for its node: {error.strerror or error}"
            ) from None
        except Exception as error:  # Ray's object store refusing it
            raise ModelStagingFailed(
                f"it could not be put in Ray's object store: {cause(error)}"
            ) from None

    def _failure(self, instance: PlacedInstance, error: Exception) -> str:
        from ray.exceptions import RayActorError

        if isinstance(error, RayActorError):
            return f"the agent of its instance on node {instance.node_ip} is gone"
        return f"on node {instance.node_ip}: {cause(error)}"

    def _withdraw(self, instance: PlacedInstance, name: str) -> None:
        """Tell the agent to drop a stage given up on (not awaited: the answer changes nothing)."""
        try:
            instance.agent.unstage_model.remote(self.container_id, name)
        except Exception as error:
            log.debug("withdrawing model folder %s: %s", name, error)
