"""Small HTTP helpers for tests."""

from __future__ import annotations

import base64

__all__ = ["basic_auth", "bearer"]


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
