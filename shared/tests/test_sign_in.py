"""Signing a person in at the real development provider (oidc-provider-mock, as the stack runs it).

The ID token is checked here the way a relying party would: signature with the provider's
published JWKS, then ``iss``, ``aud`` and the person's claims.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from aerie.local.dev_idp import DevIdentityProvider
from aerie.local.redis_server import free_port
from aerie.local.sign_in import SignInError, dev_idp_url, main, sign_in


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    provider = DevIdentityProvider(free_port(), tmp_path_factory.mktemp("idp") / "dev-idp.log")
    provider.start()
    try:
        yield provider.url
    finally:
        provider.stop()
    assert provider.process is None


def verified(idp: str, id_token: str) -> dict[str, object]:
    """The ID token's claims once its signature checks out against the provider's JWKS."""
    meta = requests.get(f"{idp}/.well-known/openid-configuration", timeout=5).json()
    keys = jwt.PyJWKSet.from_dict(requests.get(meta["jwks_uri"], timeout=5).json()).keys
    assert len(keys) == 1  # the token names no kid: the provider's one key signs it
    return jwt.decode(id_token, keys[0], algorithms=["RS256"], audience="aerie-local", issuer=idp)


@pytest.mark.timeout(60)
def test_the_id_token_is_the_providers_signed_word_for_the_person(idp: str) -> None:
    claims = verified(idp, sign_in(idp, "alice@example.com"))
    assert claims["iss"] == idp and claims["aud"] in ("aerie-local", ["aerie-local"])
    assert claims["sub"] == "alice@example.com"
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
    assert "locale" not in claims


@pytest.mark.timeout(60)
def test_extra_claims_and_another_subject_reach_the_token(idp: str) -> None:
    token = sign_in(idp, "bob@example.com", claims={"locale": "de", "email_verified": False}, subject="bob-1")
    claims = verified(idp, token)
    assert claims["sub"] == "bob-1" and claims["locale"] == "de" and claims["email_verified"] is False


@pytest.mark.timeout(60)
def test_the_flow_is_authorization_code_with_pkce_s256_and_state(idp: str) -> None:
    """What the helper sends: S256 of its verifier, the state it checks, the code it was handed.

    oidc-provider-mock 0.3 accepts PKCE parameters without enforcing them, so the pairing of
    challenge and verifier is checked here, on the wire, rather than by the provider.
    """
    sent: list[requests.PreparedRequest] = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *_a, **_k: sent.append(r.request))
    sign_in(idp, "carol@example.com", session=session)
    authorize = next(r for r in sent if r.method == "POST" and "/authorize" in str(r.url))
    query = {k: v[0] for k, v in parse_qs(urlsplit(str(authorize.url)).query).items()}
    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
    assert query["state"] and query["nonce"] and "openid" in query["scope"].split()
    assert parse_qs(str(authorize.body)) == {"sub": ["carol@example.com"]}
    token = next(r for r in sent if "/token" in str(r.url))
    form = {k: v[0] for k, v in parse_qs(str(token.body)).items()}
    assert form["grant_type"] == "authorization_code" and form["redirect_uri"] == query["redirect_uri"]
    digest = hashlib.sha256(form["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"]
    assert 43 <= len(form["code_verifier"]) <= 128  # RFC 7636 4.1


def test_an_unreachable_provider_is_a_clear_error() -> None:
    with pytest.raises(requests.ConnectionError):
        sign_in(f"http://127.0.0.1:{free_port()}", "alice@example.com")


@pytest.mark.timeout(60)
def test_a_redirect_carrying_another_state_is_not_taken(idp: str) -> None:
    """A code handed to some other sign-in (a forged or replayed redirect) is never redeemed."""

    def swap_state(response: requests.Response, *_a: object, **_k: object) -> None:
        location = response.headers.get("Location", "")
        if "state=" in location:
            response.headers["Location"] = location.replace("state=", "state=forged")

    session = requests.Session()
    session.hooks["response"].append(swap_state)
    with pytest.raises(SignInError, match="another state"):
        sign_in(idp, "alice@example.com", session=session)


def test_the_provider_is_found_in_the_environment_else_in_local_env(tmp_path: Path) -> None:
    env_file = tmp_path / "local.env"
    assert dev_idp_url({}, env_file) is None
    env_file.write_text("AERIE_TENANTS_URL=http://127.0.0.1:1\nAERIE_DEV_IDP_URL=http://127.0.0.1:9400\n")
    assert dev_idp_url({}, env_file) == "http://127.0.0.1:9400"
    assert dev_idp_url({"AERIE_DEV_IDP_URL": "http://127.0.0.1:9"}, env_file) == "http://127.0.0.1:9"


@pytest.mark.timeout(60)
def test_the_command_prints_the_id_token(
    idp: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AERIE_DEV_IDP_URL", idp)
    assert main(["alice@example.com"]) == 0
    assert verified(idp, capsys.readouterr().out.strip())["email"] == "alice@example.com"
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err
