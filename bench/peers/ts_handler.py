"""TorchServe handler of the benchmark: JSON nested list in, JSON logits out, like polyhost.

TorchServe's default handlers expect images; this one takes the same JSON body polyhost/pytorch
gets (a 1x1x28x28 nested list), so both servers decode, run and encode the same things.
BaseHandler loads the TorchScript `model.pt` of the archive.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler  # type: ignore[import-not-found]

log = logging.getLogger(__name__)


class JsonTensorHandler(BaseHandler):  # type: ignore[misc]
    def initialize(self, context: Any) -> None:
        super().initialize(context)
        log.info("bench handler ready: torch intra-op threads %d", torch.get_num_threads())

    def preprocess(self, data: list[dict[str, Any]]) -> Any:
        tensors = []
        for request in data:
            body = request.get("body") if request.get("body") is not None else request.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            tensors.append(torch.tensor(body, dtype=torch.float32))
        return torch.cat(tensors)

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.model(data)

    def postprocess(self, data: Any) -> list[str]:
        return [json.dumps(row.unsqueeze(0).tolist()) for row in data]
