"""The secrets the services share: signing keys, the bootstrap client, each service's client.

``make run`` keeps one set in ``.aerie/secrets.json`` (:mod:`aerie.local.secrets`) and
``python -m aerie.cf.secrets`` writes one per Cloud Foundry environment; both make them
here, so a local stack and a deployment hold the same kinds of secret with the same strength.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

__all__ = [
    "BOOTSTRAP_CLIENT_ID",
    "CONSOLE_CLIENT_GRANTS",
    "CONSOLE_CLIENT_SCOPES",
    "DEFAULT_CLIENT_SERVICES",
    "SERVICE_CLIENT_SCOPES",
    "ServiceCredentials",
    "SuiteSecrets",
    "generate",
    "new_service_client",
    "new_signing_jwks",
    "write_private_file",
]

BOOTSTRAP_CLIENT_ID = "aerie-bootstrap"
#: What a service needs from the platform: read any tenant, append to the audit trail.
SERVICE_CLIENT_SCOPES: tuple[str, ...] = ("platform:read", "audit:write")
#: The services that call others and so get a client of their own (tenants is the issuer).
DEFAULT_CLIENT_SERVICES: tuple[str, ...] = ("projects", "flags", "audit", "console")
#: The console's client only exchanges a signed-in person's provider token for that person's
#: Aerie token: platform:admin caps what it may pass on (each person's role decides), and
#: without client credentials it can mint no token of its own.
CONSOLE_CLIENT_SCOPES: tuple[str, ...] = ("platform:admin",)
CONSOLE_CLIENT_GRANTS: tuple[str, ...] = ("token-exchange",)
CLIENT_CREDENTIALS_GRANTS: tuple[str, ...] = ("client_credentials",)


@dataclass(frozen=True)
class ServiceCredentials:
    """A service's own platform client; tenants only ever sees the secret's SHA-256."""

    client_id: str
    secret: str
    scopes: tuple[str, ...] = SERVICE_CLIENT_SCOPES
    grants: tuple[str, ...] = CLIENT_CREDENTIALS_GRANTS

    def for_issuer(self) -> dict[str, Any]:
        """The entry of ``AERIE_SERVICE_CLIENTS``: the hash, never the secret (``grants`` when not the default)."""
        entry: dict[str, Any] = {
            "client_id": self.client_id,
            "secret_sha256": hashlib.sha256(self.secret.encode()).hexdigest(),
            "scopes": list(self.scopes),
        }
        if self.grants != CLIENT_CREDENTIALS_GRANTS:
            entry["grants"] = list(self.grants)
        return entry


@dataclass(frozen=True)
class SuiteSecrets:
    signing_keys: Mapping[str, Any]
    bootstrap_client_id: str
    bootstrap_client_secret: str
    redis_password: str
    service_clients: Mapping[str, ServiceCredentials] = field(default_factory=dict)

    def signing_keys_json(self) -> str:
        """``AERIE_SIGNING_KEYS``: the private JWK Set as one line of JSON."""
        return json.dumps(self.signing_keys, separators=(",", ":"))

    def service_clients_json(self) -> str:
        """``AERIE_SERVICE_CLIENTS``: every service client, hashed, in a stable order."""
        return json.dumps([self.service_clients[name].for_issuer() for name in sorted(self.service_clients)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "signing_keys": dict(self.signing_keys),
            "bootstrap_client": {"client_id": self.bootstrap_client_id, "secret": self.bootstrap_client_secret},
            "redis_password": self.redis_password,
            "service_clients": {
                name: {"client_id": c.client_id, "secret": c.secret, "scopes": list(c.scopes), "grants": list(c.grants)}
                for name, c in sorted(self.service_clients.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuiteSecrets:
        try:
            boot = data["bootstrap_client"]
            clients = {
                name: ServiceCredentials(
                    c["client_id"], c["secret"], tuple(c["scopes"]), tuple(c.get("grants") or CLIENT_CREDENTIALS_GRANTS)
                )
                for name, c in data.get("service_clients", {}).items()
            }
            keys = data["signing_keys"]
            if not keys.get("keys"):
                raise ValueError("no signing key")
            return cls(keys, boot["client_id"], boot["secret"], data["redis_password"], clients)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"malformed local secrets ({exc})") from None

    def with_clients_for(self, services: Iterable[str]) -> SuiteSecrets:
        """These secrets plus a client for every named service that has none yet."""
        missing = [s for s in services if s != "tenants" and s not in self.service_clients]
        if not missing:
            return self
        clients = dict(self.service_clients)
        clients.update({name: new_service_client(name) for name in missing})
        return SuiteSecrets(
            self.signing_keys, self.bootstrap_client_id, self.bootstrap_client_secret, self.redis_password, clients
        )


def new_signing_jwks() -> dict[str, Any]:
    """A private JWK Set holding one fresh RSA-2048 key for RS256.

    The kid carries the date so a rotated-in key is easy to tell from the old one in logs.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    # PyJWT adds key_ops ["sign"]; "use" says it already, and RFC 7517 (4.3) advises against
    # both. The issuer never publishes key_ops either way (tenants.signing).
    jwk.pop("key_ops", None)
    kid = f"local-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return {"keys": [jwk]}


def new_service_client(service: str) -> ServiceCredentials:
    if service == "console":
        secret = secrets.token_urlsafe(32)
        return ServiceCredentials("svc-console", secret, CONSOLE_CLIENT_SCOPES, CONSOLE_CLIENT_GRANTS)
    return ServiceCredentials(f"svc-{service}", secrets.token_urlsafe(32))


def generate(services: Iterable[str] = DEFAULT_CLIENT_SERVICES) -> SuiteSecrets:
    """Fresh secrets; every secret has 256 bits of randomness."""
    base = SuiteSecrets(
        signing_keys=new_signing_jwks(),
        bootstrap_client_id=BOOTSTRAP_CLIENT_ID,
        bootstrap_client_secret=secrets.token_urlsafe(32),
        redis_password=secrets.token_urlsafe(32),
    )
    return base.with_clients_for(services)


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, atomically (temporary file + rename).

    The temporary file is created 0600, so the secret is never readable by others, not
    even for the moment between writing and a later ``chmod``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # O_CREAT's mode is masked by the umask; never looser, but be exact
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
