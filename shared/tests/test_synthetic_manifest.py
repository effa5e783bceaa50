"""The monitor's manifest: valid for cf push in every environment, and secrets only as variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aerie.cf.manifest import SCHEMA_RELATIVE_PATH, interpolate, load_manifest, load_vars, validate_manifest
from aerie.cf.secrets import is_secret_var, secrets_vars

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "manifests" / "monitor.yml"


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_monitor_manifest_is_valid_after_interpolation(environment: str) -> None:
    variables = {
        **load_vars([REPO / "manifests" / "vars" / f"{environment}.yml"]),
        **secrets_vars(),
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
    assert app["env"]["AERIE_BOOTSTRAP_CLIENT_SECRET"] == variables["bootstrap_client_secret"]


def test_monitor_manifest_reads_secrets_only_from_secret_variables() -> None:
    (app,) = load_manifest(MANIFEST)["applications"]
    secret_env = {k: v for k, v in app["env"].items() if "SECRET" in k}
    assert secret_env
    for value in secret_env.values():
        match = re.fullmatch(r"\(\(([\w.]+)\)\)", value)
        assert match and is_secret_var(match.group(1)), value
