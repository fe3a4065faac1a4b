"""Data capture as the server runs it: which endpoints capture, the hot path's one call, and
the writer's lifetime.

`targets` maps an endpoint's name to its `CaptureTarget`, for the revision that serves it: the
deployer calls `serving_changed` (on the event loop) when a revision starts serving or the
endpoint is removed, and the whole dict is replaced, as the routing table is. The runtime
adapter reads `targets` once per invocation: empty (no endpoint captures) it is one attribute
check and nothing else. For an endpoint that captures, `sampled` draws and `offer` queues the
invocation as one tuple; neither blocks, raises or touches S3.

Shadow variants' copies are captured too, under the shadow's name, as SageMaker does: the
router's shadow mirror asks `shadow_sample` when it sends a copy and hands the copy's answer
to `offer_shadow` (`router/shadow.py`), drawn and queued as any invocation.
"""

from __future__ import annotations

import time

from prometheus_client.registry import Collector

from polyhost.capture.buffer import CaptureBuffer
from polyhost.capture.config import CaptureTarget, capture_target
from polyhost.capture.counters import CaptureCollector, CaptureCounters
from polyhost.capture.process import WRITE_TIMEOUT_S
from polyhost.capture.writer import CaptureWriter
from polyhost.control.seam import EndpointSpec
from polyhost.router.router import InvokeRequest, InvokeResult
from polyhost.settings import Settings

__all__ = ["STOP_TIMEOUT_S", "WRITE_TIMEOUT_S", "DataCapture"]

# How long the last flush may hold the server's exit.
STOP_TIMEOUT_S = 15.0


class DataCapture:
    def __init__(self, settings: Settings) -> None:
        self.targets: dict[str, CaptureTarget] = {}
        self.counters = CaptureCounters()
        self.buffer = CaptureBuffer(
            settings.data_capture_max_queued,
            settings.data_capture_max_queued_bytes,
            settings.data_capture_max_record_bytes,
        )
        self.writer = CaptureWriter(
            self.buffer,
            self.counters,
            settings.data_capture_flush_s,
            settings.role_credentials,
        )

    # -- the deployer (event loop) ------------------------------------------------------------
    def serving_changed(self, endpoint_name: str, spec: EndpointSpec | None) -> None:
        """`spec` now serves `endpoint_name` (None: nothing does any more)."""
        target = None if spec is None else capture_target(spec)
        targets = dict(self.targets)
        if target is None:
            targets.pop(endpoint_name, None)
        else:
            targets[endpoint_name] = target
            self.writer.warm(target)
        self.targets = targets
        if spec is None:
            self.counters.forget(endpoint_name)

    # -- the runtime adapter (event loop, per invocation) -----------------------------------
    def offer(self, target: CaptureTarget, request: InvokeRequest, result: InvokeResult) -> None:
        """Queue a sampled invocation that was answered; counted as dropped when the buffer
        cannot take it. A tuple of references (no copy, no formatting): the writer process
        does the rest."""
        sent = request.body if target.capture_input else None
        answer = result.body if target.capture_output else None
        size = (0 if sent is None else len(sent)) + (0 if answer is None else len(answer))
        row = (
            target.serial,
            result.variant,
            time.time(),
            sent,
            request.content_type,
            answer,
            result.content_type,
            request.inference_id,
        )
        if not self.buffer.put(target, row, size):
            self.counters.of(target.endpoint, result.variant).dropped += 1

    # -- the shadow mirror (event loop, per copy) ---------------------------------------------
    def shadow_sample(self, endpoint_name: str) -> CaptureTarget | None:
        """The target a shadow copy of `endpoint_name`'s request is captured under, when the
        endpoint captures and this copy is drawn; None otherwise."""
        targets = self.targets
        if not targets:
            return None
        target = targets.get(endpoint_name)
        if target is None or not target.sampler.sampled():
            return None
        return target

    def offer_shadow(self, sample: object, request: InvokeRequest, result: InvokeResult) -> None:
        """Queue a shadow copy's answer (`result.variant` is the shadow's name)."""
        assert isinstance(sample, CaptureTarget)
        self.offer(sample, request, result)

    # -- the server ---------------------------------------------------------------------------
    def start(self) -> None:
        self.writer.start()

    def stop(self) -> None:
        """Write what is queued and stop (blocking: run it in a thread from the loop)."""
        self.writer.stop(STOP_TIMEOUT_S)

    def collector(self) -> Collector:
        return CaptureCollector(self.counters)
