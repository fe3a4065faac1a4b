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
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from polyhost.errors import ServiceError

if TYPE_CHECKING:
    from polyhost.router.router import InvokeRequest, InvokeResult, Router
    from polyhost.router.table import EndpointRoute

log = logging.getLogger("polyhost.router.shadow")

MAX_SHADOW_CALLS = 256
MAX_SHADOW_BYTES = 64 * 1024 * 1024
# One warning per this many seconds while copies are being dropped.
DROP_LOG_INTERVAL_S = 60.0


class ShadowMirror:
    """Sends shadow copies and keeps their bounds; one per router."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self.inflight = 0
        self.inflight_bytes = 0
        self.sent = 0
        self.dropped = 0
        self._logged_at = -DROP_LOG_INTERVAL_S

    def mirror(self, route: EndpointRoute, request: InvokeRequest) -> None:
        """A copy of `request` to each shadow variant of `route` (never raises)."""
        size = len(request.body)
        copy = request
        if request.target_variant is not None:  # it names the production variant
            copy = dataclasses.replace(request, target_variant=None)
        for variant in route.shadows:
            if self.inflight >= MAX_SHADOW_CALLS or self.inflight_bytes + size > MAX_SHADOW_BYTES:
                self._drop(route, "too many copies in flight")
                continue
            self.inflight += 1
            self.inflight_bytes += size
            try:
                self._router._begin_on(
                    route, variant, copy, self._finished, size, time.perf_counter()
                )
            except ServiceError as error:  # its container is saturated: counted there
                self._finished(size, None, None)
                self._drop(route, error.message)
            except Exception:
                self._finished(size, None, None)
                log.exception("internal error sending a shadow copy on %s", route.name)
            else:
                self.sent += 1

    def _finished(
        self, token: object, result: InvokeResult | None, error: ServiceError | None
    ) -> None:
        """The `Done` of a copy: its answer or error is dropped (the shadow's own counters
        have it); its share of the bounds is given back."""
        assert isinstance(token, int)
        self.inflight -= 1
        self.inflight_bytes -= token

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
