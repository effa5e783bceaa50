"""People in Redis: a tenant's (or the platform's) members, each write in one transaction with its event.

Key layout (``{scope}`` is a tenant id, or ``platform`` for the platform's own people):

- ``tenants:m:{member_id}``              the member document, with the private ``identity``
  (``{"iss", "sub"}`` of the provider account it is bound to, once active)
- ``tenants:members:{scope}``            sorted set of the scope's member ids (score 0: by id)
- ``tenants:member-email:{scope}:{email}`` the member id holding an email in the scope
- ``tenants:owners:{scope}``             set of the scope's owners (``platform-admin``s), so
  the last-owner rule is one ``SCARD`` under ``WATCH``
- ``tenants:identity:{digest}``          hash ``{scope: member_id}`` of the members bound to
  one provider account (digest: SHA-256 of ``iss`` and ``sub``)
- ``tenants:invites:{email}``            hash ``{scope: member_id}`` of the invitations to an email

:class:`MemberStore` is made for one scope and reaches nothing else. The token exchange
must find a person across scopes by identity or email: that is :class:`UnsafeMemberDirectory`,
and nothing else does it.

Removing a member, or changing their role, raises the member's token floor
(:func:`aerie.auth.revocation.record_member_floor`) in the same transaction as the event,
so their tokens stop working everywhere within a second.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from ulid import ULID

from aerie import errors
from aerie.auth.revocation import record_member_floor
from aerie.events import EventContext, EventPublisher, new_event, utcnow
from aerie.pagination import Page, decode_cursor, encode_cursor
from aerie.redis import RedisProvider
from tenants.keys import TenantKeys
from tenants.roles import OWNER_ROLES

__all__ = ["PLATFORM_SCOPE", "BootstrapAdmin", "Identity", "MemberStore", "UnsafeMemberDirectory", "public_member"]

PLATFORM_SCOPE = "platform"


@dataclass(frozen=True)
class Identity:
    """A provider account: who signed in, as their provider names them."""

    issuer: str
    subject: str

    def digest(self) -> str:
        return hashlib.sha256(f"{self.issuer}\n{self.subject}".encode()).hexdigest()

    def as_doc(self) -> dict[str, str]:
        return {"iss": self.issuer, "sub": self.subject}


def _dump(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def public_member(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The API representation: everything but the bound identity."""
    return {k: v for k, v in doc.items() if k != "identity"}


