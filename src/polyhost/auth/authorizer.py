"""Policy decisions for verified principals, cached where caching is provably safe.

A decision depends on the principal's policies, the action, the resource and the values of the
condition keys those policies read, and on nothing else. So the cache key is exactly that:
(principal, action, resource, the values of the keys the principal's policies read). Headers no
policy looks at do not split the cache, and a key a policy does read always does.

The time is the exception: `aws:CurrentTime` and `aws:EpochTime` change every second, so the
decisions of a principal whose policies read them are never cached (they are evaluated each
time; a few microseconds). Principals are keyed by identity and a reload builds new ones, so a
reload invalidates every entry of the old file by construction; `clear()` empties the map too.
"""

from __future__ import annotations

from collections.abc import Hashable

from polyhost.auth.cache import DEFAULT_SIZE, LruCache
from polyhost.auth.context import RequestContext
from polyhost.auth.policy import Decision
from polyhost.auth.principals import Principal


class Authorizer:
    __slots__ = ("_cache",)

    def __init__(self, cache_size: int = DEFAULT_SIZE) -> None:
        self._cache: LruCache[Decision] = LruCache(cache_size)

    def decide(
        self, principal: Principal, action: str, resource: str, context: RequestContext
    ) -> Decision:
        """Allow or deny `action` on `resource`, and the statement that decided."""
        if not principal.cacheable:
            return principal.policies.evaluate(action, resource, context.get)
        get = context.get
        values = tuple([get(k) for k in principal.policies.read_keys])
        cache_key: Hashable = (principal, action, resource, values)
        decision = self._cache.get(cache_key)
        if decision is None:
            decision = principal.policies.evaluate(action, resource, get)
            self._cache.put(cache_key, decision)
        return decision

    @staticmethod
    def simulate(
        principal: Principal, action: str, resource: str, context: RequestContext
    ) -> Decision:
        """The same decision, never cached: for a CLI's "why was this denied?" view."""
        return principal.policies.evaluate(action, resource, context.get)

    def clear(self) -> None:
        self._cache.clear()

    @property
    def cache(self) -> LruCache[Decision]:
        return self._cache
