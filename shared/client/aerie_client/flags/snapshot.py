"""A tenant's flags as the client holds them: ``GET /v1/flags/snapshot``, parsed and compiled.

The body is everything the server itself evaluates with for the caller's tenant: every flag
document, the tenant's overrides, the tenant's attributes and id. :func:`parse_snapshot`
compiles each flag once, so an evaluation in the client is as cheap as in the server, and
builds an immutable :class:`TenantSnapshot` that the client swaps in as a whole: readers
never see half of an update and never take a lock. (Its mappings are plain dicts that
nothing writes to after parsing: a read-only proxy would cost a tenth of an evaluation's time.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aerie_client.flags.evaluation import ABSENT, CompiledFlag, Evaluation, compile_flag

__all__ = ["TenantSnapshot", "parse_snapshot"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TenantSnapshot:
    flags: Mapping[str, CompiledFlag]
    tenant_overrides: Mapping[str, Any]
    user_overrides: Mapping[str, Mapping[str, Any]]
    tenant: Mapping[str, Any]
    tenant_id: str | None
    revision: int | None
    #: Per key: the compiled flag, its tenant override (or ABSENT) and its user overrides, so
    #: that an evaluation costs one dict lookup before the engine runs.
    entries: Mapping[str, tuple[CompiledFlag, Any, Mapping[str, Any] | None]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        entries = {
            key: (flag, self.tenant_overrides.get(key, ABSENT), self.user_overrides.get(key) or None)
            for key, flag in self.flags.items()
        }
        object.__setattr__(self, "entries", entries)  # derived once; frozen stays true

    def evaluate(self, key: str, context: dict[str, Any]) -> Evaluation | None:
        """``key``'s evaluation exactly as the server makes it, or None for an unknown flag.

        ``context`` is the caller's and is changed in place: ``tenant`` and ``tenant_id`` are
        set from the snapshot, as the server sets them from the token (a caller cannot spoof
        them). The user override is looked up by ``user_id`` the way the service does (a
        string, or an integer as its decimal digits).
        """
        entry = self.entries.get(key)
        if entry is None:
            return None
        flag, tenant_override, per_user = entry
        context["tenant"] = self.tenant
        context["tenant_id"] = self.tenant_id
        user_override: Any = ABSENT
        if per_user is not None:
            user_id = context.get("user_id")
            kind = type(user_id)
            if kind is str or kind is int:
                user_override = per_user.get(str(user_id), ABSENT)
        return flag.evaluate(context, tenant_override=tenant_override, user_override=user_override)

    def changed_keys(self, previous: TenantSnapshot | None) -> frozenset[str]:
        """The keys whose answers may differ from ``previous``'s: added, removed, a changed
        document or override. A changed tenant (its attributes or id) changes every key, since
        any rule may read them."""
        if previous is None or previous.tenant != self.tenant or previous.tenant_id != self.tenant_id:
            return frozenset(self.flags) | (frozenset(previous.flags) if previous is not None else frozenset())
        changed = set(self.flags.keys() ^ previous.flags.keys())
        for key, (flag, tenant_override, per_user) in self.entries.items():
            old = previous.entries.get(key)
            if old is None:
                continue
            old_flag, old_tenant_override, old_per_user = old
            if (
                _differs(flag.doc, old_flag.doc)
                or _differs(tenant_override, old_tenant_override)
                or _differs(per_user or {}, old_per_user or {})
            ):
                changed.add(key)
        return frozenset(changed)

    def to_body(self) -> dict[str, Any]:
        """The snapshot as ``GET /v1/flags/snapshot`` answered it: :func:`parse_snapshot` of it
        gives an equal snapshot back (what a snapshot file holds)."""
        return {
            "flags": {key: flag.doc for key, flag in self.flags.items()},
            "overrides": {
                "tenant": dict(self.tenant_overrides),
                "users": {key: dict(per_user) for key, per_user in self.user_overrides.items()},
            },
            "tenant": dict(self.tenant),
            "tenant_id": self.tenant_id,
            "revision": self.revision,
        }


def _differs(new: Any, old: Any) -> bool:
    """Whether two JSON values differ as JSON: ``True`` and ``1`` do (Python's ``==`` says no),
    which is what keeps a flag switched from ``1`` to ``true`` from going unreported."""
    if type(new) is not type(old):
        return True
    if type(new) is dict:
        return new.keys() != old.keys() or any(_differs(value, old[key]) for key, value in new.items())
    if type(new) is list:
        return len(new) != len(old) or any(_differs(a, b) for a, b in zip(new, old, strict=True))
    return new != old


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise ValueError(f"snapshot: {what} is not an object")
    return value


def parse_snapshot(body: Any) -> TenantSnapshot:
    """The snapshot in a response body; ValueError when the body is not one.

    A malformed body is refused as a whole (the client then keeps what it had) rather than
    half applied. Inside a well-formed body, a malformed flag document still compiles (to a
    flag answering ``ERROR``): one bad flag must not freeze every other flag's updates.
    """
    if not isinstance(body, Mapping):
        raise ValueError("snapshot: the body is not an object")
    docs = body.get("flags")
    if not isinstance(docs, Mapping):
        raise ValueError("snapshot: flags is missing or not an object")
    overrides = _mapping(body.get("overrides"), "overrides")
    users = _mapping(overrides.get("users"), "overrides.users")
    tenant_id = body.get("tenant_id")
    revision = body.get("revision")
    return TenantSnapshot(
        flags={str(key): compile_flag(doc) for key, doc in docs.items()},
        tenant_overrides=dict(_mapping(overrides.get("tenant"), "overrides.tenant")),
        user_overrides={
            str(key): dict(_mapping(per_user, f"overrides.users.{key}")) for key, per_user in users.items()
        },
        tenant=dict(_mapping(body.get("tenant"), "tenant")),
        tenant_id=tenant_id if isinstance(tenant_id, str) else None,
        revision=revision if type(revision) is int else None,
    )
