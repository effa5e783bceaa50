"""Problem documents in the caller's language (docs/api.md, "people"), and the catalogs behind them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest
from babel.messages.pofile import read_po

from aerie import errors
from aerie.app import Infrastructure, create_service_app
from aerie.auth.tokens import StaticKeySource
from aerie.config import Settings
from aerie.endpoints import endpoint
from aerie.i18n import Catalogs, Languages, Message, msg, preferred_languages, tenant_language_of
from aerie.i18n.catalogs import LOCALE_DIR
from aerie.i18n.extract import code_catalog
from aerie.testing.http import assert_problem
from aerie.testing.keys import TestKey, make_claims
from aerie.testing.tenants import FakeTenants

ISSUER = "http://issuer.test"
TENANT = "ten_01JTENANT00000000000000000"


class SlugResource:
    @endpoint(
        "Takes a slug",
        scopes=("projects:write",),
        tenant=True,
        body={"slug": {"type": "string", "required": True, "maxlength": 8}},
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise errors.conflict(msg("This Idempotency-Key was used with a different request."))


class PlainResource:
    @endpoint("Raises an English detail that is no message", scopes=("projects:read",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise errors.conflict("Plain English, sent as it is.")


class OkResource:
    @endpoint("Answers", scopes=("projects:read",), tenant=True)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"ok": True}


@pytest.fixture(scope="module")
def key() -> TestKey:
    return TestKey("k1")


@pytest.fixture
def tenants() -> FakeTenants:
    return FakeTenants()


@pytest.fixture
def infra(redis_url: str, key: TestKey) -> Iterator[Infrastructure]:
    env = {"REDIS_URL": redis_url, "AERIE_ISSUER": ISSUER, "AERIE_JWKS_URL": "http://unused.test/jwks"}
    infra = Infrastructure.from_settings(
        Settings.from_env("demo", env), keys=StaticKeySource({"keys": [key.public_jwk()]})
    )
    yield infra
    infra.close()


@pytest.fixture
def client(infra: Infrastructure, tenants: FakeTenants) -> falcon.testing.TestClient:
    app = create_service_app(
        infra,
        [("/slugs", SlugResource()), ("/plain", PlainResource()), ("/ok", OkResource())],
        tenant_language=tenant_language_of(tenants),
    )
    return falcon.testing.TestClient(app)


def client_token(key: TestKey, **claims: Any) -> str:
    return key.sign(make_claims(ISSUER, **{"tenant_id": TENANT, "scope": "projects:read projects:write", **claims}))


def person_token(key: TestKey, language: str | None) -> str:
    claims: dict[str, Any] = {
        "sub": "usr_01JALICE0000000000000000000",
        "client_id": "cli_app",
        "act": {"sub": "cli_app"},
        "tenant_id": TENANT,
        "scope": "projects:read projects:write",
        "role": "developer",
        "email": "alice@example.com",
        "member_version": 1,
    }
    if language is not None:
        claims["language"] = language
    return key.sign(make_claims(ISSUER, **claims))


def headers(token: str | None = None, language: str | None = None) -> dict[str, str]:
    out = {}
    if token:
        out["Authorization"] = f"Bearer {token}"
    if language is not None:
        out["Accept-Language"] = language
    return out


# -- negotiation ------------------------------------------------------------------------------


class Caller:
    def __init__(self, language: str | None = None, tenant_id: str | None = TENANT) -> None:
        self.language = language
        self.tenant_id = tenant_id


def languages(tenant_language: str | None = None) -> Languages:
    return Languages(Catalogs(), (lambda _tid: tenant_language) if tenant_language else None)


def test_shipped_languages_are_english_and_the_catalog_folders() -> None:
    assert Catalogs().languages[0] == "en"
    assert "de" in Catalogs().languages


def test_adding_a_language_is_adding_a_catalog(tmp_path: Path) -> None:
    assert Catalogs(tmp_path).languages == ("en",)
    folder = tmp_path / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "aerie.po").write_text('msgid "Not found"\nmsgstr "Introuvable"\n', encoding="utf-8")
    catalogs = Catalogs(tmp_path)
    assert catalogs.languages == ("en", "fr")
    assert Languages(catalogs).from_header("fr-CA") == "fr"
    gettext = catalogs.gettext("fr")
    assert gettext is not None
    assert msg("Not found").translate(gettext) == "Introuvable"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-CH,en;q=0.5", ["de-CH", "en"]),
        ("en;q=0.2, de;q=0.9, fr", ["fr", "de", "en"]),
        ("de;q=0, en", ["en"]),
        ("*", ["*"]),
        ("de;q=abc, ; , en;q=2, toolonglanguage-tag, de_DE, it", ["it"]),
    ],
)
def test_accept_language_is_ordered_by_q_values(header: str, expected: list[str]) -> None:
    assert preferred_languages(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de", "de"),
        ("de-CH", "de"),
        ("DE-at", "de"),
        ("fr, de;q=0.8", "de"),
        ("en;q=0.5, de;q=0.9", "de"),
        ("de;q=0, en", "en"),
        ("fr, ja", None),
        ("*", None),
        ("fr, *;q=0.5, de;q=0.1", None),
    ],
)
def test_the_header_picks_the_best_shipped_language(header: str, expected: str | None) -> None:
    assert languages().from_header(header) == expected


def test_the_person_beats_the_header_which_beats_the_tenant() -> None:
    negotiate = languages(tenant_language="de").negotiate
    assert negotiate(Caller(language="de"), "en") == ("de", False)
    assert negotiate(Caller(language="en"), "de") == ("en", False)
    assert negotiate(Caller(), "en") == ("en", True)
    assert negotiate(Caller(), None) == ("de", True)
    assert negotiate(Caller(), "fr") == ("de", True)
    assert negotiate(Caller(language="fr"), "ja") == ("de", True)
    assert negotiate(Caller(), None, ask_tenant=False) == ("en", True)


def test_a_tenant_lookup_that_fails_is_english() -> None:
    def broken(_tenant_id: str) -> str | None:
        raise ConnectionError("redis away")

    assert Languages(Catalogs(), broken).negotiate(Caller(), None) == ("en", True)


def test_unsupported_everything_is_english() -> None:
    assert languages(tenant_language="fr").negotiate(Caller(language="ja"), "it, es;q=0.5") == ("en", True)
    assert languages().negotiate(None, None) == ("en", True)
    assert languages().negotiate(Caller(tenant_id=None), None) == ("en", True)


def test_a_tenant_that_cannot_be_looked_up_has_no_language() -> None:
    tenants = FakeTenants()
    tenants.unreachable(TENANT)
    assert tenant_language_of(tenants)(TENANT) is None
    tenants.missing.add("ten_gone")
    assert tenant_language_of(tenants)("ten_gone") is None
    assert tenant_language_of(FakeTenants())(TENANT) == "en"


def write_catalog(directory: Path, language: str, text: str) -> None:
    folder = directory / language / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "aerie.po").write_text(text, encoding="utf-8")


FRENCH_PLURALS = """
msgid ""
msgstr ""
"Plural-Forms: nplurals=2; plural=(n > 1);\\n"

