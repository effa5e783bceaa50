"""The console in the person's language: the token's language, else Accept-Language, else English."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from console.api import ServiceProblem
from console.i18n import install
from consoletest import TEN_A, signed_in, token
from jinja2 import Environment

from aerie.i18n import Catalogs

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
FLAG = {
    "key": "f1",
    "enabled": True,
    "default": False,
    "rollout": {"percentage": 12.5, "stickiness": "user_id"},
    "version": 2,
}
TENANT = {
    "id": TEN_A,
    "slug": "acme",
    "name": "Acme <Ltd>",
    "plan": "team",
    "status": "active",
    "created_at": "2026-01-02T03:04:05Z",
}
OWNER = {
    "tenant_id": TEN_A,
    "scope": "tenants:read tenants:write projects:read projects:write flags:read flags:write",
    "role": "owner",
}


def notice_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["notice"][0]


def test_a_page_is_english_by_default(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags")] = {"items": [FLAG]}
    r = client.simulate_get("/flags")
    assert r.status_code == 200
    assert '<html lang="en">' in r.text and r.headers["Content-Language"] == "en"
    assert "Flag definitions, by key" in r.text and ">Sign out<" in r.text
    assert "12.5% by user_id" in r.text
    assert "Accept-Language" in r.headers["Vary"]


def test_a_page_is_german_for_a_browser_that_prefers_german(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags")] = {"items": [FLAG]}
    r = client.simulate_get("/flags", headers=GERMAN)
    assert r.status_code == 200
    assert '<html lang="de">' in r.text and r.headers["Content-Language"] == "de"
    assert "Flag-Definitionen, nach Schlüssel" in r.text and ">Abmelden<" in r.text
    assert "Flag definitions" not in r.text and "Sign out" not in r.text
    # Babel's German: a decimal comma and a (non-breaking) space before the percent sign.
    assert "12,5\xa0% nach user_id" in r.text


@pytest.mark.parametrize("header", [None, "en", "fr"])
def test_the_persons_own_language_beats_the_browsers(client, fake_http, fake_api, header):
    signed_in(client, fake_http, token(language="de"))
    r = client.simulate_get("/flags", headers={"Accept-Language": header} if header else {})
    assert '<html lang="de">' in r.text and "Flag-Definitionen" in r.text


def test_a_persons_language_the_console_does_not_ship_falls_back_to_the_browsers(client, fake_http, fake_api):
    signed_in(client, fake_http, token(language="fr"))
    assert '<html lang="de">' in client.simulate_get("/flags", headers=GERMAN).text
    assert '<html lang="en">' in client.simulate_get("/flags", headers={"Accept-Language": "fr, it"}).text


def test_a_signed_out_page_follows_the_browser(client):
    r = client.simulate_get("/", headers={"Accept-Language": "de-AT"})
    assert '<html lang="de">' in r.text and "Melden Sie sich mit dem Konto Ihrer Organisation an" in r.text
    assert "Sign in with" in client.simulate_get("/").text


def test_a_notice_is_in_the_language_of_the_form_that_caused_it(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags/f1")] = FLAG
    r = client.simulate_post("/flags/f1/kill-switch", body=f"killed=true&csrf={csrf}", headers={**FORM, **GERMAN})
    assert r.status_code == 303
    assert notice_of(r.headers["Location"]) == "Kill-Switch aktiv: f1 liefert überall seinen Aus-Wert."
    shown = client.simulate_get(r.headers["Location"], headers=GERMAN)
    assert 'id="notice">Kill-Switch aktiv: f1 liefert' in shown.text
    r = client.simulate_post("/flags/f1/kill-switch", body=f"killed=true&csrf={csrf}", headers=FORM)
    assert notice_of(r.headers["Location"]) == "Kill switch on: f1 serves its off value everywhere."


def test_a_form_error_is_translated_and_its_field_values_are_not(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    r = client.simulate_post("/flags", body=f"key=Not+A+Key&csrf={csrf}", headers={**FORM, **GERMAN})
    assert r.status_code == 422
    assert 'id="form-error">Schlüssel: Kleinbuchstaben, Ziffern' in r.text
    assert 'value="Not A Key"' in r.text


def test_a_form_error_with_a_placeholder_is_translated(client, fake_http, fake_api):
    csrf = signed_in(client, fake_http, token())
    body = f"key=ok&percentage=5&stickiness=colour&csrf={csrf}"
    r = client.simulate_post("/flags", body=body, headers={**FORM, **GERMAN})
    assert r.status_code == 422
    assert "Zuordnung: einer der Werte user_id, tenant_id, session_id, ip." in r.text


def test_a_refusal_by_the_console_is_translated(client, fake_http, fake_api):
    signed_in(client, fake_http, token())
    r = client.simulate_post("/flags", body="key=x&csrf=wrong", headers={**FORM, **GERMAN})
    assert r.status_code == 403
    assert 'id="problem-title">Nicht erlaubt<' in r.text
    assert "Dieses Formular ist veraltet oder stammt nicht aus der Konsole." in r.text


def test_another_tenants_page_and_an_unknown_route_are_not_found_in_german(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**OWNER))
    r = client.simulate_get("/tenants/ten_B", headers=GERMAN)
    assert r.status_code == 404 and 'id="problem-title">Nicht gefunden<' in r.text
    assert "Diesen Tenant gibt es nicht." in r.text
    r = client.simulate_get("/no/such/page", headers=GERMAN)
    assert r.status_code == 404 and 'id="problem-title">Nicht gefunden<' in r.text


def test_a_services_problem_is_shown_in_the_words_it_came_in(client, fake_http, fake_api):
    """The services answer in the person's language already (the console forwards Accept-Language)."""
    signed_in(client, fake_http, token())
    fake_api.answers[("GET", "flags", "/v1/flags/gone")] = ServiceProblem(404, "Nicht gefunden", "Weg.", "req-1")
    r = client.simulate_get("/flags/gone", headers=GERMAN)
    assert r.status_code == 404 and "Nicht gefunden" in r.text and "Weg." in r.text and "req-1" in r.text
    assert "Anfrage-ID, die Sie angeben, wenn Sie Hilfe brauchen:" in r.text


