"""InvokeEndpoint semantics in process: the router over fake upstream pools.

The end-to-end tests (test_router.py) prove the router works behind a real server with real
containers; these pin down its decisions one by one, fast enough to run on every change: which
variant and replica a request goes to, what each container of a pipeline is sent, and how every
failure of a container reads to the caller (class, code, status, message, counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import Counter
from collections.abc import Iterator

import pytest

from polyhost.control.seam import InferenceMode
from polyhost.errors import InvokeValidationError, ModelError, ServiceError, ServiceUnavailable
from polyhost.router.router import InvokeRequest, InvokeResult, Router
from polyhost.router.table import ContainerRoute, EndpointRoute, ReplicaRoute, VariantRoute
from polyhost.router.upstream import (
    UpstreamConnectFailed,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamNodeLost,
    UpstreamResponseTooLarge,
    UpstreamSaturated,
    UpstreamTimeout,
)
from polyhost.settings import Settings
from tests.support.fake_pool import (
    FakePool,
    Gate,
    answer,
    container_route,
    endpoint_route,
    fake_pool,
    variant_route,
)

SETTINGS = Settings(invocation_timeout_s=1.5, max_body_bytes=1000, max_interchange_bytes=500)
LOG_ARN = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep"


@pytest.fixture(autouse=True)
def restore_random() -> Iterator[None]:
    """Tests seed the global generator the router draws from; leave it as it was found."""
    state = random.getstate()
    yield
    random.setstate(state)


def make_router(*routes: EndpointRoute) -> Router:
    router = Router(SETTINGS)
    for route in routes:
        router.publish(route)
    return router


def invoke(router: Router, request: InvokeRequest, endpoint: str = "ep") -> InvokeResult:
    return asyncio.run(router.invoke(endpoint, request))


def failure(router: Router, request: InvokeRequest, endpoint: str = "ep") -> ServiceError:
    """The error the caller gets; fails the test if the invocation succeeds."""
    with pytest.raises(ServiceError) as excinfo:
        invoke(router, request, endpoint)
    return excinfo.value


def serial(*hostnames: str) -> tuple[Router, list[ContainerRoute]]:
    """An endpoint `ep` with one Serial variant of one replica running `hostnames` in order."""
    containers = [container_route(h) for h in hostnames]
    return make_router(endpoint_route("ep", variant_route("AllTraffic", tuple(containers)))), (
        containers
    )


def direct(*hostnames: str) -> tuple[Router, list[ContainerRoute]]:
    """An endpoint `ep` with one Direct variant of one replica holding `hostnames`."""
    containers = [container_route(h) for h in hostnames]
    variant = variant_route("AllTraffic", tuple(containers), mode="Direct")
    return make_router(endpoint_route("ep", variant)), containers


def single_container_variant(name: str, weight: float) -> VariantRoute:
    return variant_route(name, (container_route(f"{name}-c", variant=name),), weight=weight)


# -- variant choice -------------------------------------------------------------------------
def test_a_single_variant_is_chosen_without_drawing_a_random_number() -> None:
    route = endpoint_route("ep", single_container_variant("A", 0.0))
    state = random.getstate()
    assert {route.pick_variant().name for _ in range(10)} == {"A"}
    assert random.getstate() == state  # the hot path pays no draw for the common case


def test_weighted_choice_follows_each_draw() -> None:
    """A draw r in [0, 1) picks the variant whose share of the total weight covers r.

    Weights 1, 0, 3 (total 4, so r * 4 is exact): A owns [0, 0.25), B owns nothing, C owns
    [0.25, 1). Re-drawing from the same seed tells which variant each pick must have been.
    """
    route = endpoint_route(
        "ep",
        single_container_variant("A", 1.0),
        single_container_variant("B", 0.0),
        single_container_variant("C", 3.0),
    )
    random.seed(20240501)
    picks = [route.pick_variant().name for _ in range(2000)]
    random.seed(20240501)
    expected = ["A" if random.random() < 0.25 else "C" for _ in range(2000)]
    assert picks == expected
    assert "B" not in picks


@pytest.mark.parametrize(
    ("draw", "expected"), [(0.0, "B"), (0.25, "C"), (0.2499999, "B"), (0.9999999, "C")]
)
def test_draws_on_a_boundary_never_reach_a_zero_weight_variant(
    monkeypatch: pytest.MonkeyPatch, draw: float, expected: str
) -> None:
    """Shares are half-open, [start, end): a draw of exactly 0 must not pick the leading
    zero-weight variant, and a draw on B's end belongs to C."""
    route = endpoint_route(
        "ep",
        single_container_variant("A", 0.0),
        single_container_variant("B", 1.0),
        single_container_variant("C", 3.0),
    )
    monkeypatch.setattr(random, "random", lambda: draw)
    assert route.pick_variant().name == expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weighted_shares_hold_for_any_seed(seed: int) -> None:
    """Weights 1:3 give A a quarter of the traffic; 6 sigma of the binomial is the tolerance
    (a false failure has probability ~1e-9 whatever the seed)."""
    route = endpoint_route(
        "ep", single_container_variant("A", 1.0), single_container_variant("B", 3.0)
    )
    random.seed(seed)
    draws = 8000
    counts = Counter(route.pick_variant().name for _ in range(draws))
    sigma = math.sqrt(draws * 0.25 * 0.75)
    assert abs(counts["A"] - draws * 0.25) < 6 * sigma
    assert counts["A"] + counts["B"] == draws