msgid "Not found"
msgstr "Introuvable"

msgid "%(n)s entry"
msgid_plural "%(n)s entries"
msgstr[0] "%(n)s entrée"
msgstr[1] "%(n)s entrées"

msgid "%(n)s file"
msgid_plural "%(n)s files"
msgstr[0] "%(n)s fichier"
msgstr[1] ""
"""


def test_translations_give_gettext_and_ngettext_by_the_catalogs_plural_rule(tmp_path: Path) -> None:
    write_catalog(tmp_path, "fr", FRENCH_PLURALS)
    catalogs = Catalogs(tmp_path)
    french = catalogs.translations("fr")
    assert french is catalogs.translations("fr"), "made once a language"
    assert french.language == "fr" and french.gettext("Not found") == "Introuvable"
    assert french.gettext("Not translated") == "Not translated"
    # French says 0 in the singular, English in the plural: the catalog's rule decides.
    assert french.ngettext("%(n)s entry", "%(n)s entries", 0) == "%(n)s entrée"
    assert french.ngettext("%(n)s entry", "%(n)s entries", 2) == "%(n)s entrées"
    # A plural with a form left empty is untranslated: English, not half French.
    assert french.ngettext("%(n)s file", "%(n)s files", 1) == "%(n)s file"
    assert french.ngettext("%(n)s file", "%(n)s files", 2) == "%(n)s files"
    english = catalogs.translations("en")
    assert english.ngettext("%(n)s entry", "%(n)s entries", 0) == "%(n)s entries"
    assert english.ngettext("%(n)s entry", "%(n)s entries", 1) == "%(n)s entry"
    assert english.gettext("Not found") == "Not found"


def test_the_shipped_german_has_its_plural_forms() -> None:
    german = Catalogs().translations("de")
    singular, plural = (
        "The chain is intact: %(entries)s entry verified.",
        "The chain is intact: %(entries)s entries verified.",
    )
    assert german.ngettext(singular, plural, 1) == "Die Kette ist intakt: %(entries)s Eintrag geprüft."
    assert german.ngettext(singular, plural, 3) == "Die Kette ist intakt: %(entries)s Einträge geprüft."


# -- messages ---------------------------------------------------------------------------------


def test_a_message_is_its_english_text() -> None:
    message = msg("Bodies are limited to %(limit)s bytes.", limit=10)
    assert message == "Bodies are limited to 10 bytes."
    assert isinstance(message, str) and isinstance(message, Message)
    assert message.msgid == "Bodies are limited to %(limit)s bytes."
    assert msg("100%% sure") == "100%% sure", "without params the text is not %-formatted"


def test_a_translation_that_does_not_fit_its_params_falls_back_to_english() -> None:
    message = msg("Bodies are limited to %(limit)s bytes.", limit=10)
    assert message.translate(lambda _msgid: "Höchstens %(grenze)s Bytes.") == "Bodies are limited to 10 bytes."
    assert message.translate(lambda _msgid: "Höchstens %(limit)s Bytes.") == "Höchstens 10 Bytes."


# -- the catalogs -----------------------------------------------------------------------------


def shipped_catalogs() -> list[Path]:
    return sorted(LOCALE_DIR.glob("*/LC_MESSAGES/aerie.po"))


def test_german_ships() -> None:
    assert LOCALE_DIR / "de" / "LC_MESSAGES" / "aerie.po" in shipped_catalogs()


@pytest.mark.parametrize("path", shipped_catalogs(), ids=lambda p: p.parent.parent.name)
def test_every_message_in_the_code_is_translated_in_every_catalog(path: Path) -> None:
    used = {message.id for message in code_catalog() if message.id}
    assert used, "the extractor found the code's messages"
    with path.open("rb") as handle:
        catalog = read_po(handle)
    # A plural is translated when every one of its forms is (a tuple of empty strings is truthy).
    translated = {m.id for m in catalog if m.id and m.string and all(m.string) and not m.fuzzy}
    missing = sorted(used - translated, key=str)
    assert not missing, f"{path} lacks translations for: {missing}"
    # Babel's checks: the same python-format placeholders as the msgid.
    problems = [(m.id, [str(e) for e in errs]) for m, errs in catalog.check()]
    assert not problems


def test_the_console_templates_are_extracted_with_their_plurals() -> None:
    """Jinja2's extractor reads the templates: their text, ``{% trans %}`` blocks trimmed, plurals."""
    found = {m.id: m for m in code_catalog()}
    assert any(path.endswith(".html") for m in found.values() for path, _ in m.locations)
    assert "console/templates/flags.html" in {path for path, _ in found["Flag definitions, by key"].locations}
    plural = ("The chain is intact: %(entries)s entry verified.", "The chain is intact: %(entries)s entries verified.")
    assert plural in found
    # Trimmed as the console renders them: no msgid keeps a template's line breaks or indentation.
    assert not [k for k in found if isinstance(k, str) and (k != k.strip() or "\n" in k)]


