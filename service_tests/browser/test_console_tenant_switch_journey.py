"""A person in two tenants, in headless Chromium against a real stack and the development provider.

Invited into Alpha and Beta, they sign in at the provider's own form, are asked which tenant,
pick Alpha and see Alpha's members; they switch to Beta from the header and see Beta's, and
Alpha's are no longer theirs to see. Each step that fails leaves a screenshot and the page's
HTML in the output folder (``AERIE_TEST_OUTPUT``, else ``service_tests/browser/output``).
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from aerie.local.stack import LocalStack
from aerie.testing.browser import chromium, wait_for
from aerie.testing.browser import element_text as _text
from aerie.testing.http import basic_auth

pytestmark = [pytest.mark.console, pytest.mark.tenants]

REPO = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("AERIE_TEST_OUTPUT") or Path(__file__).resolve().parent / "output")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack.isolated(REPO, tmp_path_factory.mktemp("console-tenants-stack"), ready_timeout=120) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = chromium()
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@contextlib.contextmanager
def step(driver: Any, number: int, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        stem = OUTPUT / f"console-tenant-switch-{number:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}"
        driver.save_screenshot(str(stem.with_suffix(".png")))
        stem.with_suffix(".html").write_text(driver.page_source)
        print(f"\nstep {number} ({name}) failed at {driver.current_url}: see {stem}.png")
        raise


def _admin(stack: LocalStack) -> dict[str, str]:
    r = requests.post(
        f"{stack.env()['AERIE_TENANTS_URL']}/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic_auth(stack.secrets.bootstrap_client_id, stack.secrets.bootstrap_client_secret)},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


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


def _at_the_provider(browser: Any, idp: str, email: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.NAME, "sub").send_keys(email)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def _members_shown(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, "main").text


def test_a_person_in_two_tenants_picks_one_then_switches_to_the_other(stack: LocalStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    urls = stack.env()
    console, idp = urls["AERIE_CONSOLE_URL"], urls["AERIE_DEV_IDP_URL"]
    tag = uuid.uuid4().hex[:8]
    person, only_a, only_b = (f"{who}-{tag}@example.com" for who in ("pat", "only-alpha", "only-beta"))
    admin = _admin(stack)
    alpha = _tenant_with(stack, admin, "Alpha", person, only_a)
    beta = _tenant_with(stack, admin, "Beta", person, only_b)
    r = requests.put(f"{idp}/users/{person}", json={"email": person, "email_verified": True}, timeout=10)
    assert r.status_code == 204, r.text

    with step(browser, 1, "sign in and be asked which tenant"):
        browser.get(console)
        browser.delete_all_cookies()
        browser.get(console)
        browser.find_element(By.ID, "sign-in").click()
        wait_for(lambda: browser.current_url.startswith(idp), 15, "the provider's sign-in form")
        _at_the_provider(browser, idp, person)
        wait_for(lambda: browser.current_url == f"{console}/sign-in/tenant", 15, "the tenant picker")
        assert _text(browser, "pick-title") == "Choose a tenant"
        listed = _text(browser, "tenants")
        assert "Alpha" in listed and "Beta" in listed and alpha in listed and beta in listed

    with step(browser, 2, "pick Alpha and see its members"):
        button = browser.find_element(By.ID, f"pick-{alpha}")
        assert button.get_attribute("type") == "submit" and button.text == "Alpha"
        button.click()
        wait_for(lambda: browser.current_url.startswith(f"{console}/tenants/{alpha}/members"), 15, "Alpha's members")
        assert person in _text(browser, "who") and _text(browser, "current-tenant") == alpha
        shown = _members_shown(browser)
        assert only_a in shown and only_b not in shown

    with step(browser, 3, "switch to Beta"):
        browser.find_element(By.ID, "switch-tenant").click()
        # The development provider may answer at once or show its form again: either is a sign-in.
        wait_for(
            lambda: browser.current_url == f"{console}/sign-in/tenant" or browser.current_url.startswith(idp),
            15,
            "the provider or the picker",
        )
        if browser.current_url.startswith(idp):
            _at_the_provider(browser, idp, person)
            wait_for(lambda: browser.current_url == f"{console}/sign-in/tenant", 15, "the tenant picker")
        assert "current" in browser.find_element(By.ID, f"pick-{alpha}-about").text
        browser.find_element(By.ID, f"pick-{beta}").click()
        wait_for(lambda: browser.current_url.startswith(f"{console}/tenants/{beta}/members"), 15, "Beta's members")
        assert _text(browser, "current-tenant") == beta
        shown = _members_shown(browser)
        assert only_b in shown and only_a not in shown

    with step(browser, 4, "Alpha's pages are not Beta's person's"):
        browser.get(f"{console}/tenants/{alpha}/members")
        wait_for(lambda: _text(browser, "problem-title"), 15, "a refusal")
        assert only_a not in _members_shown(browser)