@pytest.mark.parametrize("weights", [(0.0, 0.0, 0.0), (-1.0, 0.0, -2.0)])
def test_no_positive_weight_means_a_uniform_choice(weights: tuple[float, ...]) -> None:
    """SageMaker refuses such configs, but a route must still serve: every variant alike."""
    route = endpoint_route(
        "ep", *(single_container_variant(n, w) for n, w in zip("ABC", weights, strict=True))
    )
    random.seed(99)
    draws = 6000
    counts = Counter(route.pick_variant().name for _ in range(draws))
    sigma = math.sqrt(draws * (1 / 3) * (2 / 3))
    for name in "ABC":
        assert abs(counts[name] - draws / 3) < 6 * sigma, counts


def test_a_negative_weight_counts_as_zero_next_to_positive_ones() -> None:
    route = endpoint_route(
        "ep", single_container_variant("A", -5.0), single_container_variant("B", 1.0)
    )
    random.seed(7)
    assert {route.pick_variant().name for _ in range(500)} == {"B"}


# -- replica choice -------------------------------------------------------------------------
def replicas(count: int) -> VariantRoute:
    return variant_route(
        "AllTraffic", *((container_route("c", instance=f"i-{i}"),) for i in range(count))
    )


def picks(variant: VariantRoute, times: int) -> list[str]:
    return [variant.pick_replica().instance_id for _ in range(times)]


def set_outstanding(variant: VariantRoute, *values: int) -> None:
    for replica, value in zip(variant.replicas, values, strict=True):
        replica.outstanding = value


def test_idle_replicas_take_turns() -> None:
    assert picks(replicas(3), 7) == ["i-0", "i-1", "i-2", "i-0", "i-1", "i-2", "i-0"]


def test_a_single_replica_is_always_chosen() -> None:
    variant = replicas(1)
    variant.replicas[0].outstanding = 5
    assert picks(variant, 3) == ["i-0"] * 3


def test_the_least_busy_replica_wins_wherever_the_turn_starts() -> None:
    variant = replicas(3)
    set_outstanding(variant, 2, 0, 1)
    assert picks(variant, 6) == ["i-1"] * 6
    set_outstanding(variant, 0, 3, 3)
    assert picks(variant, 6) == ["i-0"] * 6


def test_ties_among_the_least_busy_are_shared() -> None:
    """Only i-1 and i-2 are least busy: every pick is one of them and both get picks.

    (The tie goes to the first least-busy replica after the turn's start, so with i-0 busy,
    i-1 gets two picks in three: the sequence is i-1, i-1, i-2.)
    """
    variant = replicas(3)
    set_outstanding(variant, 1, 0, 0)
    chosen = picks(variant, 6)
    assert set(chosen) == {"i-1", "i-2"}
    assert chosen == ["i-1", "i-1", "i-2", "i-1", "i-1", "i-2"]


