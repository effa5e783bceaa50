"""``Idempotency-Key`` on creates: the first response is replayed for 24 h.

Scope is the key *and* the client that sent it, so two clients cannot collide. The request
is fingerprinted (method, path, validated body); the same key with another fingerprint is
409. A key whose first request is still running is also 409, so two concurrent retries
cannot both create. Responses of 5xx are not kept: the client may retry them for real.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import falcon

from aerie import errors
from aerie.i18n import msg
from aerie.middleware import spec_for
from aerie.redis import RedisProvider

__all__ = ["REPLAY_TTL_S", "IdempotencyMiddleware"]

REPLAY_TTL_S = 24 * 3600
PENDING_TTL_S = 60
KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
REPLAYED_HEADERS = ("Location", "ETag", "Content-Type")


def _fingerprint(req: falcon.Request) -> str:
    body = getattr(req.context, "body", None)
    canonical = json.dumps([req.method, req.path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyMiddleware:
    def __init__(self, redis: RedisProvider) -> None:
        self._redis = redis

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
    ) -> None:
        key = req.env.get("HTTP_IDEMPOTENCY_KEY")
        if key is None or req.method != "POST":
            return
        spec = spec_for(req, resource)
        if spec is None or not spec.idempotent:
            return
        if not KEY_RE.match(key):
            raise errors.bad_request(msg("Idempotency-Key must be 1 to 255 visible ASCII characters."))
        principal = getattr(req.context, "principal", None)
        owner = principal.client_id if principal else "anonymous"
        redis_key = "aerie:idem:" + hashlib.sha256(f"{owner}\n{key}".encode()).hexdigest()
        fingerprint = _fingerprint(req)
        client = self._redis.client
        pending = json.dumps({"state": "pending", "fingerprint": fingerprint})
        if client.set(redis_key, pending, nx=True, ex=PENDING_TTL_S):
            req.context.idempotency = (redis_key, fingerprint)
            return
        raw = client.get(redis_key)
        if raw is None:  # expired between the two calls: treat as a fresh conflict-free retry
            raise errors.conflict(msg("The request with this Idempotency-Key is being processed; retry shortly."))
        record = json.loads(raw)
        if record["fingerprint"] != fingerprint:
            raise errors.conflict(msg("This Idempotency-Key was used with a different request."))
        if record["state"] == "pending":
            raise errors.conflict(msg("The request with this Idempotency-Key is still being processed; retry shortly."))
        resp.status = record["status"]
        for name, value in record["headers"].items():
            resp.set_header(name, value)
        resp.set_header("Idempotent-Replayed", "true")
        resp.data = record["body"].encode()
        resp.complete = True

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        claim = getattr(req.context, "idempotency", None)
        if claim is None:
            return
        redis_key, fingerprint = claim
        status = resp.status_code
        if status >= 500:
            self._redis.client.delete(redis_key)
            return
        body = resp.render_body() or b""
        headers = {h: v for h in REPLAYED_HEADERS if (v := resp.get_header(h)) is not None}
        record = {
            "state": "done",
            "fingerprint": fingerprint,
            "status": status,
            "headers": headers,
            "body": body.decode(),
        }
        self._redis.client.set(redis_key, json.dumps(record), ex=REPLAY_TTL_S)
