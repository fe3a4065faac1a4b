"""The one-process baseline: the least a Python server can do to serve the digits model.

One starlette app under one uvicorn worker (uvloop, httptools, no access log, started by
`bench/peers/baseline.py`) that loads the joblib file named by BASELINE_MODEL, decodes
`{"instances": rows}` (or a bare array of rows) with orjson, predicts inline in the handler
and answers `{"predictions": [...]}` (a bare list to a bare array) with orjson. It has no
`/ping` worth the name while a prediction runs, no bounds and no bookkeeping: what a serving
stack is compared with, never a server to deploy.
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import numpy as np
import orjson
from starlette.applications import Starlette  # type: ignore[import-not-found]
from starlette.requests import Request  # type: ignore[import-not-found]
from starlette.responses import Response  # type: ignore[import-not-found]
from starlette.routing import Route  # type: ignore[import-not-found]

MODEL: Any = joblib.load(os.environ["BASELINE_MODEL"])


async def invocations(request: Request) -> Response:
    document = orjson.loads(await request.body())
    rows = document["instances"] if isinstance(document, dict) else document
    prediction = MODEL.predict(np.asarray(rows, dtype=np.float32)).tolist()
    answer = {"predictions": prediction} if isinstance(document, dict) else prediction
    return Response(orjson.dumps(answer), media_type="application/json")


async def ping(request: Request) -> Response:
    return Response(b"", media_type="text/plain")


app = Starlette(
    routes=[
        Route("/invocations", invocations, methods=["POST"]),
        Route("/ping", ping, methods=["GET"]),
    ]
)
