"""What an audit entry is, how its hash is computed, and how an event becomes one.

An entry is exactly the document the API returns. Its ``hash`` is the hex SHA-256 of
``prev_hash`` followed by the canonical JSON of every other field (docs/api.md), so anyone
holding an export can recompute the chain with the standard library alone::

    json.dumps(entry_without_hash, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

Because verifiers re-serialise what they parsed, an entry may only hold values that
survive a JSON round trip unchanged: finite floats, integers within 64 bits, strings that
encode as UTF-8. :func:`json_safe` enforces that on whatever an event carries.

What the event envelope carries (``aerie.events.new_event``/``EventContext``):
``id, type, version, occurred_at, tenant_id, actor {type, id, client_id} | null,
request_id, ip, user_agent, data``. ``actor`` is the verified token's principal (type
``client`` or ``platform``), ``{"type": "service", ...}`` for a service's own work, the
authenticating client for ``token.*`` events, and null when nobody could be identified
(a token request with an unknown client).

Every entry says where it came from in ``source``: ``"event"`` (ingested from the event
stream) or ``"api"`` (appended directly with ``POST /v1/audit/events``). Like every other
field it is covered by the hash; entries recorded before it existed simply lack it and
verify as they were sealed, since the hash is always recomputed from the stored fields.

The two sources have disjoint id spaces, so neither can ever claim the other's id (a
trail records an id once; an entry that took an event's id first would make the event
itself a "duplicate"): ingested entries' ids always start with :data:`EVENT_ID_PREFIX`
(``aerie.events.new_event`` mints ``evt_<ULID>``; an event some other publisher gave
another id is recorded under that id with the prefix put in front), and a direct append
whose id starts with it, in any letter case, is refused (:mod:`audit.append`). One id
therefore names at most one entry per trail, and ``GET /v1/audit/events/{id}`` is never
ambiguous.

``token.denied`` that names a tenant (the denied client is that tenant's, or a platform
client asked to act for it) is recorded twice: in the tenant's trail, so a tenant sees the
attempts on its credentials, and in the platform trail, which holds every denial. Both
copies are the same entry (same id, ``tenant_id`` naming the tenant), each sealed in its
own chain; see :func:`trails_of`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aerie.json_input import MAX_INT, MIN_INT

__all__ = [
    "EVENT_ID_PREFIX",
    "GENESIS",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "SOURCE_API",
    "SOURCE_EVENT",
    "TENANT_ID_RE",
    "canonical",
    "chain_hash",
    "entry_from_event",
    "is_event_id",
    "json_safe",
    "normalize_time",
    "seal",
    "trails_of",
]

#: Every ingested entry's id starts with this, and no directly appended entry's id does.
EVENT_ID_PREFIX = "evt_"
#: ``source`` of an entry ingested from the event stream.
SOURCE_EVENT = "event"
#: ``source`` of an entry appended with ``POST /v1/audit/events``.
SOURCE_API = "api"
#: Actions whose entry goes to the platform trail as well as to the tenant the event names.
ALSO_ON_PLATFORM_TRAIL = frozenset({"token.denied"})
#: The longest entry id.
MAX_ID_LENGTH = 128
#: The ``prev_hash`` of a trail's first entry.
GENESIS = "0" * 64
#: Direct appends may carry at most this much metadata (its canonical JSON, UTF-8).
MAX_METADATA_BYTES = 16 * 1024
#: ... and nest at most this deep (JSON encoders and recursive walks stop at a few hundred).
MAX_METADATA_DEPTH = 32
#: Events carry their ``data`` as metadata; beyond this it is replaced by a digest so one
#: oversized event cannot bloat the trail (the digest still pins what it was).
MAX_EVENT_DATA_BYTES = 64 * 1024
#: What a tenant id may look like before it goes into a key.
TENANT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Keys whose values never belong in an audit trail, whatever an event carried.
_SECRET_KEY_RE = re.compile(r"(secret|password|passwd|access_token|refresh_token|private_key)", re.IGNORECASE)


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The canonical JSON of ``entry`` without its ``hash``, UTF-8 encoded (docs/api.md)."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(entry)).hexdigest()


def seal(entry: dict[str, Any], seq: int, prev_hash: str, recorded_at: str) -> dict[str, Any]:
    """``entry`` placed in its chain: seq, recorded_at, prev_hash and hash filled in."""
    sealed = {**entry, "seq": seq, "recorded_at": recorded_at, "prev_hash": prev_hash}
    sealed["hash"] = chain_hash(prev_hash, sealed)
    return sealed


def normalize_time(value: Any) -> str | None:
    """An RFC 3339 timestamp as UTC with millisecond precision (``...T12:00:00.000Z``), or None."""
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_safe(value: Any, *, redact: bool = False) -> Any:
    """``value`` with everything a JSON round trip would change made stable.

    Non-finite floats and integers beyond 64 bits become strings, lone surrogates are
    replaced, non-string keys become strings. With ``redact``, values under secret-looking
    keys are replaced: an event's payload is not ours to trust with credentials.
    """
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode()
        return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if MIN_INT <= value <= MAX_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {
            json_safe(str(k)): "[redacted]" if redact and _SECRET_KEY_RE.search(str(k)) else json_safe(v, redact=redact)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [json_safe(v, redact=redact) for v in value]
    return json_safe(str(value))


def _str_or_none(value: Any, maxlength: int) -> str | None:
    if value is None:
        return None
    return json_safe(str(value))[:maxlength]


def _actor(raw: Any) -> dict[str, str | None]:
    if not isinstance(raw, Mapping):
        return {"type": "anonymous", "id": None, "client_id": None}
    return {
        "type": _str_or_none(raw.get("type"), 32) or "unknown",
        "id": _str_or_none(raw.get("id"), 200),
        "client_id": _str_or_none(raw.get("client_id"), 200),
    }


def _target(action: str, tenant_id: str | None, data: Mapping[str, Any]) -> dict[str, str | None]:
    """What an event acted on, from its type and payload.

    ``tenant.*`` -> the tenant, ``client.*`` -> the client, ``token.issued`` and
    ``token.exchanged`` -> the token (its ``jti``), ``token.denied`` -> the client that asked,
    ``member.*`` -> the member, ``project.*`` -> the project,
    ``flag.*`` (overrides too) -> the flag by key. Unknown types fall back to the type's
    first segment and whichever id-like field the payload has.
    """
    kind = action.split(".", 1)[0]
    if action in ("token.issued", "token.exchanged"):
        return {"type": "token", "id": _str_or_none(data.get("jti"), 200)}
    if action == "token.denied":
        return {"type": "client", "id": _str_or_none(data.get("client_id"), 200)}
    nested = data.get(kind)
    candidates: list[Any] = []
    if isinstance(nested, Mapping):
        candidates += [nested.get("id"), nested.get("key"), nested.get(f"{kind}_id")]
    candidates += [data.get(f"{kind}_id"), data.get("key"), data.get("id")]
    if kind == "tenant":
        candidates.append(tenant_id)
    found = next((c for c in candidates if isinstance(c, str | int) and not isinstance(c, bool)), None)
    return {"type": kind, "id": _str_or_none(found, 200)}


def _message(action: str, actor: Mapping[str, Any], target: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    who = actor.get("id") or actor.get("type")
    text = f"{action} of {target['type']} {target['id'] or '-'} by {who}"
    reason = data.get("reason")
    if isinstance(reason, str) and reason:
        text += f": {reason}"
    return json_safe(text)[:1000]


def _metadata(data: Any) -> dict[str, Any]:
    safe = json_safe(data if isinstance(data, Mapping) else {"data": data}, redact=True)
    size = len(json.dumps(safe, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_EVENT_DATA_BYTES:
        digest = hashlib.sha256(json.dumps(safe, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        return {"truncated": True, "size": size, "sha256": digest}
    return safe


def is_event_id(entry_id: str) -> bool:
    """Whether ``entry_id`` lies in the ingested events' id space (any letter case, so no
    direct append can even look like an event's id)."""
    return entry_id[: len(EVENT_ID_PREFIX)].lower() == EVENT_ID_PREFIX


