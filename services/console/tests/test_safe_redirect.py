"""``next`` after sign-in: only a path on the console, against known open-redirect payloads."""

from __future__ import annotations

import pytest
from console.redirects import HOME, safe_next

#: From the usual open-redirect lists (PayloadsAllTheThings, OWASP): each must land at home.
PAYLOADS = [
    "https://evil.example",
    "http://evil.example/path",
    "//evil.example",
    "///evil.example",
    "////evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\/evil.example",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "/%5Cevil.example",
    "/%255C%255Cevil.example",
    "/%252F%252Fevil.example",
    "%252F%252F%252Fevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/%09/evil.example",
    "/%0d%0a/evil.example",
    "/%00/evil.example",
    " //evil.example",
    "\x00//evil.example",
    "evil.example",
    "@evil.example",
    "/ /evil.example",
    "https:evil.example",
    "http:/\\/\\evil.example",
    "//evil.example@console.test",
    "/" + "a" * 3000,
    "",
    None,
]

ALLOWED = [
    "/",
    "/flags",
    "/flags/new-dashboard?tenant_id=ten_A&user_id=u-1",
    "/audit?verify=1#top",
    "/a%20b",
    "/flags/x%2Fy",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_an_open_redirect_payload_lands_at_home(payload):
    assert safe_next(payload) == HOME


@pytest.mark.parametrize("path", ALLOWED)
def test_a_path_on_the_console_is_kept_as_it_is(path):
    assert safe_next(path) == path
