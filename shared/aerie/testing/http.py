"""Small HTTP helpers for tests."""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["assert_problem", "basic_auth", "bearer"]


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(resp: Any, status: int, code: str, request_id: str | None = None) -> dict[str, Any]:
    """``resp`` (a Falcon TestClient result) is the contract's problem+json for ``status``/``code``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    body = resp.json
    assert {"type", "title", "status", "detail", "code", "request_id"} <= set(body)
    assert body["status"] == status
    assert body["code"] == code
    assert body["request_id"] == resp.headers["X-Request-ID"]
    if request_id is not None:
        assert body["request_id"] == request_id
    return body
