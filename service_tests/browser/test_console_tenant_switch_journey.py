"""A person in two tenants, in headless Chromium against a real stack and the development provider.

Invited into Alpha and Beta, they sign in at the provider's own form, are asked which tenant,
pick Alpha and see Alpha's members; they switch to Beta from the header and see Beta's, and
Alpha's are no longer theirs to see. Each step that fails leaves a screenshot and the page's
HTML in the output folder (``AERIE_TEST_OUTPUT``, else ``service_tests/browser/output``).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from aerie.local.stack import LocalStack
from aerie.testing.browser import Steps, bootstrap_token, register_person, start_sign_in, submit_provider_form, wait_for
from aerie.testing.browser import element_text as _text

pytestmark = [pytest.mark.console, pytest.mark.tenants]

OUTPUT = Path(__file__).resolve().parent / "output"


def _tenant_with(stack: LocalStack, admin: dict[str, str], name: str, *emails: str) -> str:
    tenants = stack.env()["AERIE_TENANTS_URL"]
    r = requests.post(
        f"{tenants}/v1/tenants",
        json={"slug": f"{name.lower()}-{uuid.uuid4().hex[:8]}", "name": name, "plan": "team"},
        headers=admin,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    tenant_id = str(r.json()["id"])
    for email in emails:
        r = requests.post(
            f"{tenants}/v1/tenants/{tenant_id}/members",
            json={"email": email, "role": "owner"},
            headers=admin,
            timeout=10,
        )
        assert r.status_code == 201, r.text
    return tenant_id


def _members_shown(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, "main").text


def test_a_person_in_two_tenants_picks_one_then_switches_to_the_other(stack: LocalStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    urls = stack.env()
    console, idp = urls["AERIE_CONSOLE_URL"], urls["AERIE_DEV_IDP_URL"]
    tag = uuid.uuid4().hex[:8]
    person, only_a, only_b = (f"{who}-{tag}@example.com" for who in ("pat", "only-alpha", "only-beta"))
    admin = {"Authorization": f"Bearer {bootstrap_token(stack)}"}
    alpha = _tenant_with(stack, admin, "Alpha", person, only_a)
    beta = _tenant_with(stack, admin, "Beta", person, only_b)
    register_person(idp, person)

    steps = Steps(browser, "console-tenant-switch", OUTPUT)
    with steps.step("sign in and be asked which tenant"):
        start_sign_in(browser, console, idp, person)
        wait_for(lambda: browser.current_url == f"{console}/sign-in/tenant", 15, "the tenant picker")
        assert _text(browser, "pick-title") == "Choose a tenant"
        listed = _text(browser, "tenants")
        assert "Alpha" in listed and "Beta" in listed and alpha in listed and beta in listed

    with steps.step("pick Alpha and see its members"):
        button = browser.find_element(By.ID, f"pick-{alpha}")
        assert button.get_attribute("type") == "submit" and button.text == "Alpha"
        button.click()
        wait_for(lambda: browser.current_url.startswith(f"{console}/tenants/{alpha}/members"), 15, "Alpha's members")
        assert person in _text(browser, "who") and _text(browser, "current-tenant") == alpha
        shown = _members_shown(browser)
        assert only_a in shown and only_b not in shown

    with steps.step("switch to Beta"):
        browser.find_element(By.ID, "switch-tenant").click()
        # The development provider may answer at once or show its form again: either is a sign-in.
        wait_for(
            lambda: browser.current_url == f"{console}/sign-in/tenant" or browser.current_url.startswith(idp),
            15,
            "the provider or the picker",
        )
        if browser.current_url.startswith(idp):
            submit_provider_form(browser, person)
            wait_for(lambda: browser.current_url == f"{console}/sign-in/tenant", 15, "the tenant picker")
        assert "current" in browser.find_element(By.ID, f"pick-{alpha}-about").text
        browser.find_element(By.ID, f"pick-{beta}").click()
        wait_for(lambda: browser.current_url.startswith(f"{console}/tenants/{beta}/members"), 15, "Beta's members")
        assert _text(browser, "current-tenant") == beta
        shown = _members_shown(browser)
        assert only_b in shown and only_a not in shown

    with steps.step("Alpha's pages are not Beta's person's"):
        browser.get(f"{console}/tenants/{alpha}/members")
        wait_for(lambda: _text(browser, "problem-title"), 15, "a refusal")
        assert only_a not in _members_shown(browser)
