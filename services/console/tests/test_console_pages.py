"""The platform pages: what each form asks of the flags service, and how refusals are shown."""

from __future__ import annotations

from console.api import ServiceProblem
from consoletest import TEN_A, signed_in, token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FLAG = {"key": "f1", "enabled": True, "default": False, "rollout": None, "version": 2, "created_at": "x"}


def test_a_bad_key_is_refused_on_the_page_before_any_service_is_asked(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.calls.clear()
    r = client.simulate_post("/flags", body=f"key=Not+A+Key&csrf={csrf}", headers=FORM)
    assert r.status_code == 422 and 'role="alert"' in r.text and "lower-case letters" in r.text
    assert [c[0] for c in fake_api.calls] == ["GET"]


def test_creating_a_flag_puts_its_definition_then_shows_it(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags/new-flag")] = ServiceProblem(404, "Not found", "No flag.", "r1")
    body = f"key=new-flag&description=Hi&default=false&percentage=10&allow_overrides=user&enabled=on&csrf={csrf}"
    r = client.simulate_post("/flags", body=body, headers=FORM)
    assert r.status_code == 303 and r.headers["Location"].startswith("/flags/new-flag?notice=")
    (put,) = [c for c in fake_api.calls if c[0] == "PUT"]
    assert put[2] == "/v1/flags/new-flag"
    assert put[4] == {
        "description": "Hi",
        "enabled": True,
        "default": False,
        "allow_overrides": "user",
        "rollout": {"percentage": 10, "stickiness": "user_id"},
    }


def test_the_kill_switch_puts_the_definition_back_disabled_at_the_version_read(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags/f1")] = FLAG
    r = client.simulate_post("/flags/f1/kill-switch", body=f"killed=true&csrf={csrf}", headers=FORM)
    assert r.status_code == 303
    (put,) = [c for c in fake_api.calls if c[0] == "PUT"]
    assert put[4] == {"key": "f1", "enabled": False, "default": False, "rollout": None, "version": 2}


def test_the_preview_evaluates_as_the_chosen_tenant(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags/f1")] = FLAG
    fake_api.answers[("POST", "flags", "/v1/evaluate")] = {
        "flags": {"f1": {"value": True, "variant": "b", "reason": "TARGETING_MATCH", "rule": "rules[0]"}}
    }
    r = client.simulate_get("/flags/f1", params={"tenant_id": TEN_A, "user_id": "u-7"})
    assert r.status_code == 200
    (evaluate,) = [c for c in fake_api.calls if c[0] == "POST"]
    assert evaluate[3] == {"tenant_id": TEN_A} and evaluate[4] == {"context": {"user_id": "u-7"}, "keys": ["f1"]}
    for shown in ("TARGETING_MATCH", "rules[0]", ">b<", "<code>true</code>"):
        assert shown in r.text


def test_a_services_refusal_shows_its_title_detail_and_request_id(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags/f1")] = FLAG
    fake_api.answers[("PUT", "flags", "/v1/flags/f1")] = ServiceProblem(
        412, "Precondition failed", "The flag changed since you read it (version 3).", "req-412", "precondition_failed"
    )
    r = client.simulate_post("/flags/f1/rollout", body=f"percentage=50&csrf={csrf}", headers=FORM)
    assert r.status_code == 412
    assert "Precondition failed" in r.text and "changed since you read it" in r.text and "req-412" in r.text


def test_a_failure_in_the_console_is_a_page_never_a_traceback(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags")] = {"no items": "here"}
    r = client.simulate_get("/flags")
    assert r.status_code == 500 and "Something went wrong" in r.text
    assert "Traceback" not in r.text and "KeyError" not in r.text


def test_a_service_saying_the_token_is_no_longer_good_means_signing_in_again(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.answers[("GET", "audit", "/v1/audit/events")] = ServiceProblem(401, "Unauthorized", "Expired.", "r")
    r = client.simulate_get("/audit")
    assert r.status_code == 303 and r.headers["Location"] == "/sign-in?next=%2Faudit"
