"""The flag evaluation test vectors that the flags service's and the client's tests both run.

Each vector is a flag document, a caller's context, the tenant the service would add, the
overrides in force and the expected evaluation (with the rollout bucket where a rollout
decides). The engine's tests evaluate every vector directly and the service's tests run
every vector through HTTP (PUT the flag, set the overrides, ``POST /v1/evaluate``), so the
server and the client can never disagree without a test failing on one side.

The expectations in ``vectors.json`` are written by hand, never generated from the engine:
only the ids sitting on a bucket boundary were found by hashing. Vector fields:

* ``name``: unique, says what the vector shows.
* ``flag``: the flag document as ``PUT /v1/flags/{key}`` takes it (valid for the service).
* ``context``: what the caller sends; it never holds ``tenant`` or ``tenant_id``.
* ``tenant`` (``plan``, ``created_at``, ``language``) and ``tenant_id``: what the service adds
  from the token and the tenants service; a service test sets its fake tenants up to match.
* ``overrides``: ``{"tenant"?: value, "user"?: value}``, the user override being for
  ``context["user_id"]``. Some vectors hold overrides their flag's ``allow_overrides`` does not
  admit (to show they are ignored): over HTTP, set them while the flag admits them, then PUT
  the vector's flag.
* ``expected``: ``{"value", "variant", "reason", "rule", "bucket"?}``; the first four are
  exactly the per-key object of ``POST /v1/evaluate``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from aerie_client.flags.evaluation import ABSENT

__all__ = ["context", "load", "overrides"]


@cache
def _raw() -> str:
    return files("aerie_client.flags").joinpath("vectors.json").read_text(encoding="utf-8")


def load() -> list[dict[str, Any]]:
    """Every vector, freshly parsed (callers may mutate what they get)."""
    return json.loads(_raw())["vectors"]


def context(vector: dict[str, Any]) -> dict[str, Any]:
    """The context the engine sees: the caller's, plus ``tenant`` and ``tenant_id`` as the service adds them."""
    return {**vector["context"], "tenant": vector["tenant"], "tenant_id": vector["tenant_id"]}


def overrides(vector: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for :meth:`CompiledFlag.evaluate`: ``tenant_override``/``user_override``."""
    given = vector.get("overrides") or {}
    return {
        "tenant_override": given.get("tenant", ABSENT),
        "user_override": given.get("user", ABSENT),
    }
