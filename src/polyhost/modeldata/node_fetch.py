"""Model data fetched by the machine a container runs on, for backends that place containers on
other machines (Ray): `s3://` and `https://` are fetched by the node that needs them.

The node runs the server's own artifact code (`ArtifactStore`: the same host policy, size and
ratio caps and safe extraction, and its content-addressed cache, shared by every agent of that
node) with the server's limits, carried in this small object. Only the URL and the limits
travel: the node fetches with its own credentials and S3 endpoint (its environment, or its
machine's role), never the server's. `file://` data, which only the server's machine has, is
fetched by the server and shipped instead (`backends.ray_models`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from polyhost.modeldata.store import ArtifactError, ArtifactStore

NODE_LOCAL_SCHEMES = ("s3://", "https://")

_stores: dict[Path, ArtifactStore] = {}
_stores_lock = threading.Lock()


def fetched_on_node(url: str) -> bool:
    return url.lower().startswith(NODE_LOCAL_SCHEMES)


class ModelFetchFailed(Exception):
    """The node could not get the model data; the message is fit for a FailureReason."""


@dataclass(frozen=True)
class NodeModelFetch:
    """`backends.base.ModelFetch`: what the node needs to fetch one model like the server."""

    url: str
    timeout_s: float
    container: str  # the container's hostname, for the message
    variant: str
    max_bytes: int
    max_ratio: int
    workers: int
    allow_hosts: tuple[str, ...]

    @property
    def source(self) -> str:
        return self.url

    def __call__(self, cache_root: Path) -> Path:
        try:
            return self._store(cache_root).fetch_and_extract(self.url, self.timeout_s)
        except ArtifactError as error:
            raise ModelFetchFailed(
                f"Could not get the model data of container {self.container} for production "
                f"variant {self.variant}: {error}"
            ) from None

    def _store(self, cache_root: Path) -> ArtifactStore:
        """One store per cache folder and process (an agent fetches all its models with it)."""
        with _stores_lock:
            store = _stores.get(cache_root)
            if store is None:
                store = _stores[cache_root] = ArtifactStore(
                    cache_root,
                    self.max_bytes,
                    max_ratio=self.max_ratio,
                    workers=self.workers,
                    allow_hosts=self.allow_hosts,
                )
            return store
