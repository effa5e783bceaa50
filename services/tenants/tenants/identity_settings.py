"""Which OpenID Connect providers the tenants service trusts, read from its settings.

Two sources, one list: ``AERIE_IDENTITY_PROVIDERS`` (a JSON list, for the local stack and
any deployment) and Cloud Foundry user-provided services tagged ``aerie-identity-provider``
or named ``aerie-idp...`` (``cf cups aerie-idp-uaa -p '{"issuer": ..., "audience": ...}'``),
so an operator can add a provider without editing the manifest. Nothing here touches the
network: keys are found on first use (:mod:`tenants.oidc_discovery`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aerie.config import ConfigError

__all__ = ["BINDING_NAME_PREFIX", "BINDING_TAG", "ENV_NAME", "TrustedProvider", "is_local_url", "trusted_providers"]

ENV_NAME = "AERIE_IDENTITY_PROVIDERS"
BINDING_TAG = "aerie-identity-provider"
BINDING_NAME_PREFIX = "aerie-idp"
#: Hosts where plain http is allowed: a provider on this machine (the development provider).
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_KNOWN_KEYS = frozenset({"issuer", "audience", "jwks_uri", "email_claim", "locale_claim"})
_CLAIM_NAME_RE = re.compile(r"[A-Za-z0-9_:./-]{1,64}")
#: An issuer is compared with a token's ``iss`` character for character; far beyond any real one.
MAX_ISSUER_CHARS = 512


@dataclass(frozen=True)
class TrustedProvider:
    """One provider as configured: whose tokens (``issuer``) are accepted for whom (``audience``)."""

    issuer: str
    #: The client id Aerie's apps are registered under at the provider: a token's ``aud``.
    audience: str
    #: Where the keys are, when the provider's discovery document must not be asked.
    jwks_uri: str | None = None
    email_claim: str = "email"
    locale_claim: str = "locale"


def is_local_url(url: str) -> bool:
    """Whether ``url`` names this machine, the one place plain http is good enough."""
    return (urlsplit(url).hostname or "") in LOCAL_HOSTS


def trusted_providers(extra: Mapping[str, str], vcap_services: Mapping[str, Any]) -> tuple[TrustedProvider, ...]:
    """Every trusted provider, from ``AERIE_IDENTITY_PROVIDERS`` then the bound services.

    An issuer may appear once across both: two entries for one issuer with different
    audiences would make which one a token is checked against depend on order.
    """
    providers: list[TrustedProvider] = []
    for where, entry, strict in [*_env_entries(extra), *_binding_entries(vcap_services)]:
        provider = _provider(entry, where, strict=strict)
        if any(p.issuer == provider.issuer for p in providers):
            raise ConfigError(f"{where}: issuer {provider.issuer!r} is already trusted; list each issuer once")
        providers.append(provider)
    return tuple(providers)


def _env_entries(extra: Mapping[str, str]) -> list[tuple[str, Any, bool]]:
    raw = extra.get(ENV_NAME)
    if raw is None or not raw.strip():
        return []
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{ENV_NAME} is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(entries, list):
        raise ConfigError(f'{ENV_NAME} must be a JSON list of {{"issuer", "audience"}} objects')
    return [(f"{ENV_NAME}[{i}]", entry, True) for i, entry in enumerate(entries)]


def _binding_entries(vcap_services: Mapping[str, Any]) -> list[tuple[str, Any, bool]]:
    """The credentials of each binding that is an identity provider.

    Their unknown keys are ignored (strict=False): a broker's credentials may carry more
    than Aerie reads, where ``AERIE_IDENTITY_PROVIDERS`` is written for Aerie alone.
    """
    if not isinstance(vcap_services, Mapping):
        raise ConfigError("VCAP_SERVICES must be a JSON object of service labels")
    found: list[tuple[str, Any, bool]] = []
    for label, bindings in vcap_services.items():
        if not isinstance(bindings, list):
            raise ConfigError(f"VCAP_SERVICES[{label!r}] must be a list of bindings")
        for i, binding in enumerate(bindings):
            if not isinstance(binding, dict):
                continue
            name = binding.get("name")
            tags = binding.get("tags")
            tagged = isinstance(tags, list) and BINDING_TAG in tags
            if tagged or (isinstance(name, str) and name.startswith(BINDING_NAME_PREFIX)):
                found.append((f"VCAP_SERVICES[{label!r}][{i}] ({name!r})", binding.get("credentials"), False))
    return found


def _provider(entry: Any, where: str, *, strict: bool) -> TrustedProvider:
    if not isinstance(entry, dict):
        raise ConfigError(f'{where} must be an object with "issuer" and "audience"')
    unknown = set(entry) - _KNOWN_KEYS
    if strict and unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    issuer = _url(entry.get("issuer"), where, "issuer")
    if issuer is None:
        raise ConfigError(f"{where} needs an issuer (the provider's https URL)")
    parts = urlsplit(issuer)
    if parts.query or parts.fragment:
        raise ConfigError(f"{where} issuer must not have a query or fragment (OpenID Connect Discovery 1.0)")
    audience = entry.get("audience")
    if not isinstance(audience, str) or not audience.strip() or len(audience) > 256:
        raise ConfigError(f"{where} audience must be a non-empty string (Aerie's client id at the provider)")
    return TrustedProvider(
        issuer=issuer,
        audience=audience,
        jwks_uri=_url(entry.get("jwks_uri"), where, "jwks_uri"),
        email_claim=_claim_name(entry.get("email_claim", "email"), where, "email_claim"),
        locale_claim=_claim_name(entry.get("locale_claim", "locale"), where, "locale_claim"),
    )


def _url(value: Any, where: str, key: str) -> str | None:
    """An https URL, or http on this machine; None when not given."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ISSUER_CHARS:
        raise ConfigError(f"{where} {key} must be a URL of at most {MAX_ISSUER_CHARS} characters")
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        raise ConfigError(f"{where} {key} is not a URL: {value!r}") from None
    if not hostname:
        raise ConfigError(f"{where} {key} is not a URL with a host: {value!r}")
    if parts.scheme == "https" or (parts.scheme == "http" and hostname in LOCAL_HOSTS):
        return value
    raise ConfigError(f"{where} {key} must be https (http only for 127.0.0.1 or localhost): {value!r}")


def _claim_name(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not _CLAIM_NAME_RE.fullmatch(value):
        raise ConfigError(f"{where} {key} must be a claim name (letters, digits, _:./-, at most 64)")
    return value
