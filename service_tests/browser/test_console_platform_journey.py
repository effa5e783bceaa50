"""The console's tenant lifecycle and audit pages in headless Chromium against a real stack.

The platform admin creates a tenant, suspends and reactivates it, is refused deleting it
with a mistyped slug and deletes it with the right one. A tenant's owner filters their
tenant's audit trail, opens an entry with every field, verifies the chain, and exports the
trail through the console with nothing but the session cookie. Each step that fails leaves
a screenshot and the page's HTML in the output folder (``AERIE_TEST_OUTPUT``, else
``service_tests/browser/output``).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from aerie.local.dev_idp import SAMPLE_ADMIN
from aerie.local.stack import LocalStack
from aerie.testing.browser import Steps, bootstrap_token, register_person, replaced, sign_in, wait_for
from aerie.testing.browser import element_text as _text

pytestmark = [pytest.mark.console, pytest.mark.audit, pytest.mark.tenants]

OUTPUT = Path(__file__).resolve().parent / "output"


def test_a_platform_admin_creates_suspends_reactivates_and_deletes_a_tenant(stack: LocalStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    urls = stack.env()
    console, idp = urls["AERIE_CONSOLE_URL"], urls["AERIE_DEV_IDP_URL"]
    register_person(idp, SAMPLE_ADMIN)
    slug = f"journey-{uuid.uuid4().hex[:8]}"
    steps = Steps(browser, "console-tenant-lifecycle", OUTPUT)

    with steps.step("sign in, open the tenants"):
        sign_in(browser, console, idp, SAMPLE_ADMIN, "/flags")
        browser.find_element(By.LINK_TEXT, "Tenants").click()
        wait_for(lambda: browser.find_elements(By.ID, "create-tenant"), 15, "the tenants page")

    with steps.step("create a tenant"):
        browser.find_element(By.ID, "tenant-name").send_keys("Journey Ltd")
        browser.find_element(By.ID, "tenant-slug").send_keys(slug)
        Select(browser.find_element(By.ID, "tenant-plan")).select_by_value("team")
        browser.find_element(By.ID, "create-tenant").click()
        wait_for(lambda: "Tenant Journey Ltd created." in _text(browser, "notice"), 15, "the tenant created")
        assert _text(browser, "tenant-slug") == slug and _text(browser, "tenant-status") == "active"
        assert _text(browser, "tenant-plan") == "team"
        tenant_id = browser.current_url.split("/tenants/", 1)[1].split("?", 1)[0]

    with steps.step("suspend it, then reactivate it"):
        browser.find_element(By.ID, "suspend-tenant").click()
        wait_for(lambda: "suspended" in _text(browser, "notice"), 15, "the tenant suspended")
        assert _text(browser, "tenant-status") == "suspended" and not browser.find_elements(By.ID, "suspend-tenant")
        browser.get(f"{console}/tenants?status=suspended")
        assert browser.find_elements(By.ID, f"tenant-{slug}"), "the suspended tenant under its status"
        browser.get(f"{console}/tenants/{tenant_id}")
        browser.find_element(By.ID, "reactivate-tenant").click()
        wait_for(lambda: "reactivated" in _text(browser, "notice"), 15, "the tenant reactivated")
        assert _text(browser, "tenant-status") == "active"

    with steps.step("a mistyped slug deletes nothing"):
        browser.find_element(By.ID, "delete-tenant").click()
        wait_for(lambda: browser.find_elements(By.ID, "confirm-slug"), 15, "the confirmation")
        assert slug in _text(browser, "delete-warning")
        browser.find_element(By.ID, "confirm-slug").send_keys(slug[:-1])
        browser.find_element(By.ID, "confirm-delete").click()
        wait_for(lambda: "nothing was deleted" in _text(browser, "form-error"), 15, "the refusal")
        browser.get(f"{console}/tenants/{tenant_id}")
        assert _text(browser, "tenant-status") == "active"

    with steps.step("the slug typed deletes it"):
        browser.find_element(By.ID, "delete-tenant").click()
        wait_for(lambda: browser.find_elements(By.ID, "confirm-slug"), 15, "the confirmation")
        browser.find_element(By.ID, "confirm-slug").send_keys(slug)
        browser.find_element(By.ID, "confirm-delete").click()
        wait_for(lambda: f"Tenant {slug} deleted." in _text(browser, "notice"), 15, "the tenant deleted")
        r = requests.get(
            f"{urls['AERIE_TENANTS_URL']}/v1/tenants/{tenant_id}",
            headers={"Authorization": f"Bearer {bootstrap_token(stack)}"},
            timeout=10,
        )
        assert r.status_code == 404 or r.json().get("status") == "deleted", r.text


def test_an_owner_filters_the_audit_trail_opens_an_entry_verifies_and_exports(stack: LocalStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    urls = stack.env()
    console, idp, tenants_url = urls["AERIE_CONSOLE_URL"], urls["AERIE_DEV_IDP_URL"], urls["AERIE_TENANTS_URL"]
    admin = bootstrap_token(stack)
    r = requests.post(
        f"{tenants_url}/v1/tenants",
        json={"slug": f"trail-{uuid.uuid4().hex[:8]}", "name": "Trail"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    tenant = r.json()
    owner, invited = f"owner@{tenant['slug']}.example", f"dev@{tenant['slug']}.example"
    for email, role in ((owner, "owner"), (invited, "developer")):
        r = requests.post(
            f"{tenants_url}/v1/tenants/{tenant['id']}/members",
            json={"email": email, "role": role},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
    register_person(idp, owner)
    steps = Steps(browser, "console-audit-trail", OUTPUT)

    with steps.step("the owner signs in and filters the trail"):
        sign_in(browser, console, idp, owner, f"/tenants/{tenant['id']}/members")
        browser.find_element(By.LINK_TEXT, "Audit trail").click()
        wait_for(lambda: browser.find_elements(By.ID, "audit-action"), 15, "the audit page")

        def invitations() -> int:
            """Filter afresh (a new page each time) and count the rows once that page is in."""
            field = browser.find_element(By.ID, "audit-action")
            old = browser.find_element(By.TAG_NAME, "html")
            field.clear()
            field.send_keys("member.invited")
            browser.find_element(By.ID, "filter").click()
            wait_for(lambda: replaced(old), 15, "the filtered page")
            rows = browser.find_elements(By.CSS_SELECTOR, "tr.entry")
            return len(rows) if all("member.invited" in r.text for r in rows) else 0

        # audit records events as they come through the durable stream
        wait_for(lambda: invitations() >= 2, 20, "both invitations in the trail")
        assert "action=member.invited" in browser.current_url

    with steps.step("open an entry: every field"):
        browser.find_elements(By.CSS_SELECTOR, "tr.entry a.entry-link")[0].click()
        wait_for(lambda: _text(browser, "entry-action") == "member.invited", 15, "the entry page")
        assert re.fullmatch(r"[0-9a-f]{64}", _text(browser, "entry-hash"))
        assert re.fullmatch(r"[0-9a-f]{64}", _text(browser, "entry-prev-hash"))
        assert _text(browser, "entry-tenant") == tenant["id"] and _text(browser, "entry-request-id")
        assert _text(browser, "entry-occurred").endswith("UTC")
        browser.find_element(By.ID, "back-to-trail").click()

    with steps.step("verify the chain"):
        wait_for(lambda: browser.find_elements(By.ID, "verify"), 15, "the audit page")
        browser.find_element(By.ID, "verify").click()
        result = wait_for(lambda: _text(browser, "verify-result"), 15, "the verification's result")
        assert result.startswith("The chain is intact"), result

    with steps.step("export the filtered trail with the session cookie alone"):
        link = browser.find_element(By.ID, "export-ndjson").get_attribute("href")
        assert "token" not in link.lower()
        cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
        query = {"format": "ndjson", "action": "member.invited"}
        r = requests.get(f"{console}/audit/export", params=query, cookies=cookies, timeout=15)
        assert r.status_code == 200 and r.headers["Content-Disposition"].startswith("attachment"), r.text[:300]
        lines = [json.loads(line) for line in r.text.splitlines() if line]
        assert len(lines) >= 2 and {e["action"] for e in lines} == {"member.invited"}
        assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines), "oldest first, as the chain runs"
        assert requests.get(f"{console}/audit/export", timeout=15, allow_redirects=False).status_code == 303
