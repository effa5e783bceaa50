"""The development OpenID Connect provider of the local stack: people sign in here under ``make run``.

It is the ``oidc-provider-mock`` package (discovery, JWKS, authorization code, RS256 ID
tokens, a sign-in form that takes any subject, and ``PUT /users/{sub}`` to set a person's
claims), run as one more supervised process beside Redis. Aerie trusts it like any other
provider, through ``AERIE_IDENTITY_PROVIDERS`` with the audience :data:`AUDIENCE` (the
client id people sign in with). It is a development tool: ``shared[local]`` brings it, and
nothing of it is staged for Cloud Foundry.

Its issuer is the URL it is asked under, so everything uses ``http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from aerie.local.errors import StackError

__all__ = ["AUDIENCE", "DEFAULT_IDP_PORT", "SAMPLE_ADMIN", "DevIdentityProvider", "trusted_providers_with"]

DEFAULT_IDP_PORT = 9400
#: The OIDC client id people sign in with at the dev provider, and so its ID tokens' ``aud``.
AUDIENCE = "aerie-local"
#: The sample person ``make run`` makes a platform-admin (AERIE_BOOTSTRAP_ADMIN_EMAIL).
SAMPLE_ADMIN = "admin@example.com"


def trusted_providers_with(issuer: str, environ: Mapping[str, str]) -> str:
    """``AERIE_IDENTITY_PROVIDERS`` for the tenants service: the caller's own list, plus the dev provider.

    A list from the environment that is not valid JSON is passed on as it is, so the tenants
    service refuses it with its own one-line configuration error.
    """
    own = environ.get("AERIE_IDENTITY_PROVIDERS", "").strip()
    mine = {"issuer": issuer, "audience": AUDIENCE}
    if not own:
        return json.dumps([mine])
    try:
        listed = json.loads(own)
    except ValueError:
        return own
    if not isinstance(listed, list):
        return own
    return json.dumps([*[p for p in listed if not (isinstance(p, dict) and p.get("issuer") == issuer)], mine])


class DevIdentityProvider:
    """``python -m oidc_provider_mock`` on ``port``, logging to ``log_path``."""

    def __init__(self, port: int, log_path: Path, *, token_max_age_s: int = 3600) -> None:
        self.port = port
        self.log_path = log_path
        self.token_max_age_s = token_max_age_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
        args = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--token-max-age", str(self.token_max_age_s)]
        try:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(
                    f"the dev identity provider exited (status {self.process.returncode}); see {self.log_path}"
                )
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise StackError(f"the dev identity provider did not answer within {timeout:.0f}s; see {self.log_path}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/.well-known/openid-configuration", timeout=1) as resp:  # noqa: S310
                return bool(resp.status == 200 and json.load(resp).get("issuer") == self.url)
        except (OSError, ValueError):
            return False

    def stop(self, timeout: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
