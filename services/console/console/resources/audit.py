"""The audit trail: the newest entries, and the chain verified with the answer shown plainly.

A platform admin reads the platform trail, or a tenant's by ``?tenant_id=``; a tenant's
people read their own tenant's (the audit service refuses anything else).
"""

from __future__ import annotations

from typing import Any

import falcon

from console.web import Pages


class AuditPage:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self._pages.session(req)
        params: dict[str, Any] = {"limit": 50}
        tenant_id = req.get_param("tenant_id") or None
        if tenant_id:
            params["tenant_id"] = tenant_id
        action = req.get_param("action")
        if action:
            params["action"] = action
        page = self._pages.call(session, req, "GET", "audit", "/v1/audit/events", params=params)
        verified = None
        if req.get_param("verify") == "1":
            trail = {"tenant_id": tenant_id} if tenant_id else None
            verified = self._pages.call(session, req, "GET", "audit", "/v1/audit/verify", params=trail)
        self._pages.render(
            req,
            resp,
            "audit.html",
            session,
            entries=page["items"],
            verified=verified,
            tenant_id=tenant_id,
            action=action,
        )