def test_dates_are_written_as_the_language_writes_them_and_values_stay_escaped(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**OWNER))
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_A}")] = TENANT
    german = client.simulate_get(f"/tenants/{TEN_A}", headers=GERMAN).text
    assert '<time datetime="2026-01-02T03:04:05Z">02.01.2026, 03:04:05 UTC</time>' in german
    assert "<h1>Tenant Acme &lt;Ltd&gt;</h1>" in german and "Tarif" in german
    english = client.simulate_get(f"/tenants/{TEN_A}").text
    # CLDR puts a narrow no-break space before AM (since CLDR 42); the test need not care which.
    assert "Jan 2, 2026, 3:04:05" in english and "AM UTC</time>" in english and ">Plan<" in english


def test_a_date_that_is_not_one_is_shown_as_it_came(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**OWNER))
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_A}")] = {**TENANT, "created_at": "sometime"}
    assert (
        'id="tenant-created"><time datetime="sometime">sometime</time>'
        in client.simulate_get(f"/tenants/{TEN_A}", headers=GERMAN).text
    )


@pytest.mark.parametrize(
    ("entries", "german", "english"),
    [
        (1, "Die Kette ist intakt: 1 Eintrag geprüft, bis #7.", "The chain is intact: 1 entry verified, up to #7."),
        (
            1200,
            "Die Kette ist intakt: 1.200 Einträge geprüft, bis #7.",
            "The chain is intact: 1,200 entries verified, up to #7.",
        ),
    ],
)
def test_a_count_takes_the_plural_its_language_gives_it(client, fake_http, fake_api, entries, german, english):
    signed_in(client, fake_http, token())
    verified = {"valid": True, "entries": entries, "head": {"seq": 7}}
    fake_api.answers[("GET", "audit", "/v1/audit/verify")] = verified
    assert german in client.simulate_get("/audit", params={"verify": "1"}, headers=GERMAN).text
    assert english in client.simulate_get("/audit", params={"verify": "1"}).text


def test_a_sign_in_that_fails_says_why_in_german(client):
    r = client.simulate_get("/auth/callback", params={"code": "c", "state": "s"}, headers=GERMAN)
    assert r.status_code == 400 and 'id="problem-title">Anmeldung fehlgeschlagen<' in r.text
    assert "Diese Anmeldung wurde nicht hier begonnen" in r.text and ">Erneut anmelden<" in r.text


def test_the_new_pages_are_german_too(client, fake_http, fake_api):
    signed_in(client, fake_http, token(**OWNER))
    fake_api.answers[("GET", "tenants", f"/v1/tenants/{TEN_A}/clients")] = {"items": []}
    pages = {
        f"/tenants/{TEN_A}/clients": ("API-Clients von ten_A", "Noch keine API-Clients.", "Client anlegen"),
        "/projects": (
            "Die Projekte dieses Tenants",
            "Noch keine Projekte.",
            "Slug (leer: wird aus dem Namen gebildet)",
        ),
        "/overrides": ("Kein Flag erlaubt diesem Tenant eine Überschreibung.",),
    }
    for path, texts in pages.items():
        r = client.simulate_get(path, headers=GERMAN)
        assert r.status_code == 200, (path, r.text)
        for text in texts:
            assert text in r.text, (path, text)


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ('{{ _("100%% sure") }}', "100% sure"),
        ("{% trans %}100% sure{% endtrans %}", "100% sure"),
        ('{% trans v="<i>" %}{{ v }} is 100% escaped{% endtrans %}', "&lt;i&gt; is 100% escaped"),
        ('{{ _("%(v)s, escaped", v="<i>") }}', "&lt;i&gt;, escaped"),
        ("{% trans count=1 %}{{ count }} file{% pluralize %}{{ count }} files{% endtrans %}", "1 file"),
        ("{% trans count=2 %}{{ count }} file{% pluralize %}{{ count }} files{% endtrans %}", "2 files"),
        ('{{ _("Flags") }} {{ _("Sign out") }}', "Flags Abmelden"),
    ],
)
def test_the_templates_gettext_is_new_style_and_escapes_what_it_fills_in(source, shown):
    """Ours are called directly, not through Jinja2's wrappers: they must behave as those do."""
    environment = Environment(autoescape=True)
    install(environment)
    assert environment.from_string(source).render(i18n=Catalogs().translations("de")) == shown
