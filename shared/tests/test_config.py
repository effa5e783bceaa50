"""Settings from the environment: Cloud Foundry bindings, local variables, one-line errors."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from aerie.config import ConfigError, RedisSettings, Settings, redis_url_from_env

ISSUER = "http://issuer.test"


def vcap(**labels: list[dict[str, Any]]) -> str:
    return json.dumps({label.replace("_", "-"): bindings for label, bindings in labels.items()})


def binding(name: str, credentials: dict[str, Any], tags: list[str] | None = None, label: str = "p-redis") -> dict:
    return {"name": name, "label": label, "tags": tags if tags is not None else [], "credentials": credentials}


def base_env(**extra: str) -> dict[str, str]:
    return {"AERIE_ISSUER": ISSUER, "REDIS_URL": "redis://localhost:6379/0", **extra}


def config_error(fn: Any, *args: Any) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    message = str(info.value)
    assert message, "a ConfigError must say what is wrong"
    assert "\n" not in message, f"not one line: {message!r}"
    return message


# --- Redis bindings -------------------------------------------------------------------------


def test_p_redis_binding_with_host_port_password() -> None:
    services = vcap(
        p_redis=[binding("cache", {"host": "10.0.0.5", "port": 6380, "password": "s3cret"}, tags=["pivotal", "redis"])]
    )
    assert redis_url_from_env({"VCAP_SERVICES": services}) == "redis://:s3cret@10.0.0.5:6380/0"


def test_p_redis_binding_without_password_or_port() -> None:
    services = vcap(p_redis=[binding("cache", {"host": "10.0.0.5"}, tags=["pivotal", "redis"])])
    assert redis_url_from_env({"VCAP_SERVICES": services}) == "redis://10.0.0.5:6379/0"


def test_p_dot_redis_binding_with_tls_port_uses_rediss() -> None:
    creds = {"host": "redis.service.internal", "port": 6379, "tls_port": 16379, "password": "pw"}
    bound = binding("cache", creds, tags=["redis", "pivotal", "on-demand"], label="p.redis")
    services = json.dumps({"p.redis": [bound]})
    url = redis_url_from_env({"VCAP_SERVICES": services})
    assert url == "rediss://:pw@redis.service.internal:16379/0"


def test_user_provided_binding_with_uri() -> None:
    bound = binding("my-redis", {"uri": "rediss://:pw@cache.example.com:6380/2"}, label="user-provided")
    services = json.dumps({"user-provided": [bound]})
    env = {"VCAP_SERVICES": services, "AERIE_REDIS_SERVICE": "my-redis"}
    assert redis_url_from_env(env) == "rediss://:pw@cache.example.com:6380/2"


def test_user_provided_uri_without_scheme_gets_redis_scheme() -> None:
    bound = binding("my-redis", {"uri": "cache.example.com:6380"}, tags=["redis"], label="user-provided")
    services = json.dumps({"user-provided": [bound]})
    assert redis_url_from_env({"VCAP_SERVICES": services}) == "redis://cache.example.com:6380"


def test_named_binding_wins_over_the_first_tagged_one() -> None:
    services = vcap(
        p_redis=[
            binding("sessions", {"host": "first.internal", "port": 6379}, tags=["redis"]),
            binding("aerie-redis", {"host": "second.internal", "port": 6379}, tags=["redis"]),
        ]
    )
    assert redis_url_from_env({"VCAP_SERVICES": services}) == "redis://first.internal:6379/0"
    named = {"VCAP_SERVICES": services, "AERIE_REDIS_SERVICE": "aerie-redis"}
    assert redis_url_from_env(named) == "redis://second.internal:6379/0"


def test_binding_found_by_tag_among_other_services() -> None:
    services = json.dumps(
        {
            "postgres": [binding("db", {"uri": "postgres://db.internal/app"}, tags=["postgres"], label="postgres")],
            "user-provided": [
                binding("kv", {"host": "kv.internal", "port": 7000}, tags=["cache", "redis"], label="user-provided")
            ],
        }
    )
    assert redis_url_from_env({"VCAP_SERVICES": services}) == "redis://kv.internal:7000/0"


def test_redis_url_fallback_without_vcap_services() -> None:
    assert redis_url_from_env({"REDIS_URL": "redis://127.0.0.1:7777/3"}) == "redis://127.0.0.1:7777/3"


def test_redis_url_fallback_when_vcap_services_has_no_redis() -> None:
    services = json.dumps({"postgres": [binding("db", {"uri": "postgres://db/app"}, tags=["postgres"], label="pg")]})
    env = {"VCAP_SERVICES": services, "REDIS_URL": "redis://127.0.0.1:7777/0"}
    assert redis_url_from_env(env) == "redis://127.0.0.1:7777/0"


def test_binding_wins_over_redis_url() -> None:
    services = vcap(p_redis=[binding("cache", {"host": "bound.internal", "port": 6379}, tags=["redis"])])
    env = {"VCAP_SERVICES": services, "REDIS_URL": "redis://127.0.0.1:7777/0"}
    assert redis_url_from_env(env) == "redis://bound.internal:6379/0"


def test_password_with_special_characters_is_url_quoted() -> None:
    password = "p@ss:w/rd#?%& x"
    services = vcap(
        p_redis=[binding("cache", {"host": "h.internal", "port": 6379, "password": password}, tags=["redis"])]
    )
    url = redis_url_from_env({"VCAP_SERVICES": services})
    parts = urlsplit(url)
    assert parts.hostname == "h.internal"
    assert parts.port == 6379
    assert parts.path == "/0"
    assert unquote(parts.password or "") == password
    for raw in "@:/#?& ":
        assert raw not in (parts.password or "")
    assert password not in RedisSettings(url=url).redacted_url()


# --- Settings -------------------------------------------------------------------------------


def test_settings_from_a_minimal_environment() -> None:
    s = Settings.from_env("demo", base_env())
    assert s.service == "demo"
    assert s.issuer == ISSUER
    assert s.audience == "aerie"
    assert s.port == 8080
    assert s.instance_index == 0
    assert s.redis.url == "redis://localhost:6379/0"
    assert s.jwks_url is None
    assert s.tenants_url is None


def test_settings_read_cloud_foundry_variables() -> None:
    services = vcap(
        p_redis=[binding("cache", {"host": "10.0.0.5", "port": 6379, "password": "pw"}, tags=["pivotal", "redis"])]
    )
    env = {
        "VCAP_SERVICES": services,
        "VCAP_APPLICATION": json.dumps({"instance_index": 1, "application_name": "aerie-demo"}),
        "CF_INSTANCE_INDEX": "3",
        "PORT": "61001",
        "AERIE_TENANTS_URL": "https://tenants.example.com/",
        "VERSION": "1.2.3",
        "AERIE_COMMIT": "abc123",
        "AERIE_LOG_LEVEL": "debug",
    }
    s = Settings.from_env("demo", env)
    assert s.redis.url == "redis://:pw@10.0.0.5:6379/0"
    assert s.instance_index == 3
    assert s.port == 61001
    assert s.issuer == "https://tenants.example.com"
    assert s.tenants_url == "https://tenants.example.com"
    assert s.jwks_url == "https://tenants.example.com/.well-known/jwks.json"
    assert (s.version, s.commit, s.log_level) == ("1.2.3", "abc123", "DEBUG")


def test_instance_index_from_vcap_application_when_cf_instance_index_is_absent() -> None:
    env = base_env(VCAP_APPLICATION=json.dumps({"instance_index": 2}))
    assert Settings.from_env("demo", env).instance_index == 2


def test_require_names_the_missing_variable() -> None:
    s = Settings.from_env("demo", base_env(AERIE_SIGNING_KEY="x"))
    assert s.require("AERIE_SIGNING_KEY") == "x"
    message = config_error(s.require, "AERIE_OTHER")
    assert "AERIE_OTHER" in message


# --- errors: one line naming the variable ----------------------------------------------------


@pytest.mark.parametrize("raw", ["{not json", '{"p-redis": [', "'single'"])
def test_malformed_vcap_services(raw: str) -> None:
    message = config_error(Settings.from_env, "demo", base_env(VCAP_SERVICES=raw))
    assert "VCAP_SERVICES" in message


def test_malformed_vcap_application() -> None:
    message = config_error(Settings.from_env, "demo", base_env(VCAP_APPLICATION="[1,"))
    assert "VCAP_APPLICATION" in message


def test_vcap_services_of_the_wrong_shape() -> None:
    message = config_error(redis_url_from_env, {"VCAP_SERVICES": '{"p-redis": {"name": "x"}}'})
    assert "VCAP_SERVICES" in message


def test_no_redis_binding_and_no_redis_url() -> None:
    services = json.dumps({"postgres": [binding("db", {"uri": "postgres://db/app"}, tags=["postgres"], label="pg")]})
    message = config_error(redis_url_from_env, {"VCAP_SERVICES": services})
    assert "VCAP_SERVICES" in message
    assert "redis" in message.lower()


def test_named_binding_missing_is_an_error_even_with_redis_url() -> None:
    services = vcap(p_redis=[binding("cache", {"host": "h", "port": 6379}, tags=["redis"])])
    env = {"VCAP_SERVICES": services, "AERIE_REDIS_SERVICE": "aerie-redis", "REDIS_URL": "redis://localhost/0"}
    message = config_error(redis_url_from_env, env)
    assert "VCAP_SERVICES" in message
    assert "aerie-redis" in message


def test_binding_without_credentials() -> None:
    services = vcap(p_redis=[{"name": "cache", "tags": ["redis"]}])
    message = config_error(redis_url_from_env, {"VCAP_SERVICES": services})
    assert "VCAP_SERVICES" in message
    assert "cache" in message


def test_binding_with_a_bad_port() -> None:
    services = vcap(p_redis=[binding("cache", {"host": "h", "port": "sixty"}, tags=["redis"])])
    message = config_error(redis_url_from_env, {"VCAP_SERVICES": services})
    assert "VCAP_SERVICES" in message
    assert "port" in message


def test_neither_vcap_services_nor_redis_url() -> None:
    message = config_error(redis_url_from_env, {})
    assert "REDIS_URL" in message


def test_redis_url_with_a_foreign_scheme() -> None:
    message = config_error(redis_url_from_env, {"REDIS_URL": "http://localhost:6379"})
    assert "REDIS_URL" in message


@pytest.mark.parametrize("port", ["abc", "", "0", "65536", "-5", "80.5"])
def test_bad_port(port: str) -> None:
    message = config_error(Settings.from_env, "demo", base_env(PORT=port))
    assert message.startswith("PORT ")


@pytest.mark.parametrize("index", ["first", "-1", "1.5"])
def test_bad_cf_instance_index(index: str) -> None:
    message = config_error(Settings.from_env, "demo", base_env(CF_INSTANCE_INDEX=index))
    assert "CF_INSTANCE_INDEX" in message


def test_missing_issuer() -> None:
    env = base_env()
    del env["AERIE_ISSUER"]
    message = config_error(Settings.from_env, "demo", env)
    assert "AERIE_ISSUER" in message


def test_tenants_url_that_is_not_http() -> None:
    message = config_error(Settings.from_env, "demo", base_env(AERIE_TENANTS_URL="tenants.internal:8080"))
    assert "AERIE_TENANTS_URL" in message


@pytest.mark.parametrize("name", ["AERIE_REDIS_CONNECT_TIMEOUT", "AERIE_REDIS_READ_TIMEOUT"])
@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_bad_redis_timeouts(name: str, value: str) -> None:
    message = config_error(Settings.from_env, "demo", base_env(**{name: value}))
    assert name in message


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_redis_timeouts_must_be_positive_and_finite(value: str) -> None:
    assert "AERIE_REDIS_READ_TIMEOUT" in config_error(
        Settings.from_env, "demo", base_env(AERIE_REDIS_READ_TIMEOUT=value)
    )


@pytest.mark.parametrize("value", ["verbose", "trace", "10", "info,debug"])
def test_an_unknown_log_level_is_a_configuration_error(value: str) -> None:
    message = config_error(Settings.from_env, "demo", base_env(AERIE_LOG_LEVEL=value))
    assert message == f"AERIE_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {value!r}"


@pytest.mark.parametrize(
    ("value", "level"), [("debug", "DEBUG"), (" Warning ", "WARNING"), ("warn", "WARNING"), ("", "INFO")]
)
def test_log_levels_are_read_as_logging_names_them(value: str, level: str) -> None:
    assert Settings.from_env("demo", base_env(AERIE_LOG_LEVEL=value)).log_level == level


# --- exit_on_config_error ----------------------------------------------------------------------

CONFIG_VARIABLES = (
    "VCAP_SERVICES",
    "VCAP_APPLICATION",
    "CF_INSTANCE_INDEX",
    "PORT",
    "REDIS_URL",
    "AERIE_ISSUER",
    "AERIE_TENANTS_URL",
    "AERIE_JWKS_URL",
    "AERIE_REDIS_SERVICE",
    "AERIE_LOG_LEVEL",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_exit_on_config_error_prints_one_line_and_builds_nothing(clean_env: pytest.MonkeyPatch, capsys) -> None:
    from aerie.app import exit_on_config_error

    clean_env.setenv("REDIS_URL", "redis://localhost:6379/0")  # the issuer is what is missing
    built: list[Settings] = []
    # No SystemExit: the WSGI module is left without a callable, so uWSGI's need-app stops
    # the instance instead of respawning workers that fail the same way.
    assert exit_on_config_error("demo", built.append) is None  # type: ignore[arg-type]
    assert built == []
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "AERIE_ISSUER" in lines[0]
    assert "demo" in lines[0]
    assert "Traceback" not in err


def test_exit_on_config_error_reports_a_config_error_raised_while_building(
    clean_env: pytest.MonkeyPatch, capsys
) -> None:
    import aerie.app

    clean_env.setenv("REDIS_URL", "redis://localhost:6379/0")
    clean_env.setenv("AERIE_ISSUER", ISSUER)
    clean_env.setattr(aerie.app, "configure_logging", lambda *a, **k: None)

    def build(settings: Settings) -> Any:
        return settings.require("AERIE_SIGNING_KEY")

    assert aerie.app.exit_on_config_error("demo", build) is None
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "AERIE_SIGNING_KEY" in err


def test_exit_on_config_error_returns_the_built_app(clean_env: pytest.MonkeyPatch) -> None:
    import aerie.app

    clean_env.setenv("REDIS_URL", "redis://localhost:6379/0")
    clean_env.setenv("AERIE_ISSUER", ISSUER)
    clean_env.setenv("CF_INSTANCE_INDEX", "4")
    logging_calls: list[tuple[Any, ...]] = []
    clean_env.setattr(aerie.app, "configure_logging", lambda *a: logging_calls.append(a))
    sentinel = object()
    seen: list[Settings] = []

    def build(settings: Settings) -> Any:
        seen.append(settings)
        return sentinel

    assert aerie.app.exit_on_config_error("demo", build) is sentinel
    assert seen[0].service == "demo" and seen[0].instance_index == 4
    assert logging_calls == [("demo", 4, "INFO")]


# --- Secrets from a bound user-provided service -----------------------------------------------


def _secrets_binding(credentials: Any, name: str = "aerie-secrets-projects", tags: list[str] | None = None) -> str:
    redis_binding = {"name": "aerie-redis", "label": "p.redis", "tags": ["redis"],
                     "credentials": {"host": "10.0.0.5", "port": 6379, "password": "pw"}}  # fmt: skip
    secrets = {"name": name, "label": "user-provided", "tags": tags or [], "credentials": credentials}
    return json.dumps({"p.redis": [redis_binding], "user-provided": [secrets]})


def test_secrets_come_from_a_bound_user_provided_service_and_the_environment_wins():
    vcap = _secrets_binding(
        {"AERIE_CLIENT_SECRET": "from-binding", "AERIE_SIGNING_KEYS": {"keys": []}, "AERIE_CLIENT_ID": "svc-projects"}
    )
    s = Settings.from_env("demo", {"AERIE_ISSUER": ISSUER, "VCAP_SERVICES": vcap})
    assert (s.client_id, s.client_secret) == ("svc-projects", "from-binding")
    assert json.loads(s.extra["AERIE_SIGNING_KEYS"]) == {"keys": []}
    assert s.redis.url.startswith("redis://:pw@10.0.0.5:6379")
    both = Settings.from_env("demo", {"AERIE_ISSUER": ISSUER, "VCAP_SERVICES": vcap, "AERIE_CLIENT_SECRET": "env"})
    assert both.client_secret == "env"


def test_a_secrets_service_is_found_by_its_tag_too():
    vcap = _secrets_binding({"AERIE_CLIENT_SECRET": "tagged"}, name="vault-ish", tags=["aerie-secrets"])
    assert Settings.from_env("demo", {"AERIE_ISSUER": ISSUER, "VCAP_SERVICES": vcap}).client_secret == "tagged"


def test_a_secrets_service_holding_something_else_is_one_configuration_error():
    vcap = _secrets_binding({"AERIE_CLIENT_SECRET": "x", "password": "y"})
    message = config_error(Settings.from_env, "demo", {"AERIE_ISSUER": ISSUER, "VCAP_SERVICES": vcap})
    assert "aerie-secrets-projects" in message and "'password'" in message