def _event_entry_id(raw: Any) -> str:
    text = json_safe(str(raw))
    if not text.startswith(EVENT_ID_PREFIX):
        text = EVENT_ID_PREFIX + text
    return text[:MAX_ID_LENGTH]


def trails_of(tenant_id: str | None, entry: Mapping[str, Any]) -> list[str | None]:
    """The trails (tenant ids, None for the platform's) an ingested entry is recorded in.

    The one its event names, and for :data:`ALSO_ON_PLATFORM_TRAIL` actions of a tenant
    the platform trail too. Each trail dedupes by id on its own, so a redelivered event
    lands once in each, also when a crash came between the two appends.
    """
    if tenant_id is not None and entry["action"] in ALSO_ON_PLATFORM_TRAIL:
        return [None, tenant_id]
    return [tenant_id]


def entry_from_event(event: Mapping[str, Any], now: str) -> tuple[str | None, dict[str, Any]]:
    """The tenant an event names (None: the platform) and its unsealed entry; :func:`trails_of`
    says which trails record it.

    Never raises on a well-formed envelope with odd contents: an event is never dropped for
    its shape. A tenant id that cannot be a key sends the entry to the platform trail, with
    the original value kept in ``metadata``.
    """
    data = event.get("data") if isinstance(event.get("data"), Mapping) else {}
    metadata = _metadata(data)
    raw_tenant = event.get("tenant_id")
    tenant_id: str | None = raw_tenant if isinstance(raw_tenant, str) and raw_tenant else None
    if tenant_id is not None and not TENANT_ID_RE.match(tenant_id):
        metadata = {"unroutable_tenant_id": json_safe(tenant_id)[:200], "data": metadata}
        tenant_id = None
    action = _str_or_none(event.get("type"), 100) or "unknown"
    actor = _actor(event.get("actor"))
    target = _target(action, tenant_id, data)
    entry = {
        "id": _event_entry_id(event["id"]),
        "tenant_id": tenant_id,
        "occurred_at": normalize_time(event.get("occurred_at")) or now,
        "action": action,
        "actor": actor,
        "target": target,
        "ip": _str_or_none(event.get("ip"), 64),
        "user_agent": _str_or_none(event.get("user_agent"), 512),
        "request_id": _str_or_none(event.get("request_id"), 128),
        "message": _message(action, actor, target, data),
        "metadata": metadata,
        "source": SOURCE_EVENT,
    }
    return tenant_id, entry