def test_requests_in_flight_steer_the_next_ones_to_other_replicas() -> None:
    """Requests held by their container count as outstanding until they are answered."""
    pools = [FakePool("c") for _ in range(2)]
    gate = Gate()
    for pool in pools:
        pool.default = gate
    variant = variant_route(
        "AllTraffic",
        *((container_route("c", pool, instance=f"i-{i}"),) for i, pool in enumerate(pools)),
    )
    router = make_router(endpoint_route("ep", variant))

    async def scenario() -> list[int]:
        tasks = []
        for _ in range(3):
            tasks.append(asyncio.create_task(router.invoke("ep", InvokeRequest(b"x"))))
            await asyncio.sleep(0)  # let it reach its container
        held = [r.outstanding for r in variant.replicas]
        gate.open()
        await asyncio.gather(*tasks)
        return held

    held = asyncio.run(scenario())
    assert [len(pool.calls) for pool in pools] == [2, 1]  # i-0, i-1, then the tie: i-0
    assert held == [2, 1]
    assert [r.outstanding for r in variant.replicas] == [0, 0]


def test_outstanding_is_given_back_when_the_call_fails() -> None:
    pool = FakePool("c").then(UpstreamTimeout("timed out"), RuntimeError("a bug"))
    router = make_router(endpoint_route("ep", variant_route("V", (container_route("c", pool),))))
    failure(router, InvokeRequest(b"x"))
    with pytest.raises(RuntimeError):  # not a ServiceError: the runtime adapter answers 500
        invoke(router, InvokeRequest(b"x"))
    route = router.route("ep")
    assert route is not None
    assert [r.outstanding for r in route.variants[0].replicas] == [0]


def two_replicas(
    *hostnames: str, mode: InferenceMode = "Direct"
) -> tuple[Router, VariantRoute, list[list[ContainerRoute]]]:
    """Endpoint `ep`, one variant of two replicas (i-0, i-1), each running `hostnames`."""
    routes = [[container_route(h, instance=f"i-{i}") for h in hostnames] for i in range(2)]
    variant = variant_route("AllTraffic", *(tuple(r) for r in routes), mode=mode)
    return make_router(endpoint_route("ep", variant)), variant, routes


def test_a_replica_whose_target_container_is_down_is_passed_over() -> None:
    """A lost node or a restarting container: its replica gets no requests while others can
    serve them; a Direct request for a container still up there may still go to it."""
    _, variant, routes = two_replicas("a", "b")
    routes[0][0].available = False  # i-0's "a"
    assert {variant.pick_replica("a").instance_id for _ in range(4)} == {"i-1"}
    assert {variant.pick_replica("b").instance_id for _ in range(4)} == {"i-0", "i-1"}
    assert {variant.pick_replica(None).instance_id for _ in range(4)} == {"i-1"}  # Serial


def test_when_no_replica_can_serve_the_caller_gets_the_reason() -> None:
    router, _, routes = two_replicas("a")
    for replica in routes:
        replica[0].available = False
        replica[0].unavailable_reason = "its node 127.0.0.3 was lost"
    error = failure(router, InvokeRequest(b"x", target_container="a"))
    assert isinstance(error, ServiceUnavailable)
    assert "its node 127.0.0.3 was lost" in error.message


def test_a_refused_connection_is_sent_once_to_another_replica() -> None:
    """Nothing reached a container, so the request is safe to send elsewhere: the caller
    gets the answer, and the refusing container's counters show its failure."""
    router, _, routes = two_replicas("a")
    refusing, other = routes[0][0], routes[1][0]
    fake_pool(refusing).then(UpstreamConnectFailed("cannot connect: Connection refused"))
    result = invoke(router, InvokeRequest(b"x", target_container="a"))  # i-0 has the turn
    assert result.body == b"a:x"
    assert len(fake_pool(refusing).calls) == len(fake_pool(other).calls) == 1
    assert counts(refusing) == (1, 0, 1, 0, 0)
    assert counts(other) == (1, 0, 0, 1, 1)


