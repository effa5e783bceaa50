"""Retention keeps a checkpoint the remaining chain verifies against; exports stream in constant memory."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from audittest import TEN_A, TEN_B, event

from aerie.config import ConfigError
from aerie.testing.tenants import FakeTenants
from audit.config import AuditConfig
from audit.export import csv_rows, ndjson_lines
from audit.ingest import Ingestor
from audit.query import Filters, chain_order
from audit.retention import Retention
from audit.trail import Trail
from audit.verify import verify

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(redis_provider, tenant_id, n, recorded: datetime):
    Ingestor(redis_provider, clock=lambda: stamp(recorded))(
        [(str(i), event("project.updated", tenant_id, {"project": {"id": f"p{i}"}})) for i in range(n)]
    )


def test_trimming_keeps_a_checkpoint_and_the_rest_still_verifies(redis_provider):
    record(redis_provider, TEN_A, 700, NOW - timedelta(days=40))
    record(redis_provider, TEN_A, 5, NOW - timedelta(days=2))
    record(redis_provider, TEN_B, 3, NOW - timedelta(days=40))
    trail = Trail(redis_provider, TEN_A)
    removed_hash = json.loads(trail.raw([700])[0])["hash"]
    retention = Retention(redis_provider, 30, clock=lambda: NOW)
    assert retention.sweep() == 703
    result = verify(trail)
    assert result["valid"] and result["entries"] == 5
    assert result["checkpoint"] == {"seq": 700, "hash": removed_hash}
    assert result["head"]["seq"] == 705
    assert verify(Trail(redis_provider, TEN_B))["entries"] == 0
    # The chain goes on from the head, and the next trim moves the checkpoint again.
    record(redis_provider, TEN_A, 2, NOW)
    assert [json.loads(r)["seq"] for r in chain_order(trail, Filters())] == [701, 702, 703, 704, 705, 706, 707]
    assert Retention(redis_provider, 1, clock=lambda: NOW).sweep() == 5
    assert verify(trail)["valid"] and verify(trail)["checkpoint"]["seq"] == 705
    # Tampering with what remains is still found.
    r = redis_provider.client
    entry = json.loads(r.hget("audit:{ten_A}:entries", 706))
    entry["message"] = "x"
    r.hset("audit:{ten_A}:entries", 706, json.dumps(entry))
    assert verify(trail)["first_invalid_seq"] == 706


def test_only_one_process_sweeps_at_a_time(redis_provider):
    record(redis_provider, TEN_A, 3, NOW - timedelta(days=40))
    redis_provider.client.set("audit:retention:lock", "someone-else", ex=60)
    assert Retention(redis_provider, 30, clock=lambda: NOW).sweep() == 0
    assert Trail(redis_provider, TEN_A).state().cp_seq == 0


def test_retention_setting_is_checked(settings):
    assert AuditConfig.from_settings(settings, {}).retention_days is None
    assert AuditConfig.from_settings(settings, {"AUDIT_RETENTION_DAYS": "90"}).retention_days == 90
    assert AuditConfig.from_settings(settings, {"AUDIT_RETENTION_DAYS": ""}).retention_days is None
    for bad in ("0", "-3", "ninety", "1.5", "\u00b2", "9" * 5000):
        with pytest.raises(ConfigError, match="AUDIT_RETENTION_DAYS"):
            AuditConfig.from_settings(settings, {"AUDIT_RETENTION_DAYS": bad})


def test_export_of_100k_entries_streams_in_constant_memory(redis_provider):
    """100,000 entries (about 70 MB of NDJSON) exported while holding well under 5 MB."""
    ids = count()
    ingest = Ingestor(redis_provider, clock=lambda: stamp(NOW))
    for _ in range(20):
        batch = [event("project.updated", TEN_A, {"project": {"id": f"p{next(ids)}"}}) for _ in range(5000)]
        ingest([(str(i), e) for i, e in enumerate(batch)])
    trail = Trail(redis_provider, TEN_A)
    assert trail.state().head_seq == 100_000
    for produce in (ndjson_lines, csv_rows):
        tracemalloc.start()
        total = lines = 0
        for chunk in produce(chain_order(trail, Filters())):
            total += len(chunk)
            lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert lines >= 100_000
        assert total > 30_000_000
        assert peak < 5_000_000, f"{produce.__name__} peaked at {peak} bytes"


def test_the_retention_worker_runs_only_when_configured(settings, signing_key):
    from aerie.app import Infrastructure
    from aerie.auth.tokens import StaticKeySource
    from audit.app import build

    for config, expected in ((AuditConfig(block_ms=20), False), (AuditConfig(retention_days=7, block_ms=20), True)):
        infra = Infrastructure.from_settings(settings, keys=StaticKeySource({"keys": [signing_key.public_jwk()]}))
        svc = build(settings, config, infra=infra, tenants=FakeTenants())
        try:
            svc.infra.background.ensure_started()
            assert svc.infra.background.worker("ingest") is not None
            assert (svc.infra.background.worker("retention") is not None) is expected
        finally:
            svc.close()
