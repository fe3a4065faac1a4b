"""Shadow variants (ShadowProductionVariants): a copy of each request, off the caller's path.

SageMaker's shadow test runs a candidate model beside the production one on live traffic: the
caller always gets the production variant's answer, and the shadow's answer is dropped. Its
latency, errors and logs are its own (the shadow's containers count the copies they serve as
any container counts its invocations), which is the point of the test.

A copy is sent the way `Router.begin` sends a call: written at once on an idle kept-alive
connection of the shadow's container when there is one, else in a task; either way the caller's
request never waits for it and its outcome, answer or error, is only counted. Copies are sent
when the production call is routed, so the two run side by side, as SageMaker's do.

Bounds: at most `MAX_SHADOW_CALLS` copies and `MAX_SHADOW_BYTES` of their bodies in flight on
the server; past either, and when the shadow's container is saturated (`--max-inflight`), the
copy is dropped and counted (`dropped`, and one log line per burst). A slow or failing shadow
thus costs the production traffic nothing beyond writing the copy.

Data capture: when the endpoint's DataCaptureConfig is on, a copy and its answer are captured
under the shadow variant's name, as SageMaker does. The mirror knows nothing of capture (the
router sits below it): the server sets `capture`, which draws the copy's sample when it is sent
(`sample`) and queues its answer when it comes (`offer`), on the event loop, never on the
caller's path; a copy that fails is not captured, as a failed invocation is not.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Protocol

from polyhost.errors import ServiceError

if TYPE_CHECKING:
    from polyhost.router.router import InvokeRequest, InvokeResult, Router
    from polyhost.router.table import EndpointRoute

log = logging.getLogger("polyhost.router.shadow")

MAX_SHADOW_CALLS = 256
MAX_SHADOW_BYTES = 64 * 1024 * 1024
# One warning per this many seconds while copies are being dropped.
DROP_LOG_INTERVAL_S = 60.0


class ShadowCapture(Protocol):
    """What captures shadow copies (data capture's service)."""

    def shadow_sample(self, endpoint_name: str) -> object | None:
        """Something to hand `offer_shadow` when this copy is to be captured, else None."""

    def offer_shadow(self, sample: object, request: InvokeRequest, result: InvokeResult) -> None:
        """Queue the captured copy's answer; never blocks."""


class _Captured:
    """A copy's `Done` token when it is to be captured: its size, and what capture needs."""

    __slots__ = ("request", "sample", "size")

    def __init__(self, size: int, request: InvokeRequest, sample: object) -> None:
        self.size = size
        self.request = request
        self.sample = sample


class ShadowMirror:
    """Sends shadow copies and keeps their bounds; one per router."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self.capture: ShadowCapture | None = None
        self.inflight = 0
        self.inflight_bytes = 0
        self.sent = 0
        self.dropped = 0
        self._logged_at = -DROP_LOG_INTERVAL_S

    def mirror(self, route: EndpointRoute, request: InvokeRequest, captured: bool = True) -> None:
        """A copy of `request` to each shadow variant of `route` (never raises). `captured`:
        False for a streamed call's copy, which is not captured, as the stream itself is not."""
        size = len(request.body)
        copy = request
        if request.target_variant is not None:  # it names the production variant
            copy = dataclasses.replace(request, target_variant=None)
        capture = self.capture if captured else None
        for variant in route.shadows:
            if self.inflight >= MAX_SHADOW_CALLS or self.inflight_bytes + size > MAX_SHADOW_BYTES:
                self._drop(route, "too many copies in flight")
                continue
            self.inflight += 1
            self.inflight_bytes += size
            token: object = size
            if capture is not None:
                sample = capture.shadow_sample(route.name)
                if sample is not None:
                    token = _Captured(size, copy, sample)
            try:
                self._router._begin_on(
                    route, variant, copy, self._finished, token, time.perf_counter()
                )
            except ServiceError as error:  # its container is saturated: counted there
                self._finished(token, None, None)
                self._drop(route, error.message)
            except Exception:
                self._finished(token, None, None)
                log.exception("internal error sending a shadow copy on %s", route.name)
            else:
                self.sent += 1

    def _finished(
        self, token: object, result: InvokeResult | None, error: ServiceError | None
    ) -> None:
        """The `Done` of a copy: its answer or error is dropped (the shadow's own counters
        have it), or its answer captured; its share of the bounds is given back."""
        if type(token) is int:
            self.inflight -= 1
            self.inflight_bytes -= token
            return
        assert isinstance(token, _Captured)
        self.inflight -= 1
        self.inflight_bytes -= token.size
        capture = self.capture
        if result is not None and capture is not None:
            try:
                capture.offer_shadow(token.sample, token.request, result)
            except Exception:  # capture must never break the mirror
                log.exception("data capture of a shadow copy on %s failed", result.variant)

    def _drop(self, route: EndpointRoute, why: str) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._logged_at >= DROP_LOG_INTERVAL_S:
            self._logged_at = now
            log.warning(
                "shadow copies of %s are being dropped (%s); %d dropped so far",
                route.name,
                why,
                self.dropped,
            )