def test_a_refused_connection_with_no_other_replica_is_the_503() -> None:
    router, _, routes = two_replicas("a")
    for replica in routes:
        fake_pool(replica[0]).then(UpstreamConnectFailed("cannot connect: Connection refused"))
    error = failure(router, InvokeRequest(b"x", target_container="a"))
    assert isinstance(error, ServiceUnavailable)
    assert sum(len(fake_pool(r[0]).calls) for r in routes) == 2  # tried once, sent once more


def test_a_call_cut_with_its_lost_node_is_a_503_naming_it_and_not_sent_again() -> None:
    """The request may have reached the container before its machine went: the caller decides."""
    router, _, routes = two_replicas("a")
    fake_pool(routes[0][0]).then(UpstreamNodeLost("its node 127.0.0.3 was lost"))
    error = failure(router, InvokeRequest(b"x", target_container="a"))
    assert isinstance(error, ServiceUnavailable)
    assert error.message == (
        "Container a of endpoint ep is unavailable: its node 127.0.0.3 was lost. Retry shortly."
    )
    assert fake_pool(routes[1][0]).calls == []


def test_a_pipeline_is_not_sent_again_once_a_container_has_seen_it() -> None:
    router, _, routes = two_replicas("first", "second", mode="Serial")
    fake_pool(routes[0][1]).then(UpstreamConnectFailed("cannot connect: Connection refused"))
    error = failure(router, InvokeRequest(b"x"))
    assert isinstance(error, ServiceUnavailable)
    assert [len(fake_pool(c).calls) for c in routes[1]] == [0, 0]


# -- the endpoint's state ---------------------------------------------------------------------
def test_an_unknown_endpoint_is_a_validation_error() -> None:
    error = failure(make_router(), InvokeRequest(b"x"), endpoint="nope")
    assert isinstance(error, InvokeValidationError)
    assert (error.code, error.status) == ("ValidationError", 400)
    assert error.message == "Endpoint nope of account 123456789012 not found."


def test_a_restoring_endpoint_answers_a_retryable_503_until_published() -> None:
    router = make_router()
    router.mark_restoring("ep")
    assert router.is_restoring("ep")
    error = failure(router, InvokeRequest(b"x"))
    assert isinstance(error, ServiceUnavailable)
    assert (error.code, error.status) == ("ServiceUnavailable", 503)
    assert "ep is being restored after a server restart" in error.message
    assert "Retry shortly" in error.message

    router.publish(endpoint_route("ep", variant_route("V", (container_route("c"),))))
    assert not router.is_restoring("ep")
    assert invoke(router, InvokeRequest(b"x")).body == b"c:x"


@pytest.mark.parametrize("status", ["Creating", "Failed", "Updating"])
def test_an_endpoint_not_in_service_says_its_status(status: str) -> None:
    router = make_router()
    router.mark_not_serving("ep", status)
    error = failure(router, InvokeRequest(b"x"))
    assert isinstance(error, InvokeValidationError)
    assert f"Endpoint ep of account 123456789012 is not in service: its status is {status}." in (
        error.message
    )
    assert "once DescribeEndpoint reports InService" in error.message


def test_a_published_route_is_not_shadowed_by_a_status() -> None:
    router, _ = serial("c")
    router.mark_not_serving("ep", "Creating")  # e.g. an update starting: keep serving
    router.mark_restoring("ep")
    assert invoke(router, InvokeRequest(b"x")).body == b"c:x"


def test_withdraw_stops_routing_and_may_say_why() -> None:
    router, _ = serial("c")
    router.withdraw("ep", "Deleting")
    assert router.route("ep") is None
    assert "its status is Deleting" in failure(router, InvokeRequest(b"x")).message
    router.withdraw("ep")
    assert failure(router, InvokeRequest(b"x")).message.endswith(
        "ep of account 123456789012 not found."
    )


def test_publish_replaces_the_route_as_a_whole() -> None:
    router, old = serial("old")
    previous = router.route("ep")
    new = endpoint_route("ep", variant_route("AllTraffic", (container_route("new"),)))
    router.publish(new)
    assert router.route("ep") is new
    assert invoke(router, InvokeRequest(b"x")).body == b"new:x"
    assert fake_pool(old[0]).calls == []
    assert previous is not None and previous.variants[0].replicas[0].containers == tuple(old)


