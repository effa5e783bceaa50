"""The monitor's manifest: valid for cf push in every environment, and no secret in it: they are bound."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aerie.cf.manifest import SCHEMA_RELATIVE_PATH, interpolate, load_manifest, load_vars, validate_manifest
from aerie.cf.secrets import app_secret_vars, is_secret_var, secrets_service

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "manifests" / "monitor.yml"


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_monitor_manifest_is_valid_after_interpolation(environment: str) -> None:
    # The tracked vars alone, as make deploy checks it: a secret ((var)) would have no value.
    variables = {
        **load_vars([REPO / "manifests" / "vars" / f"{environment}.yml"]),
        "version": "1.4.0",
        "commit": "0123abcd",
    }
    manifest = interpolate(load_manifest(MANIFEST), variables)
    validate_manifest(manifest, REPO / SCHEMA_RELATIVE_PATH)
    (app,) = manifest["applications"]
    assert (app["name"], app["memory"], app["stack"]) == ("aerie-monitor", "128M", "cflinuxfs4")
    assert app["command"] == "exec python -m aerie.synthetic"
    assert (app["health-check-type"], app["health-check-http-endpoint"]) == ("http", "/health")
    assert app["env"]["AERIE_METRICS_PORT"] == "9102"
    assert app["env"]["AERIE_TENANTS_URL"] == variables["tenants_url"]


def test_monitor_manifest_binds_its_secrets_service_and_names_no_secret() -> None:
    text = MANIFEST.read_text()
    (app,) = load_manifest(MANIFEST)["applications"]
    assert app["services"] == [secrets_service("monitor")]
    named = re.findall(r"\(\(([\w.]+)\)\)", text)
    assert "tenants_url" in named
    assert not [n for n in named if is_secret_var(n)], named
    # What the journeys need of the bootstrap client is in the bound service, not in env.
    assert set(app_secret_vars("monitor")) == {"AERIE_BOOTSTRAP_CLIENT_ID", "AERIE_BOOTSTRAP_CLIENT_SECRET"}
    assert not set(app_secret_vars("monitor")) & set(app["env"])
