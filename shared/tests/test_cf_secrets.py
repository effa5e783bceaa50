"""The untracked secrets vars file: consistent hashes, safe rotation, never overwritten."""

from __future__ import annotations

import hashlib
import json
import stat

import yaml

from aerie.cf.secrets import add_signing_key, main, secrets_vars, sign_with_newest


def test_service_clients_hash_each_services_secret():
    made = secrets_vars()
    issued = {c["client_id"]: c for c in json.loads(made["service_clients"])}
    for service in ("projects", "flags", "audit"):
        client = issued[made[f"{service}_client_id"]]
        assert client["secret_sha256"] == hashlib.sha256(made[f"{service}_client_secret"].encode()).hexdigest()
        assert "platform:read" in client["scopes"]
    assert len(json.loads(made["signing_keys"])["keys"]) == 1


def test_rotation_publishes_then_signs_then_keeps_only_the_new_key():
    made = secrets_vars()
    old = json.loads(made["signing_keys"])["keys"][0]["kid"]
    added = [k["kid"] for k in json.loads(add_signing_key(made)["signing_keys"])["keys"]]
    assert len(added) == 2 and added[0] == old, "a published key does not sign yet"
    promoted = [k["kid"] for k in json.loads(sign_with_newest(add_signing_key(made))["signing_keys"])["keys"]]
    assert promoted[1] == old and promoted[0] != old


def test_cli_writes_once_privately_then_rotates_and_drops(tmp_path, capsys):
    out = tmp_path / "staging.secrets.yml"
    assert main(["staging", "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    first = yaml.safe_load(out.read_text())
    assert main(["staging", "--out", str(out)]) == 1, "live secrets are never overwritten"
    assert yaml.safe_load(out.read_text()) == first
    assert main(["staging", "--out", str(out), "--add-signing-key"]) == 0
    assert main(["staging", "--out", str(out), "--sign-with-newest"]) == 0
    rotated = yaml.safe_load(out.read_text())
    old_kid = json.loads(first["signing_keys"])["keys"][0]["kid"]
    assert [k["kid"] for k in json.loads(rotated["signing_keys"])["keys"]][1] == old_kid
    assert rotated["bootstrap_client_secret"] == first["bootstrap_client_secret"]
    assert main(["staging", "--out", str(out), "--drop-old-keys"]) == 0
    keys = json.loads(yaml.safe_load(out.read_text())["signing_keys"])["keys"]
    assert keys == json.loads(rotated["signing_keys"])["keys"][:1]
