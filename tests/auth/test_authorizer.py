"""The decision cache: keyed by what a decision depends on, bounded, never stale."""

from __future__ import annotations

from typing import Any

import pytest

from polyhost.auth.authorizer import Authorizer
from polyhost.auth.cache import LruCache
from polyhost.auth.policy import Outcome
from polyhost.auth.principals import Principal
from tests.auth.helpers import SIGNED_AT, context, policy_set

INVOKE = "sagemaker:InvokeEndpoint"
EP = "arn:aws:sagemaker:us-east-1:111122223333:endpoint/e"


def principal(*documents: dict[str, Any], name: str = "alice") -> Principal:
    return Principal(name, "AKIAIOSFODNN7EXAMPLE", "s" * 40, None, policy_set(*documents))


def statement(**extra: Any) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", **extra},
    }


def test_a_repeated_request_is_answered_from_the_cache() -> None:
    authorizer = Authorizer()
    alice = principal(statement())
    first = authorizer.decide(alice, INVOKE, EP, context())
    second = authorizer.decide(alice, INVOKE, EP, context())
    assert first is second and first.allowed
    assert (authorizer.cache.misses, authorizer.cache.hits) == (1, 1)


def test_keys_no_policy_reads_do_not_split_the_cache() -> None:
    authorizer = Authorizer()
    alice = principal(statement())
    for ip in ("10.0.0.1", "10.0.0.2", "192.0.2.7"):
        authorizer.decide(alice, INVOKE, EP, context(source_ip=ip, target_model=ip))
    assert (authorizer.cache.misses, authorizer.cache.hits) == (1, 2)


def test_keys_a_policy_reads_always_split_the_cache() -> None:
    authorizer = Authorizer()
    alice = principal(statement(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert authorizer.decide(alice, INVOKE, EP, context(source_ip="10.0.0.1")).allowed
    assert not authorizer.decide(alice, INVOKE, EP, context(source_ip="192.0.2.7")).allowed
    assert not authorizer.decide(alice, INVOKE, EP, context()).allowed
    assert authorizer.decide(alice, INVOKE, EP, context(source_ip="10.9.9.9")).allowed
    assert len(authorizer.cache) == 4


def test_action_and_resource_are_part_of_the_key() -> None:
    authorizer = Authorizer()
    alice = principal(statement(Action=INVOKE, Resource=EP))
    assert authorizer.decide(alice, INVOKE, EP, context()).allowed
    assert not authorizer.decide(alice, "sagemaker:DeleteEndpoint", EP, context()).allowed
    assert not authorizer.decide(alice, INVOKE, EP + "2", context()).allowed


@pytest.mark.parametrize(
    "extra",
    [
        {"Condition": {"DateLessThan": {"aws:CurrentTime": "2024-05-17T12:00:30Z"}}},
        {"Condition": {"NumericLessThan": {"AWS:EPOCHTIME": "1715947230"}}},
        {"Condition": {"StringLike": {"sagemaker:TargetModel": "${aws:EpochTime}*"}}},
    ],
)
def test_a_principal_whose_policies_read_the_time_is_never_cached(extra: dict[str, Any]) -> None:
    alice = principal(statement(**extra))
    assert not alice.cacheable
    authorizer = Authorizer()
    start = SIGNED_AT.timestamp()
    now = context(now=start, target_model="1715947200")
    later = context(now=start + 60, target_model="1715947200")
    assert authorizer.decide(alice, INVOKE, EP, now).outcome is Outcome.ALLOWED
    assert authorizer.decide(alice, INVOKE, EP, later).outcome is Outcome.IMPLICIT_DENY
    assert len(authorizer.cache) == 0


def test_a_principal_without_time_conditions_is_cacheable() -> None:
    assert principal(statement(Condition={"Bool": {"aws:SecureTransport": "true"}})).cacheable


def test_principals_are_keys_by_identity_so_a_reload_never_answers_from_old_entries() -> None:
    authorizer = Authorizer()
    before = principal(statement())
    after = principal(
        {"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}
    )
    assert authorizer.decide(before, INVOKE, EP, context()).allowed
    assert not authorizer.decide(after, INVOKE, EP, context()).allowed


def test_clear_empties_the_cache() -> None:
    authorizer = Authorizer()
    authorizer.decide(principal(statement()), INVOKE, EP, context())
    authorizer.clear()
    assert len(authorizer.cache) == 0


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache: LruCache[int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2
    with pytest.raises(ValueError):
        LruCache(0)


def test_the_authorizers_cache_holds_at_most_its_size() -> None:
    authorizer = Authorizer(cache_size=8)
    alice = principal(statement(Condition={"StringLike": {"sagemaker:TargetModel": "*"}}))
    for i in range(50):
        authorizer.decide(alice, INVOKE, EP, context(target_model=f"m{i}"))
    assert len(authorizer.cache) == 8
