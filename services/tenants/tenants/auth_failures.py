"""Failed client authentications at the token endpoint, limited per client id and per address.

A secret cannot be guessed through the token endpoint faster than :data:`PER_CLIENT` tries
a minute for one client id, nor can one address try more than :data:`PER_ADDRESS` wrong
credentials a minute across client ids. Only failures count: a client that authenticates
is never slowed by its own traffic, and the check is one Redis round trip (two GETs in one
pipeline) beside the lookups the endpoint makes anyway. Each key holds its own count, so
the two may live in different slots of a cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from aerie.redis import RedisProvider

__all__ = ["PER_ADDRESS", "PER_CLIENT", "WINDOW_S", "AuthFailures"]

#: Failed authentications a window allows per client id, and per source address, unless
#: ``AERIE_AUTH_FAILURES_PER_CLIENT`` / ``..._PER_ADDRESS`` say otherwise (0 lifts one).
PER_CLIENT = 10
PER_ADDRESS = 30
#: The window, in seconds: a fixed minute.
WINDOW_S = 60


@dataclass
class AuthFailures:
    redis: RedisProvider
    per_client: int = PER_CLIENT
    per_address: int = PER_ADDRESS
    clock: Callable[[], float] = field(default=time.time)

    def _keys(self, client_id: str | None, address: str | None) -> list[tuple[str, int]]:
        window = int(self.clock()) // WINDOW_S
        keys = []
        if client_id and self.per_client:
            keys.append((f"tenants:authfail:client:{{{client_id}}}:{window}", self.per_client))
        if address and self.per_address:
            keys.append((f"tenants:authfail:addr:{{{address}}}:{window}", self.per_address))
        return keys

    def retry_after(self, client_id: str | None, address: str | None) -> int | None:
        """Seconds until this client id and address may try again, or None while they may."""
        keys = self._keys(client_id, address)
        if not keys:
            return None
        try:
            pipe = self.redis.client.pipeline(transaction=False)
            for key, _limit in keys:
                pipe.get(key)
            counts = pipe.execute()
        except redis.RedisError:
            return None  # the authentication itself reads Redis and answers for an outage
        if any(int(count or 0) >= limit for count, (_key, limit) in zip(counts, keys, strict=True)):
            return WINDOW_S - int(self.clock()) % WINDOW_S
        return None

    def failed(self, client_id: str | None, address: str | None) -> None:
        try:
            pipe = self.redis.client.pipeline(transaction=False)
            for key, _limit in self._keys(client_id, address):
                pipe.incr(key)
                pipe.expire(key, WINDOW_S * 2)
            pipe.execute()
        except redis.RedisError:
            pass  # a failure not counted while Redis is away: the next ones will be
