"""The flag list: pages of definitions by key, each row as the flags service has it, and a
platform-viewer reading them with no control to change one."""

from __future__ import annotations

from console.api import ServiceProblem
from consoletest import signed_in, token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LIST = ("GET", "flags", "/v1/flags")
VIEWER = {"scope": "platform:read", "role": "platform-viewer"}


def _flag(i: int, **over: object) -> dict[str, object]:
    return {"key": f"f{i:03d}", "enabled": True, "default": False, "rollout": None, "version": 1, **over}


def test_the_list_is_paged_fifty_at_a_time_with_links_that_need_no_script(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.answers[LIST] = {"items": [_flag(i) for i in range(50)], "next_cursor": "cur/2+"}
    fake_api.calls.clear()
    first = client.simulate_get("/flags")
    assert first.status_code == 200
    assert fake_api.calls == [(*LIST, {"limit": 50}, None)]
    assert first.text.count('<tr id="flag-') == 50
    assert '<a href="/flags?cursor=cur%2F2%2B" id="next-page" rel="next">Next page</a>' in first.text
    assert 'id="first-page"' not in first.text and 'aria-label="Pages of flags"' in first.text

    fake_api.answers[LIST] = {"items": [_flag(i) for i in range(50, 60)], "next_cursor": None}
    fake_api.calls.clear()
    second = client.simulate_get("/flags", params={"cursor": "cur/2+"})
    assert fake_api.calls == [(*LIST, {"limit": 50, "cursor": "cur/2+"}, None)]
    assert 'id="flag-f050"' in second.text and 'id="flag-f000"' not in second.text
    assert '<a href="/flags" id="first-page">First page</a>' in second.text and 'id="next-page"' not in second.text
    # The live script refetches the page it is on, so page 2 updates page 2's rows.
    assert "flags-live.js" in second.text


def test_one_page_of_flags_has_no_page_links(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.answers[LIST] = {"items": [_flag(1)], "next_cursor": None}
    page = client.simulate_get("/flags").text
    assert "Pages of flags" not in page and 'id="next-page"' not in page


def test_each_row_shows_the_flag_escaped_and_in_the_pages_language(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    rows = [
        _flag(1, enabled=False, default={"a": "<b>&'"}, rollout={"percentage": 12.5, "stickiness": "user_id"}),
        _flag(2, default="control", version=7),
    ]
    fake_api.answers[LIST] = {"items": rows, "next_cursor": None}
    page = client.simulate_get("/flags").text
    assert (
        '<tr id="flag-f001" data-version="1"><td><a href="/flags/f001">f001</a></td>'
        '<td><span class="off">killed</span></td>'
        '<td><code>{"a": "\\u003cb\\u003e\\u0026\\u0027"}</code></td><td>12.5% by user_id</td><td>1</td></tr>'
    ) in page
    assert '<td><span class="on">enabled</span></td><td><code>"control"</code></td><td>none</td><td>7</td>' in page
    german = client.simulate_get("/flags", headers={"Accept-Language": "de"}).text
    assert "12,5\xa0% nach user_id" in german


def test_a_platform_viewer_reads_the_list_without_any_control(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token(**VIEWER))
    fake_api.answers[LIST] = {"items": [_flag(1)], "next_cursor": "c2"}
    page = client.simulate_get("/flags")
    assert page.status_code == 200 and 'id="flag-f001"' in page.text and 'id="next-page"' in page.text
    assert 'id="create-flag"' not in page.text and "<form" not in page.text.split("<main", 1)[-1].split("</main>")[0]
    assert "flags-live.js" not in page.text
    fake_api.calls.clear()
    r = client.simulate_post("/flags", body=f"key=new-flag&default=false&csrf={csrf}", headers=FORM)
    assert r.status_code == 403 and "platform-admin" in r.text
    for path, body in (("/flags/f001/kill-switch", "killed=true"), ("/flags/f001/rollout", "percentage=5")):
        r = client.simulate_post(path, body=f"{body}&csrf={csrf}", headers=FORM)
        assert r.status_code == 403 and "platform-admin" in r.text
    assert fake_api.calls == []


def test_the_services_refusal_of_a_viewer_is_shown_as_it_said(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**VIEWER))
    fake_api.answers[LIST] = ServiceProblem(
        403, "Forbidden", "This needs platform:read.", "req-9", "insufficient_scope"
    )
    r = client.simulate_get("/flags")
    assert r.status_code == 403 and "This needs platform:read." in r.text and "req-9" in r.text
