"""Evaluation for the caller's tenant: ``POST /v1/evaluate``, one flag, the snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import falcon

from aerie import errors
from aerie.app import JSON_UTF8, dumps_json
from aerie.auth.principal import PLATFORM_ADMIN, Principal
from aerie.endpoints import endpoint
from aerie.i18n import msg
from aerie.tenancy import TenantScope
from flags import schemas
from flags.evaluator import Evaluator
from flags.snapshot import FlagReplica

READ = ("flags:read",)
#: ``POST /v1/evaluate?tenant_id=``: a platform admin previews a flag as that tenant sees it
#: (the console's "evaluate for this context"); a tenant token may only repeat its own.
EVALUATE_QUERY: dict[str, Any] = {"tenant_id": {"type": "string", "regex": r"^[A-Za-z0-9_-]{1,64}$"}}


def with_person(principal: Principal, context: Mapping[str, Any]) -> Mapping[str, Any]:
    """``context`` with ``user_id`` the person's own when a person asks without naming one."""
    if principal.is_user and "user_id" not in context:
        return {**context, "user_id": principal.subject}
    return context


class Evaluate:
    def __init__(self, evaluator: Evaluator, scope: TenantScope) -> None:
        self._evaluator = evaluator
        self._scope = scope

    @endpoint(
        "Evaluate flags for a context",
        scopes=READ,
        query=EVALUATE_QUERY,
        body=schemas.EVALUATE,
        check=schemas.check_evaluate,
        response=schemas.EVALUATE_RESULT,
        description="`context` is an object of attributes (`user_id`, `session_id`, `ip`, anything else), at "
        "most 100 keys and 8 KiB as JSON, nested at most 254 levels. The server adds `tenant_id` (from the "
        "token) and `tenant` (`plan`, `created_at`, `language` from the tenants service), replacing any sent. "
        "Without `keys`, every flag is evaluated; a key that names no flag answers reason `ERROR` with value null. "
        "With a person's token, `user_id` defaults to the person (the token's `sub`). A platform:admin token "
        "names the tenant to evaluate as with `?tenant_id=` (a preview); any other platform token gets 403.",
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.context.body
        principal = req.context.principal
        tenant_id = self._scope.reading(principal, req.context.query.get("tenant_id"), platform=PLATFORM_ADMIN)
        if tenant_id is None:
            raise errors.Problem(403, "tenant_required", msg("Name the tenant to evaluate as: ?tenant_id=."))
        context = with_person(principal, body.get("context", {}))
        flags = self._evaluator.evaluate_flags(tenant_id, context, body.get("keys"))
        resp.content_type = JSON_UTF8
        resp.data = dumps_json({"flags": {key: evaluation.to_fragment() for key, evaluation in flags.items()}})


class FlagEvaluation:
    def __init__(self, evaluator: Evaluator, snapshot: FlagReplica, scope: TenantScope) -> None:
        self._evaluator = evaluator
        self._scope = scope
        self._snapshot = snapshot

    @endpoint(
        "Evaluate one flag for a user (or session, or IP)",
        scopes=READ,
        tenant=True,
        query=schemas.EVALUATION_QUERY,
        response=schemas.EVALUATION,
        responses={404: "There is no such flag"},
        description="With a person's token, `user_id` defaults to the person (the token's `sub`).",
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        principal = req.context.principal
        tenant_id = self._scope.own(principal)
        state = self._snapshot.current()
        context = self._evaluator.context(tenant_id, with_person(principal, req.context.query))
        result = self._evaluator.one(state, tenant_id, key, context)
        if result is None:
            raise errors.not_found(f"There is no flag {key!r}.")
        resp.media = result.to_dict()


class FlagSnapshot:
    def __init__(self, evaluator: Evaluator, snapshot: FlagReplica, scope: TenantScope) -> None:
        self._evaluator = evaluator
        self._scope = scope
        self._snapshot = snapshot

    @endpoint(
        "Everything a client needs to evaluate the caller tenant's flags locally",
        scopes=READ,
        tenant=True,
        response=schemas.SNAPSHOT,
        description="Not in the HTTP contract: the Python client (`aerie_client.flags.client`) evaluates this snapshot "
        "with the same code as the server, and refetches it when `/v1/flags/stream` reports a change.",
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenant_id = self._scope.own(req.context.principal)
        state = self._snapshot.current()
        overrides = state.tenant(tenant_id)
        resp.media = {
            "flags": dict(state.docs),
            "overrides": {"tenant": dict(overrides.tenant), "users": {k: dict(v) for k, v in overrides.users.items()}},
            "tenant": self._evaluator.tenant_attributes(tenant_id),
            "tenant_id": tenant_id,
            "revision": state.revision,
        }