def test_the_template_holds_every_message_in_the_code() -> None:
    with (LOCALE_DIR / "aerie.pot").open("rb") as handle:
        template = {m.id for m in read_po(handle) if m.id}
    used = {message.id for message in code_catalog() if message.id}
    assert not sorted(used - template), "run python -m aerie.i18n.extract"


# -- over HTTP --------------------------------------------------------------------------------


def test_a_404_in_german_by_accept_language(client) -> None:
    resp = client.simulate_get("/nowhere", headers=headers(language="de-CH, en;q=0.5"))
    body = assert_problem(resp, 404, "not_found")
    assert body["title"] == "Nicht gefunden"
    assert body["detail"] == "Nicht gefunden"
    assert resp.headers["Content-Language"] == "de"
    assert "Accept-Language" in resp.headers["Vary"]


def test_a_422_in_german_by_accept_language(client, key: TestKey) -> None:
    resp = client.simulate_post(
        "/slugs", json={"slug": "far-too-long", "extra": 1}, headers=headers(client_token(key), "de")
    )
    body = assert_problem(resp, 422, "validation_error")
    assert body["title"] == "Validierung fehlgeschlagen"
    assert body["detail"] == "Die Anfrage enthält ungültige Felder (body)."
    assert {e["field"] for e in body["errors"]} == {"slug", "extra"}
    assert resp.headers["Content-Language"] == "de"


