"""Direct appends (``POST /v1/audit/events``): a validated body becomes an entry, once per id.

The body has passed ``schemas.APPEND``; what Cerberus cannot say is checked here: the
address is an IP address, and the metadata is at most 16 KiB and 32 levels deep. That it
is plain JSON (finite numbers, 64-bit integers, valid Unicode: what re-serialises
identically, so the entry's hash can be recomputed by anyone from the API's answer) the
body's parsing already made sure of (``aerie.json_input``).

``actor.client_id`` is the appending client's own id, from its token: the body names who
acted (``actor.type`` and ``actor.id``, which only the appending system can know), never
which API client recorded it, so one client cannot put entries in another's name. A body
that gives a different ``client_id`` is refused (422).

An id the trail already holds is a replay: the stored entry is answered (200) when every
field the body gives equals it, and 409 when one differs. Fields the body leaves out
(``occurred_at``: now; ``request_id``: this request's) are not compared.

Ids starting with ``evt_`` (in any letter case) are refused (422 on ``id``): that space
belongs to the entries ingested from the event stream. A trail records an id once, so an
appended entry holding an event's id (read, say, from the live event stream before audit
ingested it) would make the real event a duplicate and take its place. Keeping the two
spaces disjoint, rather than deduping each source apart, also keeps one id naming at most
one entry per trail, so ``GET /v1/audit/events/{id}`` can only ever answer the one entry
an id means. Appended entries carry ``"source": "api"``, ingested ones ``"event"``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from aerie import errors
from aerie.events import utcnow
from aerie.json_input import nests_deeper_than
from audit.entry import EVENT_ID_PREFIX, MAX_METADATA_BYTES, MAX_METADATA_DEPTH, SOURCE_API, is_event_id, normalize_time
from audit.trail import Trail

__all__ = ["append_entry"]

_COMPARED = ("action", "actor", "target", "occurred_at", "ip", "user_agent", "request_id", "message", "metadata")


def _check(body: Mapping[str, Any], client_id: str) -> None:
    problems: list[dict[str, str]] = []
    if is_event_id(body["id"]):
        problems.append(
            {"field": "id", "message": f"must not start with {EVENT_ID_PREFIX}: those ids are the ingested events'"}
        )
    claimed = body["actor"].get("client_id")
    if claimed is not None and claimed != client_id:
        problems.append({"field": "actor.client_id", "message": "must be your own client id (set from your token)"})
    ip = body.get("ip")
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            problems.append({"field": "ip", "message": "must be an IPv4 or IPv6 address"})
    metadata = body.get("metadata") or {}
    if nests_deeper_than(metadata, MAX_METADATA_DEPTH):
        problems.append({"field": "metadata", "message": f"nests deeper than {MAX_METADATA_DEPTH} levels"})
    else:
        size = len(json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_METADATA_BYTES:
            problems.append(
                {"field": "metadata", "message": f"is {size} bytes; at most {MAX_METADATA_BYTES} are allowed"}
            )
    if problems:
        raise errors.validation_error(problems, detail="The request body has invalid fields.")


def append_entry(
    trail: Trail, body: Mapping[str, Any], request_id: str | None, client_id: str
) -> tuple[dict[str, Any], bool]:
    """The entry ``client_id`` appends with ``body``, and whether this call recorded it
    (False: a replay of its id)."""
    _check(body, client_id)
    now = utcnow()
    entry = {
        "id": body["id"],
        "tenant_id": trail.tenant_id,
        "occurred_at": normalize_time(body["occurred_at"]) if body.get("occurred_at") else now,
        "action": body["action"],
        "actor": {"type": body["actor"]["type"], "id": body["actor"].get("id"), "client_id": client_id},
        "target": {k: body["target"].get(k) for k in ("type", "id")},
        "ip": body.get("ip"),
        "user_agent": body.get("user_agent"),
        "request_id": body.get("request_id") or request_id,
        "message": body.get("message", ""),
        "metadata": body.get("metadata", {}),
        "source": SOURCE_API,
    }
    (outcome,) = trail.append([entry], utcnow)
    if outcome.created:
        assert outcome.entry is not None
        return outcome.entry, True
    stored = trail.get(entry["id"])
    if stored is None:  # removed by retention between the two reads
        raise errors.conflict("This id was recorded before and has since expired.")
    given = [k for k in _COMPARED if body.get(k) is not None]
    if any(stored.get(k) != entry[k] for k in given):
        raise errors.conflict("An entry with this id and different content is already recorded.")
    return stored, False
