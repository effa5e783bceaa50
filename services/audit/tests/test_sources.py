"""Where entries come from: ingested and appended entries say so, and their ids never meet."""

from __future__ import annotations

import json
from typing import Any

from audittest import TEN_A, event, ingest, publish

from aerie.testing.http import assert_problem
from aerie.testing.polling import wait_for
from audit.entry import entry_from_event
from audit.ingest import consumer
from audit.trail import Trail
from audit.verify import verify


def entries(redis_provider, tenant_id: str | None) -> list[dict[str, Any]]:
    trail = Trail(redis_provider, tenant_id)
    return [json.loads(raw) for _, raw in trail.ascending(1, trail.state().head_seq)]


def drain(redis_provider) -> None:
    c = consumer(redis_provider, batch=100, reclaim_idle_ms=30_000, block_ms=10)
    for _ in range(20):
        if not c.poll_once():
            return


def forged(entry_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": entry_id,
        "action": "project.created",
        "actor": {"type": "client", "id": "cli_1"},
        "target": {"type": "project", "id": "prj_fake"},
        "message": "nothing to see",
        **extra,
    }


def test_an_event_id_seen_early_cannot_be_taken_by_a_direct_append(api, redis_provider):
    """The probe's attack: the id of an event on its way (as the live stream shows it) is
    appended before audit ingests the event. The event must still land, the append must not."""
    real = event("project.created", TEN_A, {"project": {"id": "prj_real"}})

    as_tenant = api.append(forged(real["id"]))
    body = assert_problem(as_tenant, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["id"]
    # A service's platform client naming the tenant is refused the same; so is a look-alike.
    assert_problem(api.append(forged(real["id"], tenant_id=TEN_A), tenant_id=None), 422, "validation_error")
    assert_problem(api.append(forged("EVT_" + real["id"][4:])), 422, "validation_error")
    own = api.append(forged("app-1"))
    assert own.status_code == 201 and own.json["source"] == "api"

    publish(redis_provider, [real])  # as the projects service does, after the attempts
    drain(redis_provider)
    assert wait_for(lambda: len(entries(redis_provider, TEN_A)) == 2, 5)

    landed = api.get(f"/v1/audit/events/{real['id']}")
    assert landed.status_code == 200
    assert landed.json["action"] == "project.created" and landed.json["target"] == {"type": "project", "id": "prj_real"}
    assert landed.json["source"] == "event" and landed.json["message"] != "nothing to see"
    trail = entries(redis_provider, TEN_A)
    assert [(e["id"], e["source"]) for e in trail] == [("app-1", "api"), (real["id"], "event")]
    assert verify(Trail(redis_provider, TEN_A))["valid"] is True
    assert api.get("/v1/audit/verify").json["valid"] is True


def test_appended_entries_keep_idempotent_replay_and_say_their_source(api):
    body = forged("ext-42", metadata={"n": 1})
    first = api.append(body)
    assert first.status_code == 201 and first.json["source"] == "api"
    again = api.append(body)
    assert again.status_code == 200 and again.json == first.json
    assert_problem(api.append({**body, "message": "something else"}), 409, "conflict")
    # An id that merely contains the prefix is the caller's own.
    assert api.append(forged("my-evt_1")).status_code == 201


def test_every_ingested_entry_id_is_in_the_event_id_space():
    """A publisher that bypasses new_event's ``evt_`` ids still cannot land in the appended
    ids' space: the prefix is put in front."""
    _, minted = entry_from_event(event("flag.created", None, {"key": "k"}), "t")
    assert minted["id"].startswith("evt_") and minted["source"] == "event"
    odd = {**event("flag.created", None, {"key": "k"}), "id": "ext-0001"}
    _, entry = entry_from_event(odd, "t")
    assert entry["id"] == "evt_ext-0001"


def test_a_trail_sealed_before_entries_named_their_source_still_verifies(api, redis_provider):
    """Entries without ``source`` were hashed without it: recomputing from what is stored holds."""
    trail = Trail(redis_provider, TEN_A)
    old = [entry_from_event(event("project.created", TEN_A, {"project": {"id": f"p{i}"}}), "t")[1] for i in range(2)]
    for entry in old:
        del entry["source"]
    trail.append(old, lambda: "2026-01-01T00:00:00.000Z")
    assert "source" not in entries(redis_provider, TEN_A)[0]
    ingest(redis_provider, [event("project.updated", TEN_A, {"project": {"id": "p0"}})])
    assert api.append(forged("app-2")).status_code == 201
    stored = entries(redis_provider, TEN_A)
    assert [e.get("source") for e in stored] == [None, None, "event", "api"]
    assert api.get("/v1/audit/verify").json == {
        "valid": True,
        "entries": 4,
        "head": {"seq": 4, "hash": stored[-1]["hash"]},
        "first_invalid_seq": None,
        "checkpoint": None,
    }
    exported = [json.loads(line) for line in api.get("/v1/audit/export").text.splitlines()]
    assert exported == stored
    rows = api.get("/v1/audit/export", format="csv").text.splitlines()
    assert rows[0].endswith(",hash,source") and rows[-1].endswith(",api") and rows[1].endswith(",")
