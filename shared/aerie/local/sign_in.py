"""Sign a person in at the development provider, the way a browser would, and print their ID token.

    python -m aerie.local.sign_in alice@example.com

It runs the provider's real authorization-code flow with PKCE (S256), state and nonce:
discovery, the authorization endpoint's sign-in form (posted with the person's subject),
the redirect carrying the code (read, not followed: nothing needs to listen on the
redirect URI), and the token endpoint. Before that it sets the person's claims through the
dev provider's own ``PUT /users/{sub}`` (the email, verified), as someone signing up would
have. The provider comes from ``AERIE_DEV_IDP_URL``, else the stack's ``.aerie/local.env``.

The helper sends a real S256 challenge and its verifier, and checks ``state`` and ``nonce``
itself; oidc-provider-mock 0.3 accepts PKCE parameters without enforcing them, so the
pairing is this module's to get right (its tests check it on the wire).

A test, a README snippet or a benchmark uses :func:`sign_in`; an app in production
redirects a real browser instead (the console does).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jwt
import requests

from aerie.local.dev_idp import AUDIENCE
from aerie.suite.layout import RepoNotFound, find_repo_root

__all__ = ["SignInError", "dev_idp_url", "sign_in"]

REDIRECT_URI = "http://127.0.0.1/callback"
TIMEOUT_S = 10


class SignInError(RuntimeError):
    """The provider did not sign the person in; the message says at which step."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_in(
    idp_url: str,
    email: str,
    *,
    client_id: str = AUDIENCE,
    client_secret: str = AUDIENCE,
    redirect_uri: str = REDIRECT_URI,
    claims: Mapping[str, Any] | None = None,
    subject: str | None = None,
    session: requests.Session | None = None,
) -> str:
    """The ID token the provider issues ``email`` (subject ``subject``, default the email)."""
    http = session or requests.Session()
    sub = subject or email
    base = idp_url.rstrip("/")
    meta = _json(http.get(f"{base}/.well-known/openid-configuration", timeout=TIMEOUT_S), "discovery")
    person = {"email": email, "email_verified": True, **(claims or {})}
    r = http.put(f"{base}/users/{quote(sub, safe='')}", json=person, timeout=TIMEOUT_S)
    if r.status_code != 204:
        raise SignInError(f"setting {sub}'s claims: {r.status_code} {r.text[:200]}")

    verifier = secrets.token_urlsafe(48)
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": "openid email profile",
        "state": state,
        "nonce": nonce,
        "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    r = http.post(
        meta["authorization_endpoint"], params=params, data={"sub": sub}, allow_redirects=False, timeout=TIMEOUT_S
    )
    location = r.headers.get("Location", "")
    if r.status_code not in (302, 303) or not location.startswith(redirect_uri):
        raise SignInError(f"the sign-in form answered {r.status_code}, not a redirect to {redirect_uri}")
    answer = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    if answer.get("state") != state:
        raise SignInError("the redirect carried another state: not the sign-in this started")
    if "code" not in answer:
        raise SignInError(f"the provider refused: {answer.get('error', 'no code')}")

    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        # The dev provider takes any secret for any client (and the code verifier on top).
        "client_secret": client_secret,
        "code_verifier": verifier,
    }
    tokens = _json(http.post(meta["token_endpoint"], data=form, timeout=TIMEOUT_S), "the token endpoint")
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str):
        raise SignInError("the token endpoint answered no id_token")
    # Aerie verifies the token itself; here only that it answers this very sign-in.
    if jwt.decode(id_token, options={"verify_signature": False}).get("nonce") != nonce:
        raise SignInError("the ID token carries another nonce: not the sign-in this started")
    return id_token


def _json(resp: requests.Response, what: str) -> dict[str, Any]:
    if resp.status_code != 200:
        raise SignInError(f"{what} answered {resp.status_code}: {resp.text[:200]}")
    body = resp.json()
    if not isinstance(body, dict):
        raise SignInError(f"{what} answered no JSON object")
    return body


def dev_idp_url(environ: Mapping[str, str] | None = None, env_file: Path | None = None) -> str | None:
    """``AERIE_DEV_IDP_URL`` from the environment, else from the local stack's ``.aerie/local.env``."""
    env = os.environ if environ is None else environ
    if env.get("AERIE_DEV_IDP_URL"):
        return env["AERIE_DEV_IDP_URL"]
    path = env_file or _local_env_file()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == "AERIE_DEV_IDP_URL":
            return value.strip()
    return None


def _local_env_file() -> Path:
    """``.aerie/local.env`` of the repository the command runs in (from any folder inside it)."""
    try:
        return find_repo_root() / ".aerie" / "local.env"
    except RepoNotFound:
        return Path(".aerie") / "local.env"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m aerie.local.sign_in EMAIL   (prints the person's ID token)", file=sys.stderr)
        return 2
    url = dev_idp_url()
    if not url:
        print(
            "error: AERIE_DEV_IDP_URL is not set and .aerie/local.env has none: is `make run` running?", file=sys.stderr
        )
        return 2
    try:
        print(sign_in(url, args[0]))
    except (SignInError, requests.RequestException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
