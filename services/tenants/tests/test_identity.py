"""Trusted OpenID Connect providers: what a subject token must be, and how keys are found.

A real HTTP server in a thread plays the provider (discovery document and JWKS), so the
fetching, caching and outage paths are the ones production takes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aerie.auth.tokens import JWKSKeySource
from aerie.config import ConfigError, Settings
from aerie.testing.keys import TestKey
from tenants.config import TenantsConfig
from tenants.identity import (
    MAX_SUBJECT_TOKEN_CHARS,
    Identity,
    IdentityProviders,
    ProvidersUnavailable,
    UntrustedToken,
    bootstrap_admin_email,
)
from tenants.identity_settings import TrustedProvider, trusted_providers
from tenants.oidc_discovery import ProviderKeys

AUDIENCE = "aerie-local"


class FakeProvider:
    """Discovery and JWKS over real HTTP; what it serves can be changed between requests."""

    def __init__(self) -> None:
        self.keys = [TestKey("idp-1")]
        self.hits: Counter[str] = Counter()
        self.reported_issuer: str | None = None  # None: the issuer it is reached at
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.hits[self.path] += 1
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": provider.reported_issuer or provider.issuer,
                        "jwks_uri": provider.issuer + "/jwks",
                    }
                elif self.path == "/jwks":
                    body = {"keys": [k.public_jwk() for k in provider.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        self._running = True

    def stop(self) -> None:
        if self._running:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._running = False

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "person-1",
            "iat": now,
            "exp": now + 300,
            "email": "Ada@Example.com",
            "email_verified": True,
            "locale": "de-CH",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: TestKey | None = None, *, headers: dict[str, Any] | None = None, **overrides: Any) -> str:
        return (key or self.keys[0]).sign(self.claims(**overrides), typ="JWT", **(headers or {}))

    def trusted(self, **options: Any) -> TrustedProvider:
        return TrustedProvider(issuer=self.issuer, audience=AUDIENCE, **options)


@pytest.fixture
def idp() -> Iterator[FakeProvider]:
    provider = FakeProvider()
    yield provider
    provider.stop()


def providers_for(idp: FakeProvider, **key_options: Any) -> IdentityProviders:
    """Providers whose key caches are short-lived, so tests can outlive them."""
    trusted = idp.trusted()
    discovery = {k: key_options.pop(k) for k in ("lifespan", "retry_s") if k in key_options}
    keys = ProviderKeys(trusted, keys=lambda uri: JWKSKeySource(uri, **key_options), **discovery)
    return IdentityProviders([trusted], keys={idp.issuer: keys})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> tuple[str, str]:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return signing_input, f"{signing_input}.{b64(signature)}"


# --- the good token --------------------------------------------------------------------


def test_a_good_token_is_the_person_it_names(idp: FakeProvider) -> None:
    identity = IdentityProviders([idp.trusted()]).verify(idp.token())
    assert identity == Identity(
        issuer=idp.issuer, subject="person-1", email="ada@example.com", email_verified=True, locale="de-CH"
    )


def test_keys_are_fetched_once_and_reused(idp: FakeProvider) -> None:
    providers = IdentityProviders([idp.trusted()])
    for _ in range(3):
        providers.verify(idp.token())
    assert idp.hits == {"/.well-known/openid-configuration": 1, "/jwks": 1}


def test_es256_tokens_verify(idp: FakeProvider) -> None:
    idp.keys = [TestKey("idp-ec", alg="ES256")]
    assert IdentityProviders([idp.trusted()]).verify(idp.token()).subject == "person-1"


def test_an_audience_list_containing_ours_is_accepted(idp: FakeProvider) -> None:
    token = idp.token(aud=["another-app", AUDIENCE], azp="another-app")
    assert IdentityProviders([idp.trusted()]).verify(token).subject == "person-1"


def test_configured_claim_names_are_read(idp: FakeProvider) -> None:
    providers = IdentityProviders([idp.trusted(email_claim="mail", locale_claim="lang")])
    identity = providers.verify(idp.token(email=None, locale=None, mail="bo@example.com", lang="fr_CA"))
    assert (identity.email, identity.locale) == ("bo@example.com", "fr-CA")


def test_a_configured_jwks_uri_skips_discovery(idp: FakeProvider) -> None:
    providers = IdentityProviders([idp.trusted(jwks_uri=idp.issuer + "/jwks")])
    providers.verify(idp.token())
    assert idp.hits == {"/jwks": 1}


# --- refused tokens ----------------------------------------------------------------------


def refused(providers: IdentityProviders, token: str) -> str:
    with pytest.raises(UntrustedToken) as caught:
        providers.verify(token)
    return caught.value.description


def test_an_expired_token_is_refused(idp: FakeProvider) -> None:
    now = int(time.time())
    assert "expired" in refused(IdentityProviders([idp.trusted()]), idp.token(iat=now - 600, exp=now - 31))


def test_expiry_has_30_seconds_leeway(idp: FakeProvider) -> None:
    now = int(time.time())
    IdentityProviders([idp.trusted()]).verify(idp.token(iat=now - 600, exp=now - 20))


def test_a_token_for_another_audience_is_refused(idp: FakeProvider) -> None:
    providers = IdentityProviders([idp.trusted()])
    assert "aud" in refused(providers, idp.token(aud="someone-else"))
    assert "aud" in refused(providers, idp.token(aud=["someone-else", "and-another"]))


def test_a_token_from_an_untrusted_issuer_is_refused(idp: FakeProvider) -> None:
    providers = IdentityProviders([idp.trusted()])
    assert "untrusted issuer" in refused(providers, idp.token(iss="https://evil.example"))
    # Compared exactly: a trailing slash is another issuer.
    assert "untrusted issuer" in refused(providers, idp.token(iss=idp.issuer + "/"))
    assert idp.hits == {}


def test_with_no_provider_configured_every_token_is_refused(idp: FakeProvider) -> None:
    assert "no trusted provider" in refused(IdentityProviders([]), idp.token())


def test_alg_none_is_refused(idp: FakeProvider) -> None:
    _, token = hand_made({"alg": "none", "typ": "JWT", "kid": "idp-1"}, idp.claims())
    assert "RS256 or ES256" in refused(IdentityProviders([idp.trusted()]), token)


def test_hs256_keyed_with_the_public_key_is_refused(idp: FakeProvider) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": "idp-1"}
    signing_input, _ = hand_made(header, idp.claims())
    signature = hmac.new(idp.keys[0].public_pem(), signing_input.encode(), hashlib.sha256).digest()
    _, token = hand_made(header, idp.claims(), signature)
    assert "RS256 or ES256" in refused(IdentityProviders([idp.trusted()]), token)


def test_a_header_alg_other_than_the_keys_is_refused(idp: FakeProvider) -> None:
    # An EC key that claims the RSA key's kid: the published key is RS256.
    impostor = TestKey("idp-1", alg="ES256")
    assert "does not match its key" in refused(IdentityProviders([idp.trusted()]), idp.token(impostor))


def test_a_token_signed_by_another_key_with_a_known_kid_is_refused(idp: FakeProvider) -> None:
    assert "signature" in refused(IdentityProviders([idp.trusted()]), idp.token(TestKey("idp-1")))


@pytest.mark.parametrize("name", ["jku", "jwk", "x5u"])
def test_a_token_naming_its_own_key_is_refused(idp: FakeProvider, name: str) -> None:
    token = idp.token(headers={name: "https://evil.example/keys"})
    assert "own key" in refused(IdentityProviders([idp.trusted()]), token)
    assert "/jwks" not in idp.hits


@pytest.mark.parametrize("claim", ["sub", "iat", "exp", "aud"])
def test_required_claims_are_required(idp: FakeProvider, claim: str) -> None:
    assert refused(IdentityProviders([idp.trusted()]), idp.token(**{claim: None}))


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"sub": 42}, "sub"),
        ({"sub": "x" * 256}, "sub"),
        ({"sub": "two words"}, "sub"),
        ({"email": ["ada@example.com"]}, "email"),
        ({"email": "not an address"}, "email"),
        ({"locale": {"lang": "de"}}, "locale"),
        ({"exp": str(int(time.time()) + 300)}, "exp"),
        ({"azp": 7}, "azp"),
    ],
)
def test_claims_of_the_wrong_type_are_refused(idp: FakeProvider, claims: dict[str, Any], words: str) -> None:
    assert words in refused(IdentityProviders([idp.trusted()]), idp.token(**claims))


def test_an_oversized_token_is_refused_before_it_is_read(idp: FakeProvider) -> None:
    token = idp.token(padding="x" * MAX_SUBJECT_TOKEN_CHARS)
    assert "larger than" in refused(IdentityProviders([idp.trusted()]), token)
    assert idp.hits == {}


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"])
def test_malformed_tokens_are_refused(idp: FakeProvider, token: str) -> None:
    assert refused(IdentityProviders([idp.trusted()]), token)


# --- email_verified and locale -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "verified"),
    [(True, True), ("true", True), (False, False), ("false", False), ("True", False), (1, False), (None, False)],
)
def test_email_verified_is_true_only_when_the_provider_says_so(
    idp: FakeProvider, value: object, verified: bool
) -> None:
    identity = IdentityProviders([idp.trusted()]).verify(idp.token(email_verified=value))
    assert identity.email_verified is verified


def test_without_an_email_nothing_is_verified(idp: FakeProvider) -> None:
    identity = IdentityProviders([idp.trusted()]).verify(idp.token(email=None))
    assert (identity.email, identity.email_verified) == (None, False)


@pytest.mark.parametrize(
    ("value", "locale"), [("de", "de"), ("EN_us", "en-us"), ("pt-BR", "pt-BR"), ("klingon!", None), (None, None)]
)
def test_a_locale_that_is_no_language_tag_is_dropped(idp: FakeProvider, value: str | None, locale: str | None) -> None:
    assert IdentityProviders([idp.trusted()]).verify(idp.token(locale=value)).locale == locale


# --- keys: rotation, outages, discovery --------------------------------------------------


def test_an_unknown_kid_refreshes_the_keys_once_per_cooldown(idp: FakeProvider) -> None:
    providers = providers_for(idp, cooldown=0.3)
    providers.verify(idp.token())
    rotated = TestKey("idp-2")
    idp.keys = [idp.keys[0], rotated]
    time.sleep(0.35)
    assert providers.verify(idp.token(rotated)).subject == "person-1"  # a rotated key: fetched
    assert idp.hits["/jwks"] == 2
    time.sleep(0.35)
    stranger = TestKey("idp-unknown")
    assert "does not publish" in refused(providers, idp.token(stranger))  # refetched once, still unknown
    assert idp.hits["/jwks"] == 3
    for _ in range(3):
        refused(providers, idp.token(stranger))  # within the cooldown: no more fetches
    assert idp.hits["/jwks"] == 3


def test_while_the_provider_is_down_the_keys_known_still_verify(idp: FakeProvider) -> None:
    providers = providers_for(idp, lifespan=0.1, retry_s=0)
    providers.verify(idp.token())
    time.sleep(0.3)  # both the discovery document and the key set have expired
    idp.stop()
    assert providers.verify(idp.token()).subject == "person-1"


def test_a_provider_down_with_nothing_known_is_unavailable(idp: FakeProvider) -> None:
    token = idp.token()
    idp.stop()
    providers = IdentityProviders([idp.trusted()])
    with pytest.raises(ProvidersUnavailable):
        providers.verify(token)


def test_a_failed_discovery_is_not_repeated_at_once(idp: FakeProvider) -> None:
    idp.reported_issuer = "https://elsewhere.example"
    providers = IdentityProviders([idp.trusted()])
    for _ in range(3):
        with pytest.raises(ProvidersUnavailable):
            providers.verify(idp.token())
    assert idp.hits == {"/.well-known/openid-configuration": 1}


def test_a_discovery_document_naming_another_issuer_is_not_used(idp: FakeProvider) -> None:
    idp.reported_issuer = idp.issuer + "/"
    with pytest.raises(ProvidersUnavailable):
        IdentityProviders([idp.trusted()]).verify(idp.token())
    assert "/jwks" not in idp.hits


def test_a_jwks_without_usable_keys_is_unavailable_not_a_crash(idp: FakeProvider) -> None:
    token = idp.token()
    idp.keys = []
    with pytest.raises(ProvidersUnavailable):
        IdentityProviders([idp.trusted()]).verify(token)


# --- configuration -------------------------------------------------------------------------


def parse(value: Any = None, vcap: dict[str, Any] | None = None) -> tuple[TrustedProvider, ...]:
    extra = (
        {} if value is None else {"AERIE_IDENTITY_PROVIDERS": value if isinstance(value, str) else json.dumps(value)}
    )
    return trusted_providers(extra, vcap or {})


def test_providers_are_read_from_the_environment() -> None:
    got = parse([{"issuer": "https://idp.example", "audience": "aerie", "email_claim": "mail"}])
    assert got == (TrustedProvider("https://idp.example", "aerie", email_claim="mail"),)


@pytest.mark.parametrize("value", [None, "", "  ", []])
def test_no_providers_configured_is_no_providers(value: Any) -> None:
    assert parse(value) == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[{", "AERIE_IDENTITY_PROVIDERS is not valid JSON"),
        ({"issuer": "https://a.example"}, "must be a JSON list"),
        (["https://a.example"], "AERIE_IDENTITY_PROVIDERS[0] must be an object"),
        ([{"audience": "aerie"}], "AERIE_IDENTITY_PROVIDERS[0] needs an issuer"),
        ([{"issuer": "http://idp.example", "audience": "a"}], "AERIE_IDENTITY_PROVIDERS[0] issuer must be https"),
        ([{"issuer": "ftp://127.0.0.1", "audience": "a"}], "issuer must be https"),
        ([{"issuer": "https://a.example?x=1", "audience": "a"}], "query or fragment"),
        ([{"issuer": "https://a.example", "audience": ""}], "audience must be a non-empty string"),
        ([{"issuer": "https://a.example", "audience": ["a"]}], "audience must be a non-empty string"),
        ([{"issuer": "https://a.example", "audiance": "a"}], "unknown keys: audiance"),
        (
            [{"issuer": "https://a.example", "audience": "a", "jwks_uri": "http://a.example/k"}],
            "jwks_uri must be https",
        ),
        ([{"issuer": "https://a.example", "audience": "a", "email_claim": ""}], "email_claim must be a claim name"),
        (
            [{"issuer": "https://a.example", "audience": "a"}, {"issuer": "https://a.example", "audience": "b"}],
            "AERIE_IDENTITY_PROVIDERS[1]: issuer 'https://a.example' is already trusted",
        ),
    ],
)
def test_bad_provider_settings_stop_start_up_with_one_line(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(value)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("host", ["127.0.0.1:9999", "localhost:9999", "[::1]:9999"])
def test_plain_http_is_allowed_on_this_machine(host: str) -> None:
    assert parse([{"issuer": f"http://{host}", "audience": "aerie-local"}])[0].issuer == f"http://{host}"


def cups(name: str, credentials: Any, tags: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "label": "user-provided", "tags": tags or [], "credentials": credentials}


def test_providers_are_read_from_tagged_or_named_bindings() -> None:
    vcap = {
        "user-provided": [
            cups("corporate-sso", {"issuer": "https://sso.example", "audience": "aerie"}, ["aerie-identity-provider"]),
            cups("aerie-idp-uaa", {"issuer": "https://uaa.example", "audience": "aerie", "client_secret": "x"}),
            cups("something-else", {"issuer": "https://ignored.example", "audience": "aerie"}),
        ],
        "p.redis": [{"name": "redis", "tags": ["redis"], "credentials": {"host": "h"}}],
    }
    got = parse([{"issuer": "https://env.example", "audience": "aerie"}], vcap)
    assert [p.issuer for p in got] == ["https://env.example", "https://sso.example", "https://uaa.example"]


def test_a_binding_repeating_an_issuer_is_refused() -> None:
    vcap = {"user-provided": [cups("aerie-idp-a", {"issuer": "https://a.example", "audience": "x"})]}
    with pytest.raises(ConfigError, match=r"VCAP_SERVICES\['user-provided'\]\[0\] \('aerie-idp-a'\): issuer"):
        parse([{"issuer": "https://a.example", "audience": "x"}], vcap)


@pytest.mark.parametrize(
    ("credentials", "message"),
    [(None, "must be an object"), ({"issuer": "http://uaa.example", "audience": "a"}, "issuer must be https")],
)
def test_a_bad_binding_is_named(credentials: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=r"VCAP_SERVICES\['user-provided'\]\[0\] \('aerie-idp-x'\)") as caught:
        parse(vcap={"user-provided": [cups("aerie-idp-x", credentials)]})
    assert message in str(caught.value)


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("", None), ("Admin@Example.com", "admin@example.com")])
def test_the_bootstrap_admin_email_is_lowercased(raw: str | None, expected: str | None) -> None:
    extra = {} if raw is None else {"AERIE_BOOTSTRAP_ADMIN_EMAIL": raw}
    assert bootstrap_admin_email(extra) == expected


@pytest.mark.parametrize("raw", ["admin", "admin@", "@example.com", "a b@example.com", "a@b@example.com"])
def test_a_bootstrap_admin_email_that_is_no_address_stops_start_up(raw: str) -> None:
    with pytest.raises(ConfigError, match="AERIE_BOOTSTRAP_ADMIN_EMAIL must be an email address"):
        bootstrap_admin_email({"AERIE_BOOTSTRAP_ADMIN_EMAIL": raw})


def test_the_config_is_built_without_network_io(
    idp: FakeProvider, signing_key: TestKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "AERIE_ISSUER": "http://tenants.test",
        "AERIE_SIGNING_KEYS": json.dumps(signing_key.private_jwks()),
        "AERIE_BOOTSTRAP_CLIENT_ID": "aerie-bootstrap",
        "AERIE_BOOTSTRAP_CLIENT_SECRET": "b" * 43,
        "AERIE_BOOTSTRAP_ADMIN_EMAIL": "Admin@Example.com",
        "AERIE_IDENTITY_PROVIDERS": json.dumps([{"issuer": idp.issuer, "audience": AUDIENCE}]),
        "VCAP_SERVICES": json.dumps(
            {"user-provided": [cups("aerie-idp-uaa", {"issuer": "https://uaa.example", "audience": "aerie"})]}
        ),
    }

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the config touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    config = TenantsConfig.from_settings(Settings.from_env("tenants", env))
    monkeypatch.undo()

    assert config.identity_providers.issuers == (idp.issuer, "https://uaa.example")
    assert config.bootstrap_admin_email == "admin@example.com"
    assert idp.hits == {}
    # The first verify is what fetches.
    assert config.identity_providers.verify(idp.token()).email == "ada@example.com"
