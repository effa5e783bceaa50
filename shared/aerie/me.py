"""``GET /v1/me``: who the caller is, answered by every service from the token alone.

A person's token (token exchange) carries the member's id, role, email and language, so
no service asks the tenants service to answer; a client's token has no role or email.
``language`` is the language this very request is answered in (``req.context.language``,
negotiated by :mod:`aerie.i18n`): for a person, their own; otherwise ``Accept-Language``
or the tenant's.
"""

from __future__ import annotations

import falcon

from aerie.endpoints import ANY_TOKEN, endpoint

__all__ = ["ME", "MeResource"]

ME = {
    "type": {"type": "string", "allowed": ["user", "client"]},
    "id": {"type": "string"},
    "tenant_id": {"type": "string", "nullable": True},
    "client_id": {"type": "string"},
    "scopes": {"type": "list", "schema": {"type": "string"}},
    "role": {"type": "string"},
    "email": {"type": "string"},
    "language": {"type": "string"},
}


class MeResource:
    @endpoint(
        "The caller: a person (user token) or an API client",
        scopes=ANY_TOKEN,
        response=ME,
        description="`role` and `email` are present for people only.",
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        body: dict[str, object] = {
            "type": "user" if principal.is_user else "client",
            "id": principal.subject,
            "tenant_id": principal.tenant_id,
            "client_id": principal.client_id,
            "scopes": sorted(principal.scopes),
        }
        if principal.is_user:
            body["role"] = principal.role
            if principal.email is not None:
                body["email"] = principal.email
        body["language"] = getattr(req.context, "language", None) or principal.language or "en"
        resp.media = body