class MemberStore:
    """The members of one tenant, or (``tenant_id=None``) the platform's own people."""

    def __init__(
        self, redis_provider: RedisProvider, events: EventPublisher, tenant_id: str | None, *, token_ttl_s: int
    ) -> None:
        self._redis = redis_provider
        self._events = events
        self._keys = TenantKeys(redis_provider.keyspace)
        self.tenant_id = tenant_id
        self._scope = tenant_id or PLATFORM_SCOPE
        self._owner_role = OWNER_ROLES[tenant_id is None]
        self._cut_for_s = token_ttl_s + 60

    @property
    def _client(self) -> redis.Redis:
        return self._redis.client

    def _load(self, raw: str | bytes | None) -> dict[str, Any] | None:
        doc = orjson.loads(raw) if raw else None
        # A member id of another scope answers exactly like one that does not exist.
        if doc is None or doc.get("tenant_id") != self.tenant_id:
            return None
        return doc

    def get(self, member_id: str) -> dict[str, Any] | None:
        return self._load(self._client.get(self._keys.member(member_id)))

    def require(self, member_id: str) -> dict[str, Any]:
        member = self.get(member_id)
        if member is None:
            raise errors.not_found()
        return member

    def list(self, *, limit: int, cursor: str | None) -> Page:
        after = decode_cursor(cursor, "after") if cursor else None
        start = f"({after}" if after else "-"
        ids = self._client.zrangebylex(self._keys.members(self._scope), start, "+", start=0, num=limit + 1)
        more = len(ids) > limit
        ids = ids[:limit]
        docs = self._client.mget([self._keys.member(i) for i in ids]) if ids else []
        items = [public_member(doc) for doc in map(self._load, docs) if doc is not None]
        return Page(items, encode_cursor({"after": ids[-1]}) if more and ids else None)

    def invite(
        self,
        email: str,
        role: str,
        language: str | None,
        ctx: EventContext,
        *,
        before: Callable[[Any], None] | None = None,
        watch: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """A new invited member; 409 when the email is already a member of this scope.

        ``before(pipe)`` runs first inside the transaction (the tenant's status check),
        reading what ``watch`` names.
        """
        now = utcnow()
        member = {
            "id": f"usr_{ULID()}",
            "tenant_id": self.tenant_id,
            "email": email,
            "role": role,
            "status": "invited",
            "language": language,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        email_key = self._keys.email(self._scope, email)

        def write(pipe: Any) -> None:
            if before is not None:
                before(pipe)
            if pipe.exists(email_key):
                raise errors.conflict(f"{email} is already a member.")
            pipe.multi()
            pipe.set(self._keys.member(member["id"]), _dump(member))
            pipe.set(email_key, member["id"])
            pipe.zadd(self._keys.members(self._scope), {member["id"]: 0})
            pipe.hset(self._keys.invites(email), self._scope, member["id"])
            if role == self._owner_role:
                pipe.sadd(self._keys.owners(self._scope), member["id"])
            data = {"member": member, "member_id": member["id"]}
            self._events.add(pipe, new_event("member.invited", self.tenant_id, data, ctx), self._keys.shard)

        self._redis.transaction(write, email_key, *watch)
        return member

    def ensure_invited(self, email: str, role: str, ctx: EventContext) -> bool:
        """Invite ``email`` unless it is a member already; whether this call invited it.

        Safe when every worker of every instance asks at once: the email key is watched, so
        exactly one transaction writes and the others see it taken.
        """
        if self._client.exists(self._keys.email(self._scope, email)):
            return False
        try:
            self.invite(email, role, None, ctx)
        except errors.Problem as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def update(
        self,
        member_id: str,
        changes: Mapping[str, Any],
        ctx: EventContext,
        *,
        if_match: int | None = None,
        check: Callable[[dict[str, Any]], None] | None = None,
        before: Callable[[Any], None] | None = None,
        watch: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Change ``role`` and/or ``language``; a role change cuts the member's tokens."""
        key = self._keys.member(member_id)
        owners = self._keys.owners(self._scope)
        result: dict[str, Any] = {}

        def write(pipe: Any) -> None:
            if before is not None:
                before(pipe)
            member = self._load(pipe.get(key))
            if member is None:
                raise errors.not_found()
            if check is not None:
                check(member)
            if if_match is not None and member["version"] != if_match:
                raise errors.precondition_failed()
            changed = {k: v for k, v in changes.items() if member.get(k) != v}
            demoted = "role" in changed and member["role"] == self._owner_role
            if demoted and pipe.scard(owners) <= 1:
                raise errors.conflict(f"The last {self._owner_role} cannot be demoted; make another one first.")
            if changed:
                member.update(changed, version=member["version"] + 1, updated_at=utcnow())
                pipe.multi()
                pipe.set(key, _dump(member))
                data: dict[str, Any] = {
                    "member": public_member(member),
                    "member_id": member_id,
                    "changes": sorted(changed),
                }
                if "role" in changed:
                    if changed["role"] == self._owner_role:
                        pipe.sadd(owners, member_id)
                    else:
                        pipe.srem(owners, member_id)
                    # Tokens minted before this version carry the old role's scopes.
                    record_member_floor(
                        pipe, member_id, member["version"], time.time() + self._cut_for_s, self._redis.keyspace
                    )
                    data["token_floor"] = member["version"]
                self._events.add(pipe, new_event("member.updated", self.tenant_id, data, ctx), self._keys.shard)
            result.update(member)

        self._redis.transaction(write, key, owners, *watch)
        return public_member(result)

    def remove(
        self,
        member_id: str,
        ctx: EventContext,
        *,
        check: Callable[[dict[str, Any]], None] | None = None,
        before: Callable[[Any], None] | None = None,
        watch: tuple[str, ...] = (),
    ) -> None:
        """Remove a member and cut their tokens; 409 for the last owner."""
        key = self._keys.member(member_id)
        owners = self._keys.owners(self._scope)

        def write(pipe: Any) -> None:
            if before is not None:
                before(pipe)
            member = self._load(pipe.get(key))
            if member is None:
                raise errors.not_found()
            if check is not None:
                check(member)
            if member["role"] == self._owner_role and pipe.scard(owners) <= 1:
                raise errors.conflict(f"The last {self._owner_role} cannot be removed; make another one first.")
            pipe.multi()
            self._queue_removal(pipe, member, ctx)

        self._redis.transaction(write, key, owners, *watch)

    def remove_all_queued(self, pipe: Any, ctx: EventContext) -> None:
        """Queue the removal of every member on ``pipe`` (already in MULTI): a deleted tenant.

        Reads happen on a separate connection; the caller watches the tenant document.
        """
        ids = self._client.zrange(self._keys.members(self._scope), 0, -1)
        docs = self._client.mget([self._keys.member(i) for i in ids]) if ids else []
        for member in map(self._load, docs):
            if member is not None:
                self._queue_removal(pipe, member, ctx)

    def _queue_removal(self, pipe: Any, member: Mapping[str, Any], ctx: EventContext) -> None:
        member_id = member["id"]
        pipe.delete(self._keys.member(member_id))
        pipe.delete(self._keys.email(self._scope, member["email"]))
        pipe.zrem(self._keys.members(self._scope), member_id)
        pipe.srem(self._keys.owners(self._scope), member_id)
        pipe.hdel(self._keys.invites(member["email"]), self._scope)
        identity = member.get("identity")
        if identity:
            pipe.hdel(self._keys.identity(Identity(identity["iss"], identity["sub"])), self._scope)
        floor = member["version"] + 1
        record_member_floor(pipe, member_id, floor, time.time() + self._cut_for_s, self._redis.keyspace)
        data = {"member": public_member(member), "member_id": member_id, "token_floor": floor}
        self._events.add(pipe, new_event("member.removed", self.tenant_id, data, ctx), self._keys.shard)


class UnsafeMemberDirectory:
    """Finds a person across every tenant: the token exchange's lookup, and nothing else's.

    Unsafe because it is not bound to a tenant: a caller could hand out another tenant's
    member. Only :mod:`tenants.exchange` uses it, and it narrows the result to the tenant the
    exchanging client may act for before anything is minted.
    """

    def __init__(self, redis_provider: RedisProvider, events: EventPublisher) -> None:
        self._redis = redis_provider
        self._events = events
        self._keys = TenantKeys(redis_provider.keyspace)

    def memberships(self, identity: Identity, email: str | None) -> dict[str, str]:
        """``{scope: member_id}`` of the members this person is, or may become by their email.

        Bound members match by identity only. An invitation matches by (verified) email,
        unless that scope already has a member bound to this identity.
        """
        r = self._redis.client
        found: dict[str, str] = dict(r.hgetall(self._keys.identity(identity)))
        if email:
            for scope, member_id in r.hgetall(self._keys.invites(email)).items():
                found.setdefault(scope, member_id)
        return found

    def members(self, member_ids: list[str]) -> list[dict[str, Any] | None]:
        """The members of these ids, in order (None for one gone): one pipelined round trip."""
        pipe = self._redis.client.pipeline(transaction=False)
        for member_id in member_ids:
            pipe.get(self._keys.member(member_id))
        return [orjson.loads(raw) if raw else None for raw in pipe.execute()]

    def claim(
        self,
        member_id: str,
        identity: Identity,
        ctx: EventContext,
        admit: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any] | None:
        """The member, bound to ``identity``: activated on its first exchange (``member.joined``).

        None when the member is gone, or is bound to another provider account: only the
        first verified sign-in's ``(iss, sub)`` matches an active member afterwards.
        ``admit(member)`` runs before anything is written and may raise to refuse: an
        exchange refused for its scopes leaves an invited member invited.
        """
        key = self._keys.member(member_id)
        result: dict[str, Any] = {}

        def write(pipe: Any) -> None:
            raw = pipe.get(key)
            member = orjson.loads(raw) if raw else None
            result.clear()
            if member is None:
                return
            bound = member.get("identity")
            if bound is not None and bound != identity.as_doc():
                return
            if admit is not None:
                admit(member)
            if bound is not None:
                result.update(member)
                return
            scope = member.get("tenant_id") or PLATFORM_SCOPE
            member.update(
                status="active", identity=identity.as_doc(), version=member["version"] + 1, updated_at=utcnow()
            )
            pipe.multi()
            pipe.set(key, _dump(member))
            pipe.hset(self._keys.identity(identity), scope, member_id)
            pipe.hdel(self._keys.invites(member["email"]), scope)
            data = {"member": public_member(member), "member_id": member_id}
            self._events.add(pipe, new_event("member.joined", member.get("tenant_id"), data, ctx), self._keys.shard)
            result.update(member)

        self._redis.transaction(write, key)
        return dict(result) if result else None


class BootstrapAdmin:
    """The first platform-admin, from ``AERIE_BOOTSTRAP_ADMIN_EMAIL``: invited once, by whoever asks first.

    Asked before the platform's people are read and before every exchange, so the operator
    can sign in on a fresh deployment. Every worker of every instance may race:
    :meth:`MemberStore.ensure_invited` writes once.
    """

    def __init__(self, redis_provider: RedisProvider, store: MemberStore, email: str | None) -> None:
        self._redis = redis_provider
        self._keys = TenantKeys(redis_provider.keyspace)
        self._store = store
        self._email = email

    def ensure(self) -> None:
        """Invite the bootstrap person unless that was done: one ``EXISTS`` once it was.

        The marker, not the member, says it was done: an operator who later removes the
        bootstrap person (another platform-admin remaining) does not see them come back,
        while a Redis that lost its data gets them again.
        """
        if self._email is None or self._redis.client.exists(self._keys.bootstrap_marker):
            return
        self._store.ensure_invited(self._email, OWNER_ROLES[True], EventContext.system("tenants"))
        self._redis.client.set(self._keys.bootstrap_marker, self._email)
