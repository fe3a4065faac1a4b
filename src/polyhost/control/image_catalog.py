"""What the control plane needs to know about images: which names this server can run, and
which of them serve many models (SageMaker's multi-model API, `Mode: MultiModel`).

A Protocol rather than the registry itself, so the control plane does not depend on how
backends resolve images (`backends.images.ImageRegistry` satisfies it).
"""

from __future__ import annotations

from typing import Protocol


class ImageCatalog(Protocol):
    def knows_image(self, image: str) -> bool: ...

    def known_images(self) -> list[str]: ...

    def serves_multiple_models(self, image: str) -> bool: ...
