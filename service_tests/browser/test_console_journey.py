"""The console in headless Chromium against a real stack: real uWSGI services, Redis and the
development provider's own sign-in form.

The platform admin signs in, creates a flag, rolls it out to 25% and sees the preview, flips
the kill switch, finds both changes in the audit trail with themselves as the actor,
verifies the chain and signs out; with a browser that prefers German, the same console and
the services behind it answer in German. Each step that fails leaves a screenshot and the page's
HTML in the output folder (``AERIE_TEST_OUTPUT``, else ``service_tests/browser/output``).
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from aerie.local.dev_idp import SAMPLE_ADMIN
from aerie.local.stack import LocalStack
from aerie.testing.browser import Steps, bootstrap_token, chromium, register_person, sign_in, wait_for
from aerie.testing.browser import element_text as _text
from aerie.testing.http import basic_auth

pytestmark = [pytest.mark.console, pytest.mark.flags, pytest.mark.audit, pytest.mark.tenants]

OUTPUT = Path(__file__).resolve().parent / "output"


def _bucket(key: str, value: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{key}:{value}".encode()).digest()[:4], "big") % 10000


def _tenant(stack: LocalStack, admin: str) -> dict[str, Any]:
    r = requests.post(
        f"{stack.env()['AERIE_TENANTS_URL']}/v1/tenants",
        json={"slug": f"acme-{uuid.uuid4().hex[:8]}", "name": "Acme", "plan": "team"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_a_platform_admin_runs_a_flag_from_the_console(stack: LocalStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    urls = stack.env()
    console, idp = urls["AERIE_CONSOLE_URL"], urls["AERIE_DEV_IDP_URL"]
    tenant = _tenant(stack, bootstrap_token(stack))
    register_person(idp, SAMPLE_ADMIN)

    key = f"journey-{uuid.uuid4().hex[:8]}"
    steps = Steps(browser, "console-journey", OUTPUT)
    with steps.step("sign in at the provider"):
        sign_in(browser, console, idp, SAMPLE_ADMIN, "/flags")
        assert "platform-admin" in _text(browser, "who")

    with steps.step("create a flag"):
        browser.find_element(By.ID, "key").send_keys(key)
        browser.find_element(By.ID, "description").send_keys("Made in the browser")
        browser.find_element(By.ID, "create-flag").click()
        wait_for(lambda: f"Flag {key} saved." in _text(browser, "notice"), 15, "the flag saved")
        assert _text(browser, "flag-state") == "enabled" and _text(browser, "flag-rollout") == "none"

    with steps.step("roll out to 25%"):
        field = browser.find_element(By.ID, "rollout-percentage")
        field.clear()
        field.send_keys("25")
        browser.find_element(By.ID, "save-rollout").click()
        wait_for(lambda: "25%" in _text(browser, "notice"), 15, "the rollout saved")
        wait_for(lambda: _text(browser, "flag-rollout") == "25% by user_id", 15, "the rollout shown")

    # A user inside the 25% and one outside it, by the contract's bucket.
    inside = next(f"user-{i}" for i in range(1000) if _bucket(key, f"user-{i}") < 2500)
    outside = next(f"user-{i}" for i in range(1000) if _bucket(key, f"user-{i}") >= 2500)

    def preview(user: str) -> tuple[str, str]:
        Select(browser.find_element(By.ID, "tenant_id")).select_by_value(tenant["id"])
        field = browser.find_element(By.ID, "user_id")
        field.clear()
        field.send_keys(user)
        browser.find_element(By.ID, "evaluate").click()
        wait_for(lambda: f"user_id={user}" in browser.current_url and _text(browser, "preview-reason"), 15, "a preview")
        return _text(browser, "preview-value"), _text(browser, "preview-reason")

    with steps.step("preview the rollout"):
        assert preview(inside) == ("true", "SPLIT")
        assert preview(outside) == ("false", "DEFAULT")
        assert _text(browser, "preview-rule") == "none" and _text(browser, "preview-variant") == "none"

    with steps.step("flip the kill switch"):
        browser.find_element(By.ID, "kill-switch").click()
        wait_for(lambda: "Kill switch on" in _text(browser, "notice"), 15, "the kill switch on")
        assert _text(browser, "flag-state").startswith("killed")
        assert preview(inside) == ("false", "DISABLED")

    with steps.step("both changes in the audit trail, by the person"):

        def changes() -> list[str]:
            browser.get(f"{console}/audit?action=flag.updated")
            return [
                row.text
                for row in browser.find_elements(By.CSS_SELECTOR, "tr.entry")
                if key in row.text and "user usr_" in row.text and "via svc-console" in row.text
            ]

        # audit records events as they come through the durable stream
        rows = wait_for(lambda: len(changes()) >= 2 and changes(), 20, "two flag.updated entries by the person")
        assert all("flag.updated" in row for row in rows)
        browser.get(f"{console}/audit?action=flag.created")
        created = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "tr.entry")]
        assert any(key in row and "user usr_" in row for row in created), created

    with steps.step("verify the chain"):
        browser.get(f"{console}/audit")
        browser.find_element(By.ID, "verify").click()
        result = wait_for(lambda: _text(browser, "verify-result"), 15, "the verification's result")
        assert result.startswith("The chain is intact"), result

    with steps.step("sign out"):
        browser.find_element(By.ID, "sign-out").click()
        wait_for(lambda: _text(browser, "signed-out") == "You are signed out.", 15, "signed out")
        browser.get(f"{console}/flags")
        wait_for(lambda: browser.current_url.startswith(idp), 15, "a signed-out person is sent to sign in")


def test_an_owner_invites_a_developer_who_sees_what_the_role_allows(stack: LocalStack, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    urls = stack.env()
    console, idp = urls["AERIE_CONSOLE_URL"], urls["AERIE_DEV_IDP_URL"]
    admin = bootstrap_token(stack)
    tenant, other = _tenant(stack, admin), _tenant(stack, admin)
    owner, developer = f"owner@{tenant['slug']}.example", f"dev@{tenant['slug']}.example"
    r = requests.post(
        f"{urls['AERIE_TENANTS_URL']}/v1/tenants/{tenant['id']}/members",
        json={"email": owner, "role": "owner"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    register_person(idp, owner)
    register_person(idp, developer)
    members = f"/tenants/{tenant['id']}/members"

    steps = Steps(browser, "console-members", OUTPUT)
    with steps.step("the owner signs in to the members"):
        sign_in(browser, console, idp, owner, members)
        assert f"(owner, {tenant['id']})" in _text(browser, "who")

    with steps.step("invite a developer"):
        browser.find_element(By.ID, "invite-email").send_keys(developer)
        Select(browser.find_element(By.ID, "invite-role")).select_by_value("developer")
        browser.find_element(By.ID, "invite").click()
        wait_for(lambda: f"{developer} invited." in _text(browser, "notice"), 15, "the invitation")
        rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert any(developer in row and "developer" in row and "invited" in row for row in rows), rows

    with steps.step("sign out"):
        browser.find_element(By.ID, "sign-out").click()
        wait_for(lambda: _text(browser, "signed-out"), 15, "signed out")

    with steps.step("the developer sees the audit trail and nothing more"):
        sign_in(browser, console, idp, developer, "/audit")
        assert f"(developer, {tenant['id']})" in _text(browser, "who")
        assert not browser.find_elements(By.LINK_TEXT, "Members")
        browser.get(f"{console}{members}")
        assert "Your role does not show the tenant's members." in _text(browser, "problem-detail")
        browser.get(f"{console}/tenants/{other['id']}/members")
        assert _text(browser, "problem-title") == "Not found"
        browser.get(f"{console}/flags")
        assert "platform people" in _text(browser, "problem-detail")
        browser.get(f"{console}/audit?action=member.invited")
        wait_for(
            lambda: (
                browser.refresh()
                or [r.text for r in browser.find_elements(By.CSS_SELECTOR, "tr.entry") if "user usr_" in r.text]
            ),
            20,
            "the invitation in the tenant's trail, by the owner",
        )


def test_an_owner_runs_the_tenant_clients_projects_and_overrides_from_the_console(
    stack: LocalStack, browser: Any
) -> None:
    """The owner reads their tenant, creates an API client and sees its secret once (and the
    secret works), creates, renames and deletes a project, sets and clears the tenant's
    override of a flag that allows one, and revokes the client."""
    from selenium.webdriver.common.by import By

    urls = stack.env()
    console, idp, tenants_url = urls["AERIE_CONSOLE_URL"], urls["AERIE_DEV_IDP_URL"], urls["AERIE_TENANTS_URL"]
    admin = bootstrap_token(stack)
    tenant = _tenant(stack, admin)
    owner = f"owner@{tenant['slug']}.example"
    r = requests.post(
        f"{tenants_url}/v1/tenants/{tenant['id']}/members",
        json={"email": owner, "role": "owner"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    key = f"tenant-choice-{uuid.uuid4().hex[:8]}"
    r = requests.put(
        f"{urls['AERIE_FLAGS_URL']}/v1/flags/{key}",
        json={"description": "The tenant decides", "enabled": True, "default": False, "allow_overrides": "tenant"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert r.status_code in (200, 201), r.text
    register_person(idp, owner)
    home = f"/tenants/{tenant['id']}/members"

    def evaluated(access_token: str) -> Any:
        r = requests.post(
            f"{urls['AERIE_FLAGS_URL']}/v1/evaluate",
            json={"context": {}, "keys": [key]},
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return r.json()["flags"][key]

    steps = Steps(browser, "console-tenant", OUTPUT)
    with steps.step("the owner signs in and reads the tenant"):
        sign_in(browser, console, idp, owner, home)
        browser.find_element(By.LINK_TEXT, "Tenant").click()
        wait_for(lambda: _text(browser, "tenant-slug") == tenant["slug"], 15, "the tenant page")
        assert _text(browser, "tenant-name") == "Acme" and _text(browser, "tenant-status") == "active"
        created = browser.find_element(By.CSS_SELECTOR, "#tenant-created time")
        # The service's timestamp for machines, and as English writes it for the person.
        assert created.get_attribute("datetime") == tenant["created_at"] and created.text.endswith("UTC")

    with steps.step("create an API client and see its secret once"):
        browser.find_element(By.LINK_TEXT, "API clients").click()
        wait_for(lambda: browser.find_elements(By.ID, "create-client"), 15, "the clients page")
        browser.find_element(By.ID, "client-name").send_keys("ci-deployer")
        browser.find_element(By.ID, "scope-flags-read").click()
        browser.find_element(By.ID, "create-client").click()
        secret = wait_for(lambda: _text(browser, "client-secret"), 15, "the new client's secret")
        client_id = _text(browser, "client-id")
        assert client_id and "shown this once" in _text(browser, "secret-once")
        assert secret not in browser.current_url
        browser.find_element(By.ID, "back-to-clients").click()
        wait_for(lambda: client_id in browser.page_source, 15, "the client in the list")
        assert secret not in browser.page_source
        r = requests.post(
            f"{tenants_url}/v1/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": basic_auth(client_id, secret)},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        client_token = str(r.json()["access_token"])
        assert evaluated(client_token)["value"] is False

    with steps.step("create a project, rename it, delete it"):
        browser.find_element(By.LINK_TEXT, "Projects").click()
        wait_for(lambda: browser.find_elements(By.ID, "create-project"), 15, "the projects page")
        name = f"Web {uuid.uuid4().hex[:6]}"
        browser.find_element(By.ID, "project-name").send_keys(name)
        browser.find_element(By.ID, "project-description").send_keys("Made in the browser")
        browser.find_element(By.ID, "create-project").click()
        wait_for(lambda: f"Project {name} created." in _text(browser, "notice"), 15, "the project created")
        assert _text(browser, "project-version") == "1"
        field = browser.find_element(By.ID, "project-name")
        field.clear()
        field.send_keys(f"{name} renamed")
        browser.find_element(By.ID, "save-project").click()
        wait_for(lambda: f"Project {name} renamed saved." in _text(browser, "notice"), 15, "the project renamed")
        assert _text(browser, "project-version") == "2"
        browser.find_element(By.LINK_TEXT, "All projects").click()
        rows = wait_for(lambda: [r.text for r in browser.find_elements(By.CSS_SELECTOR, "tr.project")], 15, "a list")
        assert any(f"{name} renamed" in row for row in rows), rows
        browser.find_element(By.LINK_TEXT, f"{name} renamed").click()
        browser.find_element(By.ID, "delete-project").click()
        wait_for(lambda: browser.find_elements(By.ID, "confirm-delete"), 15, "the confirmation")
        browser.find_element(By.ID, "confirm-delete").click()
        wait_for(lambda: _text(browser, "notice") == "Project deleted.", 15, "the project deleted")
        assert f"{name} renamed" not in browser.page_source

    with steps.step("set the tenant's override, and clear it"):

        def on_page() -> bool:
            browser.get(f"{console}/overrides")
            return bool(browser.find_elements(By.ID, f"set-tenant-{key}"))

        # every flags worker learns of the new flag from the stream
        wait_for(on_page, 20, "the flag on the overrides page")
        browser.find_element(By.ID, f"tenant-value-{key}").send_keys("true")
        browser.find_element(By.ID, f"set-tenant-{key}").click()
        wait_for(lambda: f"Override of {key} for the tenant set." in _text(browser, "notice"), 15, "the override set")
        assert wait_for(lambda: evaluated(client_token)["value"] is True, 15, "the override served")

        def shown() -> str:
            browser.get(f"{console}/overrides")
            cells = browser.find_elements(By.CSS_SELECTOR, f"#override-{key} .tenant-override")
            return str(cells[0].text) if cells else ""

        wait_for(lambda: shown() == "true", 15, "the override on the page")
        browser.find_element(By.ID, f"clear-tenant-{key}").click()
        wait_for(lambda: "cleared" in _text(browser, "notice"), 15, "the override cleared")
        assert wait_for(lambda: evaluated(client_token)["value"] is False, 15, "the default served again")
        wait_for(lambda: shown() == "none", 15, "no override on the page")

    with steps.step("revoke the client, after a confirmation"):
        browser.get(f"{console}/tenants/{tenant['id']}/clients")
        browser.find_element(By.ID, f"revoke-{client_id}").click()
        wait_for(lambda: browser.find_elements(By.ID, "confirm-revoke"), 15, "the confirmation")
        assert "ci-deployer" in browser.find_element(By.TAG_NAME, "h1").text
        browser.find_element(By.ID, "confirm-revoke").click()
        wait_for(lambda: f"Client {client_id} revoked" in _text(browser, "notice"), 15, "the client revoked")
        rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "tr.client") if client_id in r.text]
        assert rows and "revoked" in rows[0], rows

        def refused() -> bool:
            r = requests.post(
                f"{urls['AERIE_FLAGS_URL']}/v1/evaluate",
                json={"context": {}, "keys": [key]},
                headers={"Authorization": f"Bearer {client_token}"},
                timeout=10,
            )
            return r.status_code == 401

        assert wait_for(refused, 15, "the revoked client's token refused")


def test_a_browser_that_prefers_german_gets_the_console_and_the_services_in_german(stack: LocalStack) -> None:
    """The console's pages, its notices and a service's problem, all from the one catalog."""
    from selenium.webdriver.common.by import By

    urls = stack.env()
    console, idp = urls["AERIE_CONSOLE_URL"], urls["AERIE_DEV_IDP_URL"]
    register_person(idp, SAMPLE_ADMIN)
    key = f"deutsch-{uuid.uuid4().hex[:8]}"
    german = chromium(languages="de-DE,de")
    german.set_page_load_timeout(30)
    steps = Steps(german, "console-german", OUTPUT)
    try:
        with steps.step("sign in: the flags page in German"):
            sign_in(german, console, idp, SAMPLE_ADMIN, "/flags")
            assert german.find_element(By.TAG_NAME, "html").get_attribute("lang") == "de"
            assert german.find_element(By.TAG_NAME, "caption").text == "Flag-Definitionen, nach Schlüssel"
            assert german.find_element(By.ID, "sign-out").text == "Abmelden"

        with steps.step("create a flag: the notice in German"):
            german.find_element(By.ID, "key").send_keys(key)
            german.find_element(By.ID, "create-flag").click()
            wait_for(lambda: _text(german, "notice") == f"Flag {key} gespeichert.", 15, "the flag saved, in German")
            assert _text(german, "flag-state") == "eingeschaltet" and _text(german, "flag-rollout") == "keine"

        with steps.step("a flag that does not exist: the flags service's problem in German"):
            german.get(f"{console}/flags/{key}-gone")
            wait_for(lambda: _text(german, "problem-title"), 15, "the problem page")
            assert _text(german, "problem-title") == "Nicht gefunden", _text(german, "problem-title")
            assert _text(german, "request-id"), "the service's own problem, with its request id"

        with steps.step("sign out, in German"):
            german.get(f"{console}/flags")
            german.find_element(By.ID, "sign-out").click()
            wait_for(lambda: _text(german, "signed-out") == "Sie sind abgemeldet.", 15, "signed out, in German")
    finally:
        german.quit()
