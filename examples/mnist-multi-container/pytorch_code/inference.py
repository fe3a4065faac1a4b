"""The PyTorch model's inference script, as in SageMaker's multi-container walkthrough.

It travels in model.tar.gz as `code/inference.py` next to `model.pth` (a state_dict), the layout
SageMaker's PyTorch inference container reads; polyhost/pytorch reads it unchanged. The network
is defined here once: the training script imports `Net` from this file, so what is trained is
exactly what is served.

Requests: application/json `{"inputs": [N x 1 x 28 x 28 floats]}` (per-image standardised).
Answers: application/json, N rows of 10 log-probabilities.
"""

import json
import os

import torch
from torch import nn
from torch.nn import functional as F

JSON = "application/json"


class Net(nn.Module):
    """The small CNN of PyTorch's MNIST example, the network the SageMaker walkthrough uses."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class RequestError(Exception):
    """Answered with `status_code` and `message` (the inference toolkit's error shape)."""

    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def model_fn(model_dir):
    model = Net()
    with open(os.path.join(model_dir, "model.pth"), "rb") as f:
        model.load_state_dict(torch.load(f, map_location="cpu"))
    model.eval()
    return model


def input_fn(request_body, request_content_type):
    if request_content_type.split(";")[0].strip() != JSON:
        raise RequestError(415, f"send {JSON}, not {request_content_type}")
    try:
        data = json.loads(request_body)["inputs"]
        tensor = torch.tensor(data, dtype=torch.float32)
    except (ValueError, KeyError, TypeError) as error:
        raise RequestError(
            400, f'expected {{"inputs": N x 1 x 28 x 28 numbers}}: {error}'
        ) from None
    if tensor.dim() != 4 or tuple(tensor.shape[1:]) != (1, 28, 28):
        raise RequestError(400, f"inputs must be N x 1 x 28 x 28, not {list(tensor.shape)}")
    return tensor


def predict_fn(data, model):
    with torch.no_grad():
        return model(data)


def output_fn(predictions, content_type):
    return json.dumps(predictions.cpu().numpy().tolist()), JSON