def test_target_model_is_refused_on_an_endpoint_that_is_not_multi_model() -> None:
    router, containers = serial("c")
    error = failure(router, InvokeRequest(b"x", target_model="m.tar.gz"))
    assert isinstance(error, InvokeValidationError)
    assert error.message == "Endpoint ep is not a multi-model endpoint: remove TargetModel."
    assert fake_pool(containers[0]).calls == []


def test_target_variant_overrides_the_weights() -> None:
    router = make_router(
        endpoint_route(
            "ep", single_container_variant("Blue", 1.0), single_container_variant("Green", 0.0)
        )
    )
    result = invoke(router, InvokeRequest(b"x", target_variant="Green"))
    assert (result.variant, result.body) == ("Green", b"Green-c:x")


def test_an_unknown_target_variant_lists_the_variants() -> None:
    router = make_router(
        endpoint_route(
            "ep", single_container_variant("Blue", 1.0), single_container_variant("Green", 1.0)
        )
    )
    error = failure(router, InvokeRequest(b"x", target_variant="Red"))
    assert isinstance(error, InvokeValidationError)
    assert error.message == (
        "Variant Red not found for endpoint ep: TargetVariant must be one of [Blue, Green]."
    )


# -- Direct ---------------------------------------------------------------------------------
def test_direct_needs_a_hostname_and_lists_them() -> None:
    router, containers = direct("alpha", "beta")
    error = failure(router, InvokeRequest(b"x"))
    assert isinstance(error, InvokeValidationError)
    assert error.message == (
        "Endpoint ep uses Direct invocation mode: set TargetContainerHostname to one of "
        "[alpha, beta]."
    )
    assert all(c.counters.invocations == 0 for c in containers)


def test_direct_refuses_an_unknown_hostname() -> None:
    router, containers = direct("alpha", "beta")
    error = failure(router, InvokeRequest(b"x", target_container="gamma"))
    assert isinstance(error, InvokeValidationError)
    assert error.message == (
        "No container with hostname gamma in endpoint ep: TargetContainerHostname must be one "
        "of [alpha, beta]."
    )
    assert all(fake_pool(c).calls == [] for c in containers)


def test_direct_calls_only_the_named_container_with_the_request_as_sent() -> None:
    router, (alpha, beta) = direct("alpha", "beta")
    fake_pool(beta).then(
        answer(b"out", content_type=b"text/csv", x_amzn_sagemaker_custom_attributes=b"back")
    )
    request = InvokeRequest(
        b"in",
        content_type=b"application/json",
        accept=b"text/csv",
        custom_attributes=b"trace=1",
        target_container="beta",
        inference_id=b"inf-1",
    )
    result = invoke(router, request)
    assert result == InvokeResult(b"out", b"text/csv", "AllTraffic", b"back")
    assert fake_pool(alpha).calls == []
    (call,) = fake_pool(beta).calls
    assert (call.path, call.body, call.timeout, call.max_response) == (
        b"/invocations",
        b"in",
        1.5,
        1000,
    )
    assert call.header(b"content-type") == b"application/json"
    assert call.header(b"accept") == b"text/csv"
    assert call.header(b"x-amzn-sagemaker-custom-attributes") == b"trace=1"
    assert call.header(b"x-amzn-sagemaker-inference-id") == b"inf-1"
    counters = beta.counters
    assert (counters.invocations, counters.errors_4xx, counters.errors_5xx) == (1, 0, 0)
    assert counters.container_latency.count == 1
    assert counters.overhead_latency.count == 1
    assert alpha.counters.invocations == 0


def test_headers_the_caller_did_not_send_are_not_invented() -> None:
    router, (only,) = direct("only")
    invoke(router, InvokeRequest(b"x", target_container="only"))
    assert fake_pool(only).calls[0].header_names == set()


