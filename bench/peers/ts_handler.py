"""TorchServe handler of the benchmark: JSON nested list in, JSON logits out, like polyhost.

TorchServe's default handlers expect images; this one takes the same JSON body polyhost/pytorch
gets (a 1×1×28×28 nested list), so both servers decode, run and encode the same things.
BaseHandler loads the TorchScript `model.pt` of the archive.
"""

import json

import torch
from ts.torch_handler.base_handler import BaseHandler


class JsonTensorHandler(BaseHandler):
    def preprocess(self, data):
        tensors = []
        for request in data:
            body = request.get("body") if request.get("body") is not None else request.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            tensors.append(torch.tensor(body, dtype=torch.float32))
        return torch.cat(tensors)

    def inference(self, data, *args, **kwargs):
        with torch.no_grad():
            return self.model(data)

    def postprocess(self, data):
        return [json.dumps(row.unsqueeze(0).tolist()) for row in data]