def test_a_detail_with_placeholders_in_german(client, key: TestKey) -> None:
    resp = client.simulate_get("/plain", headers=headers(client_token(key, scope="flags:read"), "de"))
    body = assert_problem(resp, 403, "insufficient_scope")
    assert body["title"] == "Unzureichender Scope"
    assert body["detail"] == "Diese Route braucht einen dieser Scopes: projects:read."


def test_a_persons_own_language_beats_the_header(client, key: TestKey) -> None:
    resp = client.simulate_post("/slugs", json={"slug": "ok"}, headers=headers(person_token(key, "de"), "en"))
    body = assert_problem(resp, 409, "conflict")
    assert body["title"] == "Konflikt"
    assert body["detail"] == "Dieser Idempotency-Key wurde mit einer anderen Anfrage verwendet."
    assert resp.headers["Content-Language"] == "de"
    assert "Vary" not in resp.headers
    me = client.simulate_get("/v1/me", headers=headers(person_token(key, "de"), "en"))
    assert me.json["language"] == "de"


def test_the_tenants_language_when_the_caller_states_none(client, key: TestKey, tenants: FakeTenants) -> None:
    tenants.set(TENANT, language="de")
    resp = client.simulate_post("/slugs", json={"slug": "ok"}, headers=headers(client_token(key)))
    assert assert_problem(resp, 409, "conflict")["title"] == "Konflikt"
    assert resp.headers["Content-Language"] == "de"
    assert client.simulate_get("/v1/me", headers=headers(client_token(key))).json["language"] == "de"
    # A person without a language of their own, and a header that matches nothing shipped.
    resp = client.simulate_post("/slugs", json={"slug": "ok"}, headers=headers(person_token(key, None), "ja"))
    assert resp.headers["Content-Language"] == "de"


def test_a_plain_english_detail_is_sent_as_it_is(client, key: TestKey) -> None:
    resp = client.simulate_get("/plain", headers=headers(client_token(key), "de"))
    body = assert_problem(resp, 409, "conflict")
    assert body["title"] == "Konflikt"
    assert body["detail"] == "Plain English, sent as it is."


def test_english_is_unchanged_and_says_so(client, key: TestKey) -> None:
    resp = client.simulate_post("/slugs", json={"slug": "ok"}, headers=headers(client_token(key)))
    assert resp.headers["Content-Language"] == "en"
    assert resp.headers["Vary"] == "Accept-Language"
    body = assert_problem(resp, 409, "conflict")
    assert (body["title"], body["detail"]) == ("Conflict", "This Idempotency-Key was used with a different request.")
    assert b'"title": "Conflict"' in resp.content


def test_a_success_does_not_look_the_tenant_up(client, key: TestKey, tenants: FakeTenants) -> None:
    before = tenants.calls
    resp = client.simulate_post("/slugs", json={"slug": "far-too-long"}, headers=headers(client_token(key), "de"))
    assert resp.status_code == 422, "an error whose language the header settles asks no tenant"
    assert tenants.calls == before
    resp = client.simulate_get("/ok", headers=headers(client_token(key)))
    assert resp.status_code == 200
    assert "Content-Language" not in resp.headers
    assert tenants.calls == before


def test_a_5xx_does_not_wait_on_the_tenants_service(infra: Infrastructure, key: TestKey) -> None:
    asked: list[str] = []

    def tenant_language(tenant_id: str) -> str | None:
        asked.append(tenant_id)
        return "de"

    class Away:
        @endpoint("Always away", scopes=("projects:read",))
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            raise errors.unavailable(msg("Live events are not available right now; reconnect shortly."))

    app = create_service_app(infra, [("/away", Away())], tenant_language=tenant_language)
    resp = falcon.testing.TestClient(app).simulate_get("/away", headers=headers(client_token(key)))
    assert assert_problem(resp, 503, "unavailable")["title"] == "Service unavailable"
    assert asked == []