@pytest.mark.parametrize(
    ("response_type", "request_type", "expected"),
    [
        (b"text/csv", b"application/json", b"text/csv"),
        (None, b"application/json", b"application/json"),
        (None, None, b"application/octet-stream"),
    ],
)
def test_the_answer_type_falls_back_to_the_request_type_then_octet_stream(
    response_type: bytes | None, request_type: bytes | None, expected: bytes
) -> None:
    router, (only,) = direct("only")
    fake_pool(only).then(answer(b"y", content_type=response_type))
    result = invoke(router, InvokeRequest(b"x", content_type=request_type, target_container="only"))
    assert result.content_type == expected
    assert result.custom_attributes is None


def test_direct_target_hostname_on_a_serial_endpoint_is_refused() -> None:
    router, containers = serial("a", "b")
    error = failure(router, InvokeRequest(b"x", target_container="a"))
    assert isinstance(error, InvokeValidationError)
    assert "Endpoint ep is not in Direct invocation mode: remove TargetContainerHostname" in (
        error.message
    )
    assert all(fake_pool(c).calls == [] for c in containers)


# -- Serial ---------------------------------------------------------------------------------
def test_a_pipeline_passes_each_answer_to_the_next_container() -> None:
    router, (a, b, c) = serial("a", "b", "c")
    fake_pool(a).then(answer(b"A", content_type=b"application/x-a"))
    fake_pool(b).then(answer(b"B"))  # no content type: the one it was sent carries on
    fake_pool(c).then(
        answer(b"C", content_type=b"text/final", x_amzn_sagemaker_custom_attributes=b"z")
    )
    request = InvokeRequest(
        b"in",
        content_type=b"application/json",
        accept=b"text/final",
        custom_attributes=b"k=v",
        inference_id=b"id-9",
    )
    result = invoke(router, request)
    assert result == InvokeResult(b"C", b"text/final", "AllTraffic", b"z")

    (to_a,), (to_b,), (to_c,) = (fake_pool(x).calls for x in (a, b, c))
    assert [call.body for call in (to_a, to_b, to_c)] == [b"in", b"A", b"B"]
    assert [call.header(b"content-type") for call in (to_a, to_b, to_c)] == [
        b"application/json",
        b"application/x-a",
        b"application/x-a",
    ]
    # Accept is what the caller wants back from the pipeline: only the last container sees it.
    assert [call.header(b"accept") for call in (to_a, to_b, to_c)] == [None, None, b"text/final"]
    for call in (to_a, to_b, to_c):
        assert call.header(b"x-amzn-sagemaker-custom-attributes") == b"k=v"
        assert call.header(b"x-amzn-sagemaker-inference-id") == b"id-9"
        assert call.timeout == 1.5
    # Between containers the interchange cap applies; the last answer gets the body cap.
    assert [call.max_response for call in (to_a, to_b, to_c)] == [500, 500, 1000]
    assert [x.counters.invocations for x in (a, b, c)] == [1, 1, 1]
    assert [x.counters.container_latency.count for x in (a, b, c)] == [1, 1, 1]


def test_a_pipeline_answer_without_a_type_keeps_the_last_one_seen() -> None:
    router, (a, b) = serial("a", "b")
    fake_pool(a).then(answer(b"A", content_type=b"text/mid"))
    fake_pool(b).then(answer(b"B"))
    assert invoke(router, InvokeRequest(b"x")).content_type == b"text/mid"


def test_a_pipeline_charges_its_overhead_to_the_first_container() -> None:
    router, containers = serial("a", "b", "c")
    invoke(router, InvokeRequest(b"x"))
    assert [c.counters.overhead_latency.count for c in containers] == [1, 0, 0]


def test_a_failing_middle_container_stops_the_pipeline() -> None:
    router, (a, b, c) = serial("a", "b", "c")
    fake_pool(b).then(answer(b"bad input", status=400))
    error = failure(router, InvokeRequest(b"x"))
    assert isinstance(error, ModelError)
    assert "from b with message" in error.message
    assert fake_pool(c).calls == []
    assert [x.counters.invocations for x in (a, b, c)] == [1, 1, 0]
    assert [x.counters.errors_4xx for x in (a, b, c)] == [0, 1, 0]
    assert a.counters.overhead_latency.count == 0  # a failed request adds no overhead sample


