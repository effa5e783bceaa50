"""The environment of each service under the local stack, and ``.aerie/local.env`` for everyone else.

A service gets what Cloud Foundry would give it (``PORT``, ``VCAP_APPLICATION``, a
``p.redis`` binding in ``VCAP_SERVICES``) plus what its manifest sets, so what works here
works after ``cf push``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aerie.local.discovery import HOST, env_key
from aerie.suite.secrets import SuiteSecrets, write_private_file

__all__ = ["cloud_foundry_env", "inherited_env", "local_env", "write_env_file"]

#: Variables of the caller's shell a service must not inherit: the stack sets them, or they
#: would point a service at another Redis or issuer than the stack's own.
_NOT_INHERITED_PREFIXES = ("VCAP_", "CF_")
_NOT_INHERITED = {
    "PORT",
    "REDIS_URL",
    "VERSION",
    "AERIE_COMMIT",
    "AERIE_REDIS_SERVICE",
    "AERIE_ISSUER",
    "AERIE_SIGNING_KEYS",
    "AERIE_BOOTSTRAP_CLIENT_ID",
    "AERIE_BOOTSTRAP_CLIENT_SECRET",
    "AERIE_SERVICE_CLIENTS",
    "AERIE_CLIENT_ID",
    "AERIE_CLIENT_SECRET",
}


def local_env(urls: Mapping[str, str], secrets: SuiteSecrets, redis_url: str) -> dict[str, str]:
    """What ``.aerie/local.env`` holds: where everything runs and the bootstrap credentials."""
    env = {f"AERIE_{env_key(name)}_URL": url for name, url in urls.items()}
    env["AERIE_BOOTSTRAP_CLIENT_ID"] = secrets.bootstrap_client_id
    env["AERIE_BOOTSTRAP_CLIENT_SECRET"] = secrets.bootstrap_client_secret
    env["REDIS_URL"] = redis_url
    return env


def cloud_foundry_env(
    name: str,
    *,
    port: int,
    urls: Mapping[str, str],
    redis_port: int,
    secrets: SuiteSecrets,
    version: str,
    commit: str,
    redis_cluster_ports: Sequence[int] = (),
) -> dict[str, str]:
    """The variables Cloud Foundry would set for ``name``, plus the Aerie ones its manifest sets.

    With ``redis_cluster_ports`` the binding is a cluster's (tagged ``cluster``), seeded with
    every node, as a cluster plan's binding would be.
    """
    tenants_url = urls["tenants"]
    s = secrets
    env = {
        "PORT": str(port),
        "CF_INSTANCE_INDEX": "0",
        "CF_INSTANCE_GUID": f"local-{name}-0",
        "MEMORY_LIMIT": "128M",
        "VCAP_APPLICATION": json.dumps(
            {
                "application_name": name,
                "name": name,
                "instance_index": 0,
                "application_uris": [f"{HOST}:{port}"],
                "uris": [f"{HOST}:{port}"],
                "limits": {"mem": 128},
                "space_name": "local",
                "organization_name": "aerie",
            }
        ),
        "VCAP_SERVICES": json.dumps(
            {
                "p.redis": [
                    {
                        "name": "aerie-redis",
                        "instance_name": "aerie-redis",
                        "binding_name": None,
                        "label": "p.redis",
                        "tags": ["redis", "cluster"] if redis_cluster_ports else ["redis"],
                        "plan": "local-cluster" if redis_cluster_ports else "local",
                        "credentials": {"host": HOST, "port": redis_port, "password": s.redis_password},
                    }
                ],
            }
        ),
        "AERIE_TENANTS_URL": tenants_url,
        "AERIE_ISSUER": tenants_url,
        **{f"AERIE_{env_key(other)}_URL": url for other, url in urls.items()},
        "VERSION": version,
        "AERIE_COMMIT": commit,
    }
    if redis_cluster_ports:
        env["AERIE_REDIS_SEEDS"] = ",".join(f"{HOST}:{port}" for port in redis_cluster_ports)
    if name == "tenants":
        env["AERIE_SIGNING_KEYS"] = s.signing_keys_json()
        env["AERIE_BOOTSTRAP_CLIENT_ID"] = s.bootstrap_client_id
        env["AERIE_BOOTSTRAP_CLIENT_SECRET"] = s.bootstrap_client_secret
        env["AERIE_SERVICE_CLIENTS"] = s.service_clients_json()
    else:
        client = s.service_clients[name]
        env["AERIE_CLIENT_ID"] = client.client_id
        env["AERIE_CLIENT_SECRET"] = client.secret
    return env


def inherited_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a service keeps of the caller's shell, with this venv's ``bin`` first on ``PATH``."""
    inherited = {
        k: v
        for k, v in (os.environ if environ is None else environ).items()
        if k not in _NOT_INHERITED
        and not k.startswith(_NOT_INHERITED_PREFIXES)
        and not (k.startswith("AERIE_") and (k.endswith("_URL") or k.endswith("_PORT")))
    }
    bin_dir = str(Path(sys.executable).parent)
    inherited["PATH"] = os.pathsep.join([bin_dir, inherited.get("PATH", os.defpath)])
    inherited["PYTHONUNBUFFERED"] = "1"
    return inherited


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """Write ``env`` as ``KEY=value`` lines, mode 0600: it holds the bootstrap secret."""
    write_private_file(path, "".join(f"{k}={v}\n" for k, v in env.items()))
    return path
