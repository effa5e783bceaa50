"""Configuration from the environment, the twelve-factor way.

Cloud Foundry hands an app its bindings in ``VCAP_SERVICES`` and its identity in
``VCAP_APPLICATION``; locally the same variables are set by the stack runner, so one
code path reads both. Every problem is raised as :class:`ConfigError` with one line
that names the variable, so start-up fails with a sentence instead of a traceback.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = [
    "SECRETS_BINDING",
    "ConfigError",
    "RedisSettings",
    "Settings",
    "int_setting",
    "number_setting",
    "redis_url_from_env",
    "secrets_from_bindings",
    "with_bound_secrets",
]


class ConfigError(Exception):
    """A missing or malformed setting; the message is one line naming the variable."""


@dataclass(frozen=True)
class RedisSettings:
    url: str
    connect_timeout: float = 2.0
    read_timeout: float = 2.0
    max_connections: int = 64
    #: A Redis Cluster: redis-py's ``RedisCluster``, ``url`` one seed node, ``seeds`` more.
    cluster: bool = False
    seeds: tuple[tuple[str, int], ...] = ()
    #: Event stream shards (:mod:`aerie.keyspace`); 0 is the single-node layout.
    shards: int = 0
    #: After each acknowledged write, wait (at most ``wait_ms``) until this many replicas
    #: have it (``WAIT``), so a failover does not lose it; 0 waits for none.
    wait_replicas: int = 0
    wait_ms: int = 100

    def redacted_url(self) -> str:
        parts = urlsplit(self.url)
        if parts.password:
            netloc = f"{parts.username or ''}:***@{parts.hostname}:{parts.port}"
            return parts._replace(netloc=netloc).geturl()
        return self.url


@dataclass(frozen=True)
class Settings:
    """What every service needs to start; services extend it through ``extra``."""

    service: str
    version: str
    commit: str
    instance_index: int
    port: int
    redis: RedisSettings
    issuer: str
    audience: str
    jwks_url: str | None
    tenants_url: str | None
    client_id: str | None
    client_secret: str | None
    log_level: str = "INFO"
    extra: Mapping[str, str] = field(default_factory=dict)
    #: ``VCAP_SERVICES`` as parsed (label -> bindings), empty when unset: services find their
    #: own bindings (an identity provider, say) here, as the Redis URL is found above.
    vcap_services: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        env = with_bound_secrets(env)
        app = _json_env(env, "VCAP_APPLICATION") or {}
        index_raw = env.get("CF_INSTANCE_INDEX", app.get("instance_index", 0))
        tenants_url = _optional_url(env, "AERIE_TENANTS_URL")
        issuer = env.get("AERIE_ISSUER") or tenants_url
        if not issuer:
            raise ConfigError("AERIE_ISSUER is not set (nor AERIE_TENANTS_URL to derive it from)")
        jwks_url = _optional_url(env, "AERIE_JWKS_URL")
        if jwks_url is None and tenants_url is not None:
            jwks_url = tenants_url.rstrip("/") + "/.well-known/jwks.json"
        return cls(
            service=service,
            version=env.get("VERSION", "0.0.0+local"),
            commit=env.get("AERIE_COMMIT", "unknown"),
            instance_index=_int(index_raw, "CF_INSTANCE_INDEX", minimum=0),
            port=_int(env.get("PORT", "8080"), "PORT", minimum=1, maximum=65535),
            redis=RedisSettings(
                url=redis_url_from_env(env),
                **_cluster_from_env(env),
                connect_timeout=_float(env.get("AERIE_REDIS_CONNECT_TIMEOUT", "2"), "AERIE_REDIS_CONNECT_TIMEOUT"),
                read_timeout=_float(env.get("AERIE_REDIS_READ_TIMEOUT", "2"), "AERIE_REDIS_READ_TIMEOUT"),
                max_connections=_int(
                    env.get("AERIE_REDIS_MAX_CONNECTIONS", "64"), "AERIE_REDIS_MAX_CONNECTIONS", minimum=1
                ),
            ),
            issuer=issuer.rstrip("/"),
            audience=env.get("AERIE_AUDIENCE", "aerie"),
            jwks_url=jwks_url,
            tenants_url=tenants_url.rstrip("/") if tenants_url else None,
            client_id=env.get("AERIE_CLIENT_ID") or None,
            client_secret=env.get("AERIE_CLIENT_SECRET") or None,
            log_level=_log_level(env.get("AERIE_LOG_LEVEL") or "INFO"),
            extra={k: v for k, v in env.items() if k.startswith("AERIE_")},
            vcap_services=_json_env(env, "VCAP_SERVICES") or {},
        )

    def require(self, name: str) -> str:
        """An ``AERIE_*`` variable this service cannot run without."""
        value = self.extra.get(name)
        if not value:
            raise ConfigError(f"{name} is not set")
        return value


#: A user-provided service with this tag, or a name starting so, holds ``AERIE_*`` settings
#: (``cf cups aerie-secrets-tenants -p '{"AERIE_SIGNING_KEYS": ...}' -t aerie-secrets``).
SECRETS_BINDING = "aerie-secrets"


def secrets_from_bindings(services: Any) -> dict[str, str]:
    """The ``AERIE_*`` settings of every bound secrets service, as environment strings.

    A value that is not a string (the signing keys as a JSON object, say) is passed on as its
    JSON. A key that is no ``AERIE_*`` setting is refused: it would be ignored, silently.
    """
    found: dict[str, str] = {}
    if not isinstance(services, dict):
        return found
    for bindings in services.values():
        for binding in bindings if isinstance(bindings, list) else ():
            if not isinstance(binding, dict):
                continue
            name = str(binding.get("name") or binding.get("instance_name") or "")
            if SECRETS_BINDING not in (binding.get("tags") or []) and not name.startswith(SECRETS_BINDING):
                continue
            creds = binding.get("credentials")
            if not isinstance(creds, dict):
                raise ConfigError(f"VCAP_SERVICES binding {name!r} has no credentials object")
            for key, value in creds.items():
                if not (isinstance(key, str) and key.startswith("AERIE_")):
                    raise ConfigError(
                        f"VCAP_SERVICES binding {name!r} holds {key!r}: only AERIE_* settings belong there"
                    )
                found[key] = value if isinstance(value, str) else json.dumps(value)
    return found


def with_bound_secrets(env: Mapping[str, str]) -> Mapping[str, str]:
    """``env`` with the settings of its bound secrets services (:func:`secrets_from_bindings`).

    Secrets bound as a user-provided service (which ``cf env`` does not print in the app's
    environment) fill what the environment leaves unset; the environment wins.
    """
    bound = secrets_from_bindings(_json_env(env, "VCAP_SERVICES") or {})
    return {**bound, **env} if bound else env


def redis_url_from_env(env: Mapping[str, str]) -> str:
    """The Redis URL from a ``VCAP_SERVICES`` binding, else ``REDIS_URL``.

    The binding is the one named by ``AERIE_REDIS_SERVICE`` or else the first tagged
    ``redis``. The p-redis (``host``/``port``/``password``), p.redis (adds ``tls_port``)
    and user-provided (``uri``/``url``) credential shapes are all accepted.
    """
    services = _json_env(env, "VCAP_SERVICES")
    if services:
        wanted = env.get("AERIE_REDIS_SERVICE")
        binding = _find_binding(services, wanted)
        if binding is None:
            what = f"named {wanted!r}" if wanted else "tagged 'redis'"
            if wanted or "REDIS_URL" not in env:
                raise ConfigError(f"VCAP_SERVICES has no Redis binding {what}")
        else:
            return _url_from_credentials(binding)
    url = env.get("REDIS_URL")
    if not url:
        raise ConfigError("REDIS_URL is not set and VCAP_SERVICES has no Redis binding")
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    return url


def _cluster_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """``cluster``, ``seeds`` and ``shards`` of :class:`RedisSettings`.

    A cluster is ``AERIE_REDIS_CLUSTER=true``, or a binding tagged ``cluster`` or whose
    credentials say ``cluster_mode``/``cluster_enabled``. ``AERIE_REDIS_SEEDS`` lists more
    seed nodes (``host:port,…``) than the URL's one. ``AERIE_REDIS_SHARDS`` (default 16 on
    a cluster, else 0) must be the same for every service of a deployment.
    ``AERIE_REDIS_WAIT_REPLICAS`` (default 1 on a cluster, else 0) and ``AERIE_REDIS_WAIT_MS``
    (default 100): see :meth:`aerie.redis.RedisProvider.replicated`.
    """
    flag = env.get("AERIE_REDIS_CLUSTER", "").strip().lower()
    if flag not in ("", "true", "false", "1", "0", "yes", "no"):
        raise ConfigError("AERIE_REDIS_CLUSTER must be true or false")
    cluster = flag in ("true", "1", "yes")
    services = _json_env(env, "VCAP_SERVICES")
    if not flag and services:
        binding = _find_binding(services, env.get("AERIE_REDIS_SERVICE"))
        if binding is not None:
            creds = binding.get("credentials") or {}
            marked = isinstance(creds, dict) and any(
                str(creds.get(k, "")).lower() in ("true", "1", "yes") for k in ("cluster_mode", "cluster_enabled")
            )
            cluster = marked or "cluster" in (binding.get("tags") or [])
    seeds: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in env.get("AERIE_REDIS_SEEDS", "").split(","))):
        host, _, port = item.rpartition(":")
        if not host:
            raise ConfigError(f"AERIE_REDIS_SEEDS: {item!r} is not host:port")
        seeds.append((host, _int(port, "AERIE_REDIS_SEEDS port", minimum=1, maximum=65535)))
    shards = _int(env.get("AERIE_REDIS_SHARDS", "16" if cluster else "0"), "AERIE_REDIS_SHARDS", minimum=0, maximum=256)
    if cluster and shards == 0:
        raise ConfigError("AERIE_REDIS_SHARDS must be at least 1 on a Redis Cluster")
    replicas = _int(
        env.get("AERIE_REDIS_WAIT_REPLICAS", "1" if cluster else "0"),
        "AERIE_REDIS_WAIT_REPLICAS",
        minimum=0,
        maximum=16,
    )
    wait_ms = _int(env.get("AERIE_REDIS_WAIT_MS", "100"), "AERIE_REDIS_WAIT_MS", minimum=1, maximum=10_000)
    return {"cluster": cluster, "seeds": tuple(seeds), "shards": shards, "wait_replicas": replicas, "wait_ms": wait_ms}


def _find_binding(services: Any, wanted: str | None) -> Mapping[str, Any] | None:
    if not isinstance(services, dict):
        raise ConfigError("VCAP_SERVICES must be a JSON object of service labels")
    for label, bindings in services.items():
        if not isinstance(bindings, list):
            raise ConfigError(f"VCAP_SERVICES[{label!r}] must be a list of bindings")
        for binding in bindings:
            if not isinstance(binding, dict):
                continue
            names = {binding.get("name"), binding.get("binding_name"), binding.get("instance_name")}
            tags = binding.get("tags") or []
            if wanted:
                if wanted in names:
                    return binding
            elif "redis" in tags or "redis" in str(label).lower():
                return binding
    return None


def _url_from_credentials(binding: Mapping[str, Any]) -> str:
    name = binding.get("name", "?")
    creds = binding.get("credentials")
    if not isinstance(creds, dict):
        raise ConfigError(f"VCAP_SERVICES binding {name!r} has no credentials object")
    for key in ("uri", "url"):
        if creds.get(key):
            url = str(creds[key])
            if "://" not in url:  # some brokers hand out host:port without a scheme
                url = "redis://" + url
            return url
    host = creds.get("host") or creds.get("hostname")
    if not host:
        raise ConfigError(f"VCAP_SERVICES binding {name!r} has neither uri nor host in its credentials")
    password = creds.get("password")
    auth = f":{quote(str(password), safe='')}@" if password else ""
    if creds.get("tls_port"):
        port = _int(creds["tls_port"], f"VCAP_SERVICES binding {name!r} tls_port", minimum=1, maximum=65535)
        return f"rediss://{auth}{host}:{port}/0"
    port = _int(creds.get("port", 6379), f"VCAP_SERVICES binding {name!r} port", minimum=1, maximum=65535)
    return f"redis://{auth}{host}:{port}/0"


def _json_env(env: Mapping[str, str], name: str) -> Any:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} is not valid JSON ({exc.msg} at position {exc.pos})") from None


def _optional_url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if not value:
        return None
    if urlsplit(value).scheme not in ("http", "https"):
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value


def int_setting(extra: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    """A service's own integer setting from ``Settings.extra``: ``default`` when unset (or set
    empty, as a manifest's blank variable is), else checked."""
    raw = extra.get(name)
    return default if raw is None or raw == "" else _int(raw, name, minimum, maximum)


def number_setting(extra: Mapping[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    """As :func:`int_setting`, for a number that may have a fraction."""
    raw = extra.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {raw}")
    return value


def _int(raw: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(raw: Any, name: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level == "WARN":
        return "WARNING"
    if level not in LOG_LEVELS:
        raise ConfigError(f"AERIE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level