def test_too_large_between_containers_names_the_interchange_cap() -> None:
    router, (a, b) = serial("a", "b")
    fake_pool(a).then(UpstreamResponseTooLarge("response larger than 500 bytes"))
    error = failure(router, InvokeRequest(b"x"))
    assert isinstance(error, ModelError)
    assert error.message == (
        "Container a returned more than 500 bytes, the most allowed between containers."
    )
    assert fake_pool(b).calls == []


def test_too_large_from_the_last_container_names_the_body_cap() -> None:
    router, (_, b) = serial("a", "b")
    fake_pool(b).then(UpstreamResponseTooLarge("response larger than 1000 bytes"))
    error = failure(router, InvokeRequest(b"x"))
    assert isinstance(error, ModelError)
    assert (
        error.message
        == "Container b returned more than 1000 bytes, the most allowed in a response."
    )
    assert error.log_stream_arn == LOG_ARN


# -- failures of a container, the same whichever mode called it ---------------------------------
@pytest.fixture(params=["Serial", "Direct"])
def one_container(request: pytest.FixtureRequest) -> tuple[Router, ContainerRoute, InvokeRequest]:
    """Endpoint `ep` with the single container `model` (pool max_inflight 7), in each mode."""
    pool = FakePool("model", max_inflight=7)
    container = container_route("model", pool)
    mode = request.param
    router = make_router(endpoint_route("ep", variant_route("AllTraffic", (container,), mode=mode)))
    target = "model" if mode == "Direct" else None
    return router, container, InvokeRequest(b"x", target_container=target)


def counts(container: ContainerRoute) -> tuple[int, int, int, int, int]:
    c = container.counters
    return (
        c.invocations,
        c.errors_4xx,
        c.errors_5xx,
        c.container_latency.count,
        c.overhead_latency.count,
    )


def test_a_saturated_container_is_a_retryable_503(
    one_container: tuple[Router, ContainerRoute, InvokeRequest],
) -> None:
    router, container, request = one_container
    fake_pool(container).then(UpstreamSaturated("7 requests already in flight"))
    error = failure(router, request)
    assert isinstance(error, ServiceUnavailable)
    assert (error.code, error.status) == ("ServiceUnavailable", 503)
    assert error.message == (
        "Container model of endpoint ep already has 7 requests in flight, its limit. "
        "Retry shortly or add instances."
    )
    assert counts(container) == (1, 0, 1, 0, 0)


def test_a_container_refusing_connections_is_a_retryable_503(
    one_container: tuple[Router, ContainerRoute, InvokeRequest],
) -> None:
    router, container, request = one_container
    fake_pool(container).then(UpstreamConnectFailed("cannot connect: Connection refused"))
    error = failure(router, request)
    assert isinstance(error, ServiceUnavailable)
    assert error.message == (
        "Container model of endpoint ep is not accepting connections (cannot connect: "
        "Connection refused); it may be restarting. Retry shortly."
    )
    assert counts(container) == (1, 0, 1, 0, 0)


def test_a_timeout_is_the_containers_fault_and_says_how_to_look(
    one_container: tuple[Router, ContainerRoute, InvokeRequest],
) -> None:
    router, container, request = one_container
    fake_pool(container).then(UpstreamTimeout("timed out"))
    error = failure(router, request)
    assert isinstance(error, ModelError)
    assert (error.code, error.status) == ("ModelError", 424)
    assert "timed out while waiting for a response from container model" in error.message
    assert "'polyhost logs ep --container model'" in error.message
    assert error.message.endswith("(Timeout: 1.5 s.)")
    assert error.log_stream_arn == LOG_ARN
    assert error.original_status_code is None and error.original_message is None
    assert counts(container) == (1, 0, 1, 0, 0)
    assert fake_pool(container).calls[0].timeout == 1.5


