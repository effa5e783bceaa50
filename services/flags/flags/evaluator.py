"""Evaluation for a request: the caller's context, the server's additions, the snapshot.

Nothing here touches Redis: flags and overrides come from :class:`flags.snapshot.FlagReplica`
and tenant attributes from the (cached) tenant directory. The evaluation itself is the one
shared with the Python client, :meth:`aerie_client.flags.evaluation.CompiledFlag.evaluate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aerie.tenant_directory import TenantSource
from aerie_client.flags.evaluation import ABSENT, ERROR, Evaluation
from flags.snapshot import FlagReplica, State
from flags.usage import Usage

__all__ = ["TENANT_ATTRIBUTES", "Evaluator"]

#: What evaluation sees of the caller's tenant, as ``tenant.<name>``.
TENANT_ATTRIBUTES = ("plan", "created_at", "language")
_UNKNOWN_FLAG = Evaluation(None, None, ERROR, None)


#: Tenants whose attributes are kept between requests; past this the map starts over.
MAX_KEPT_TENANTS = 10_000


class Evaluator:
    def __init__(self, snapshot: FlagReplica, tenants: TenantSource, usage: Usage | None = None) -> None:
        self._snapshot = snapshot
        self._tenants = tenants
        #: The flags evaluated here, for their ``last_evaluated_at`` (:mod:`flags.usage`).
        self.usage = usage or Usage()
        # tenant id -> (the directory's document, its attributes): rebuilt only when the
        # directory hands out another document (refetched, or changed by a tenant.* event).
        self._attributes: dict[str, tuple[object, dict[str, Any]]] = {}

    def tenant_attributes(self, tenant_id: str) -> dict[str, Any]:
        """``plan``, ``created_at`` and ``language`` of the tenant (None when unknown).

        The dict is shared by every request until the tenant changes: read it, never write it.
        """
        tenant = self._tenants.get(tenant_id)
        kept = self._attributes.get(tenant_id)
        if kept is not None and kept[0] is tenant:
            return kept[1]
        found = tenant or {}
        attributes = {name: found.get(name) for name in TENANT_ATTRIBUTES}
        if len(self._attributes) >= MAX_KEPT_TENANTS:
            self._attributes = {}
        self._attributes[tenant_id] = (tenant, attributes)
        return attributes

    def context(self, tenant_id: str, supplied: Mapping[str, Any]) -> dict[str, Any]:
        """The caller's context with ``tenant_id`` and ``tenant`` set by the server (never spoofed)."""
        return {**supplied, "tenant_id": tenant_id, "tenant": self.tenant_attributes(tenant_id)}

    def evaluate_flags(
        self, tenant_id: str, supplied: Mapping[str, Any], keys: Iterable[str] | None = None
    ) -> dict[str, Evaluation]:
        """``{key: Evaluation}`` for ``keys`` (default: every flag); each is sent as its
        ``to_dict()``, ``{"value", "variant", "reason", "rule"}``.

        A key that names no flag answers its ``ERROR`` evaluation (value null) rather than
        failing the whole request: clients ask for many flags at once, and one removed flag
        must not take the others down. This is the service's hot path, hence the plain loop
        and the tenant's overrides looked up once.
        """
        state = self._snapshot.current()
        context = self.context(tenant_id, supplied)
        flags = state.flags
        wanted = flags if keys is None else keys
        overrides = state.overrides.get(tenant_id)
        out: dict[str, Evaluation] = {}
        if overrides is None:
            for key in wanted:
                flag = flags.get(key)
                out[key] = _UNKNOWN_FLAG if flag is None else flag.evaluate(context)
        else:
            for key in wanted:
                out[key] = _overridden(state, tenant_id, key, context) or _UNKNOWN_FLAG
        # Only flags: keys a caller makes up must not grow the set until the next flush.
        self.usage.saw_all(flags if keys is None else out.keys() & flags.keys())
        return out

    def one(self, state: State, tenant_id: str, key: str, context: Mapping[str, Any]) -> Evaluation | None:
        """One flag's evaluation, or None when there is no such flag."""
        evaluation = _overridden(state, tenant_id, key, context)
        if evaluation is not None:
            self.usage.saw(key)
        return evaluation


def _overridden(state: State, tenant_id: str, key: str, context: Mapping[str, Any]) -> Evaluation | None:
    """The flag's evaluation with the tenant's overrides, or None when there is no such flag."""
    flag = state.flags.get(key)
    if flag is None:
        return None
    overrides = state.tenant(tenant_id)
    user_override: Any = ABSENT
    per_user = overrides.users.get(key)
    if per_user:
        user_id = context.get("user_id")
        if isinstance(user_id, str | int) and not isinstance(user_id, bool):
            user_override = per_user.get(str(user_id), ABSENT)
    return flag.evaluate(context, tenant_override=overrides.tenant.get(key, ABSENT), user_override=user_override)
