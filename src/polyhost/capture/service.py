"""Data capture as the server runs it: which endpoints capture, the hot path's one call, and
the writer's lifetime.

`targets` maps an endpoint's name to its `CaptureTarget`, for the revision that serves it: the
deployer calls `serving_changed` (on the event loop) when a revision starts serving or the
endpoint is removed, and the whole dict is replaced, as the routing table is. The runtime
adapter reads `targets` once per invocation: empty (no endpoint captures) it is one attribute
check and nothing else. For an endpoint that captures, `sampled` draws and `offer` queues the
invocation; neither blocks, raises or touches S3.
"""

from __future__ import annotations

import time

from prometheus_client.registry import Collector

from polyhost.asyncinf.credentials import AwsClients
from polyhost.backends.role_credentials import RoleCredentials
from polyhost.capture.buffer import CaptureBuffer
from polyhost.capture.config import CaptureTarget, capture_target
from polyhost.capture.counters import CaptureCollector, CaptureCounters
from polyhost.capture.record import Captured
from polyhost.capture.writer import CaptureWriter
from polyhost.control.seam import EndpointSpec
from polyhost.router.router import InvokeRequest, InvokeResult
from polyhost.settings import Settings

# Seconds one S3 call may take; the writer's thread waits, never an invocation.
WRITE_TIMEOUT_S = 30.0
# How long the last flush may hold the server's exit.
STOP_TIMEOUT_S = 15.0


class DataCapture:
    def __init__(self, settings: Settings, clients: AwsClients | None = None) -> None:
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
            clients or AwsClients(RoleCredentials({}), WRITE_TIMEOUT_S),
            settings.data_capture_flush_s,
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
        cannot take it."""
        item = Captured(
            target=target,
            variant=result.variant,
            at=time.time(),
            request=request.body if target.capture_input else None,
            request_type=request.content_type,
            response=result.body if target.capture_output else None,
            response_type=result.content_type,
            inference_id=request.inference_id,
        )
        if not self.buffer.put(item):
            self.counters.of(target.endpoint, result.variant).dropped += 1

    # -- the server ---------------------------------------------------------------------------
    def start(self) -> None:
        self.writer.start()

    def stop(self) -> None:
        """Write what is queued and stop (blocking: run it in a thread from the loop)."""
        self.writer.stop(STOP_TIMEOUT_S)

    def collector(self) -> Collector:
        return CaptureCollector(self.counters)