@pytest.mark.parametrize(
    "error", [UpstreamConnectionError("connection closed by the container"), UpstreamError("eh")]
)
def test_a_dropped_connection_points_at_the_containers_log(
    one_container: tuple[Router, ContainerRoute, InvokeRequest], error: UpstreamError
) -> None:
    router, container, request = one_container
    fake_pool(container).then(error)
    raised = failure(router, request)
    assert isinstance(raised, ModelError)
    assert raised.message == (
        f"Container model closed the connection without answering ({error}); it may have "
        "crashed. See log stream /aws/sagemaker/Endpoints/ep/AllTraffic/i-0/model "
        "('polyhost logs ep --container model') for more information."
    )
    assert raised.log_stream_arn == LOG_ARN
    assert counts(container) == (1, 0, 1, 0, 0)


@pytest.mark.parametrize(("status", "kind"), [(400, "client"), (404, "client"), (499, "client")])
def test_a_4xx_answer_is_a_model_error_carrying_it(
    one_container: tuple[Router, ContainerRoute, InvokeRequest], status: int, kind: str
) -> None:
    router, container, request = one_container
    fake_pool(container).then(answer(b"no such column", status=status))
    error = failure(router, request)
    assert isinstance(error, ModelError)
    assert (error.code, error.status) == ("ModelError", 424)
    assert error.message == (
        f'Received {kind} error ({status}) from model with message "no such column". See log '
        "stream /aws/sagemaker/Endpoints/ep/AllTraffic/i-0/model "
        "('polyhost logs ep --container model') for more information."
    )
    assert error.body_fields() == {
        "OriginalStatusCode": status,
        "OriginalMessage": "no such column",
        "LogStreamArn": LOG_ARN,
    }
    # The container answered: its latency counts, the error is a 4xx, not a 5xx.
    assert counts(container) == (1, 1, 0, 1, 0)


@pytest.mark.parametrize("status", [500, 503, 599])
def test_a_5xx_answer_is_a_model_error_counted_as_5xx(
    one_container: tuple[Router, ContainerRoute, InvokeRequest], status: int
) -> None:
    router, container, request = one_container
    fake_pool(container).then(answer(b"boom", status=status))
    error = failure(router, request)
    assert isinstance(error, ModelError)
    assert error.message.startswith(
        f'Received server error ({status}) from model with message "boom".'
    )
    assert error.original_status_code == status
    assert counts(container) == (1, 0, 1, 1, 0)


def test_a_3xx_answer_passes_through() -> None:
    """Only 4xx and 5xx are errors; anything else is the container's answer."""
    router, (only,) = serial("only")
    fake_pool(only).then(answer(b"moved", status=302))
    assert invoke(router, InvokeRequest(b"x")).body == b"moved"


def test_the_original_message_is_capped_and_decoded_leniently() -> None:
    router, (only,) = serial("only")
    fake_pool(only).then(answer(b"\xff" + b"e" * 5000, status=500))
    error = failure(router, InvokeRequest(b"x"))
    assert isinstance(error, ModelError)
    assert error.original_message == "\ufffd" + "e" * 4095


def test_an_unavailable_container_is_a_503_without_a_call(
    one_container: tuple[Router, ContainerRoute, InvokeRequest],
) -> None:
    router, container, request = one_container
    container.available = False
    container.unavailable_reason = "it exited with code 1 and is being restarted (restart 2)"
    error = failure(router, request)
    assert isinstance(error, ServiceUnavailable)
    assert error.message == (
        "Container model of endpoint ep is unavailable: it exited with code 1 and is being "
        "restarted (restart 2). Retry shortly."
    )
    assert fake_pool(container).calls == []
    assert counts(container) == (1, 0, 1, 0, 0)


def test_counters_accumulate_over_requests() -> None:
    router, (only,) = serial("only")
    fake_pool(only).then(
        answer(b"ok"), answer(b"x", status=400), answer(b"y", status=500), UpstreamTimeout("t")
    )
    for _ in range(4):
        with contextlib.suppress(ServiceError):
            invoke(router, InvokeRequest(b"x"))
    assert counts(only) == (4, 1, 2, 3, 1)


def test_replica_route_of_indexes_containers_by_hostname() -> None:
    a, b = container_route("a"), container_route("b")
    replica = ReplicaRoute.of("i-3", (a, b))
    assert replica.by_hostname == {"a": a, "b": b}
    assert (replica.instance_id, replica.outstanding) == ("i-3", 0)
