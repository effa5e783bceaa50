"""The projects pages: what each form asks of the projects service, the version it acts at,
the confirmation before a delete, and who sees the controls."""

from __future__ import annotations

import pytest
from console.api import ServiceProblem
from consoletest import TEN_A, signed_in, token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DEVELOPER = {"tenant_id": TEN_A, "scope": "tenants:read projects:read projects:write", "role": "developer"}
VIEWER = {"tenant_id": TEN_A, "scope": "tenants:read projects:read flags:read", "role": "viewer"}
PROJECT = {
    "id": "prj_1",
    "tenant_id": TEN_A,
    "slug": "web",
    "name": "Web",
    "description": "The site",
    "status": "active",
    "created_at": "2026-01-02T03:04:05Z",
    "version": 4,
}


def test_the_list_is_one_call_and_a_developer_may_create(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.answers[("GET", "projects", "/v1/projects")] = {"items": [PROJECT], "next_cursor": None}
    fake_api.calls.clear()
    page = client.simulate_get("/projects").text
    assert fake_api.calls == [("GET", "projects", "/v1/projects", {"limit": 100}, None)]
    assert 'href="/projects/prj_1">Web<' in page and 'id="create-project"' in page


def test_a_viewer_reads_projects_without_any_control(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**VIEWER))
    fake_api.answers[("GET", "projects", "/v1/projects")] = {"items": [PROJECT]}
    fake_api.answers[("GET", "projects", "/v1/projects/prj_1")] = PROJECT
    assert 'id="create-project"' not in client.simulate_get("/projects").text
    page = client.simulate_get("/projects/prj_1").text
    assert "The site" in page and 'method="post" action="/projects' not in page


def test_creating_a_project_posts_it_then_shows_it(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.answers[("POST", "projects", "/v1/projects")] = PROJECT
    body = f"name=+Web+&slug=&description=The+site&tenant_id=ten_B&csrf={csrf}"
    r = client.simulate_post("/projects", body=body, headers=FORM)
    assert r.status_code == 303 and r.headers["Location"].startswith("/projects/prj_1?notice=Project+Web+created")
    (post,) = [c for c in fake_api.calls if c[0] == "POST"]
    assert post == ("POST", "projects", "/v1/projects", None, {"name": "Web", "description": "The site"})


@pytest.mark.parametrize(("body", "problem"), [("name=", "Name"), ("name=Web&slug=Not+A+Slug", "Slug")])
def test_a_bad_project_form_is_shown_again_before_the_service_is_asked_to_create(
    client, fake_http, fake_api, body, problem
):
    csrf = signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.calls.clear()
    r = client.simulate_post("/projects", body=f"{body}&csrf={csrf}", headers=FORM)
    assert r.status_code == 422 and 'role="alert"' in r.text and problem in r.text
    assert [c[0] for c in fake_api.calls] == ["GET"]


def test_editing_patches_at_the_version_the_form_was_read_at(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.answers[("GET", "projects", "/v1/projects/prj_1")] = PROJECT
    page = client.simulate_get("/projects/prj_1").text
    assert 'name="version" value="4"' in page
    fake_api.answers[("PATCH", "projects", "/v1/projects/prj_1")] = {**PROJECT, "name": "Website", "version": 5}
    fake_api.calls.clear()
    fake_api.if_match.clear()
    body = f"name=Website&slug=web&description=&version=4&csrf={csrf}"
    r = client.simulate_post("/projects/prj_1", body=body, headers=FORM)
    assert r.status_code == 303 and r.headers["Location"].startswith("/projects/prj_1?notice=Project+Website+saved")
    assert fake_api.calls == [
        ("PATCH", "projects", "/v1/projects/prj_1", None, {"name": "Website", "slug": "web", "description": ""})
    ]
    assert fake_api.if_match == [4]


def test_an_edit_of_a_stale_version_shows_the_services_412(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.answers[("PATCH", "projects", "/v1/projects/prj_1")] = ServiceProblem(
        412, "Precondition failed", "The project changed since version 3.", "req-412", "precondition_failed"
    )
    r = client.simulate_post("/projects/prj_1", body=f"name=W&version=3&csrf={csrf}", headers=FORM)
    assert r.status_code == 412 and "The project changed since version 3." in r.text and "req-412" in r.text


def test_deleting_asks_first_then_deletes_at_the_version_shown(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**DEVELOPER))
    fake_api.calls.clear()
    fake_api.if_match.clear()
    ask = client.simulate_post("/projects/prj_1/delete", body=f"name=Web&version=4&csrf={csrf}", headers=FORM)
    assert ask.status_code == 200 and "Delete Web?" in ask.text and 'name="version" value="4"' in ask.text
    assert fake_api.calls == [], "asking changes nothing"
    done = client.simulate_post("/projects/prj_1/delete", body=f"confirm=yes&version=4&csrf={csrf}", headers=FORM)
    assert done.status_code == 303 and done.headers["Location"].startswith("/projects?notice=")
    assert fake_api.calls == [("DELETE", "projects", "/v1/projects/prj_1", None, None)]
    assert fake_api.if_match == [4]


@pytest.mark.parametrize("path", ["/projects", "/projects/prj_1"])
def test_a_platform_sign_in_has_no_projects_and_is_told_so_before_any_call(client, fake_http, fake_api, path):
    signed_in(client, fake_http, token())
    fake_api.calls.clear()
    r = client.simulate_get(path)
    assert r.status_code == 403 and "your sign-in is the platform" in r.text and fake_api.calls == []


def test_the_api_sends_the_version_as_if_match_only_when_given(settings):
    from console.api import Api
    from console.config import ConsoleConfig

    sent: list[dict[str, str]] = []

    class Http:
        def request(self, method, url, **kw):
            sent.append(kw["headers"])

            class Resp:
                status_code = 204

            return Resp()

    api = Api(ConsoleConfig.from_settings(settings), Http())  # type: ignore[arg-type]
    api.call("t", "DELETE", "projects", "/v1/projects/prj_1", if_match=7)
    api.call("t", "DELETE", "projects", "/v1/projects/prj_1")
    assert sent[0]["If-Match"] == '"7"' and "If-Match" not in sent[1]


def test_a_person_who_reads_the_tenant_but_not_members_or_audit_lands_on_the_tenant(client, fake_http):
    signed_in(client, fake_http, token(**VIEWER))
    assert client.simulate_get("/").headers["Location"] == f"/tenants/{TEN_A}"
    signed_in(client, fake_http, token(TEN_A, scope="projects:read", role="viewer"))
    assert client.simulate_get("/").headers["Location"] == "/projects"
