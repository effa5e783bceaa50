"""What the console's tests share: tokens, the faked services and provider, a browser-like client."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from console.api import Api, Download, ServiceProblem
from falcon import testing

TEN_A, TEN_B = "ten_A", "ten_B"
IDP = "http://idp.test"


def token(
    tenant_id: str | None = None, scope: str = "platform:admin", role: str = "platform-admin", **extra: Any
) -> str:
    """An Aerie token as the exchange makes it (the console only reads it; the services verify)."""
    claims = {"sub": "usr_1", "scope": scope, "role": role, "email": "p@example.com", "exp": time.time() + 900}
    if tenant_id:
        claims["tenant_id"] = tenant_id
    return jwt.encode({**claims, **extra}, "not-checked-by-the-console-0123456789abcdef", algorithm="HS256")


class FakeApi(Api):
    """Records every call and answers from ``answers`` (method, service, path) -> body or problem."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, Any, Any]] = []
        #: The If-Match version of each call (None: none sent), in the order of ``calls``.
        self.if_match: list[int | None] = []
        self.answers: dict[tuple[str, str, str], Any] = {}

    def call(self, token: str, method: str, service: str, path: str, **kw: Any) -> Any:
        self.calls.append((method, service, path, kw.get("params"), kw.get("json")))
        self.if_match.append(kw.get("if_match"))
        answer = self.answers.get((method, service, path), {"items": []})
        if isinstance(answer, ServiceProblem):
            raise answer
        return answer

    def stream(self, token: str, service: str, path: str, **kw: Any) -> Download:
        """A download: recorded as a ``STREAM`` call, answered from ``answers`` (bytes, or a problem)."""
        self.calls.append(("STREAM", service, path, kw.get("params"), None))
        self.if_match.append(None)
        answer = self.answers.get(("STREAM", service, path), b"")
        if isinstance(answer, ServiceProblem):
            raise answer
        return Download("application/x-ndjson", 'attachment; filename="audit-x.ndjson"', iter([answer[:5], answer[5:]]))


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> Any:
        return self._body


class FakeHttp:
    """The provider's discovery and token endpoints and tenants' token exchange."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        self.id_claims: dict[str, Any] = {"iss": IDP, "aud": "aerie-local", "sub": "p"}
        self.exchange: FakeResponse = FakeResponse(200, {"access_token": token(), "expires_in": 900})

    def get(self, url: str, **kw: Any) -> FakeResponse:
        assert url == f"{IDP}/.well-known/openid-configuration"
        return FakeResponse(
            200, {"issuer": IDP, "authorization_endpoint": f"{IDP}/authorize", "token_endpoint": f"{IDP}/token"}
        )

    def post(self, url: str, data: dict[str, str], auth: Any = None, **kw: Any) -> FakeResponse:
        self.posts.append((url, data, auth))
        if url == f"{IDP}/token":
            return FakeResponse(
                200,
                {
                    "id_token": jwt.encode(
                        self.id_claims, "provider-key-not-checked-0123456789abcdef", algorithm="HS256"
                    )
                },
            )
        return self.exchange


class Browser:
    """Falcon's test client with a cookie jar, as a browser keeps one between requests."""

    def __init__(self, app: Any) -> None:
        self._client = testing.TestClient(app)
        self.jar: dict[str, str] = {}

    def simulate_request(self, method: str, path: str, **kw: Any) -> testing.Result:
        cookies = {**self.jar, **(kw.pop("cookies", None) or {})}
        result = self._client.simulate_request(method, path, cookies=cookies, **kw)
        for name, cookie in result.cookies.items():
            if cookie.value:
                self.jar[name] = cookie.value
            else:
                self.jar.pop(name, None)
        return result

    def simulate_get(self, path: str, **kw: Any) -> testing.Result:
        return self.simulate_request("GET", path, **kw)

    def simulate_post(self, path: str, **kw: Any) -> testing.Result:
        return self.simulate_request("POST", path, **kw)


def signed_in(client: Browser, fake_http: FakeHttp, access_token: str, next_path: str = "/") -> str:
    """Sign in through the console's own routes (provider faked); the session's CSRF token."""
    fake_http.exchange = FakeResponse(200, {"access_token": access_token, "expires_in": 900})
    start = client.simulate_get("/sign-in", params={"next": next_path})
    assert start.status_code == 303, start.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    fake_http.id_claims["nonce"] = query["nonce"]
    back = client.simulate_get("/auth/callback", params={"code": "c1", "state": query["state"]})
    assert back.status_code == 303, back.text
    page = client.simulate_get("/audit")
    marker = 'name="csrf" value="'
    return page.text.split(marker, 1)[1].split('"', 1)[0]
