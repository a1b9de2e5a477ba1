"""Configuration, the console entry point, health, and crash handling."""

from __future__ import annotations

import pytest
from aether_testkit import ADMIN_KEY, ask, sample
from aetherlink.__main__ import main
from aetherlink.config import ConfigError, Settings


GOOD_KEY = "admin-key-0123456789-abcdef"


def test_settings_defaults():
    s = Settings.from_env({"API_ADMIN_KEY": GOOD_KEY})
    assert (s.listen_host, s.port, s.db_path) == ("0.0.0.0", 8000, "./aetherlink.db")
    assert (s.cache_ttl_seconds, s.cache_max_entries, s.max_body_bytes) == (300.0, 1024, 65536)


def test_settings_from_env_values():
    s = Settings.from_env({
        "API_ADMIN_KEY": GOOD_KEY, "AETHER_LISTEN_HOST": "127.0.0.1", "AETHER_PORT": "9000",
        "AETHER_DB_PATH": "/tmp/x.db", "AETHER_CACHE_TTL_SECONDS": "2.5", "AETHER_CACHE_MAX_ENTRIES": "7",
        "AETHER_MAX_BODY_BYTES": "4096", "AETHER_LOG_LEVEL": "DEBUG",
    })
    assert (s.listen_host, s.port, s.db_path, s.cache_ttl_seconds, s.cache_max_entries,
            s.max_body_bytes, s.log_level) == ("127.0.0.1", 9000, "/tmp/x.db", 2.5, 7, 4096, "debug")


@pytest.mark.parametrize(
    "env, mentions",
    [
        ({}, "API_ADMIN_KEY"),
        ({"API_ADMIN_KEY": ""}, "API_ADMIN_KEY"),
        ({"API_ADMIN_KEY": "   "}, "API_ADMIN_KEY"),
        ({"API_ADMIN_KEY": GOOD_KEY, "AETHER_PORT": "http"}, "AETHER_PORT"),
        ({"API_ADMIN_KEY": GOOD_KEY, "AETHER_PORT": "70000"}, "AETHER_PORT"),
        ({"API_ADMIN_KEY": GOOD_KEY, "AETHER_CACHE_TTL_SECONDS": "-1"}, "AETHER_CACHE_TTL_SECONDS"),
        ({"API_ADMIN_KEY": GOOD_KEY, "AETHER_CACHE_TTL_SECONDS": "nan"}, "AETHER_CACHE_TTL_SECONDS"),
        ({"API_ADMIN_KEY": GOOD_KEY, "AETHER_CACHE_MAX_ENTRIES": "many"}, "AETHER_CACHE_MAX_ENTRIES"),
        ({"API_ADMIN_KEY": GOOD_KEY, "AETHER_MAX_BODY_BYTES": "10"}, "AETHER_MAX_BODY_BYTES"),
        ({"API_ADMIN_KEY": GOOD_KEY, "AETHER_LOG_LEVEL": "loud"}, "AETHER_LOG_LEVEL"),
    ],
)
def test_settings_errors(env, mentions):
    with pytest.raises(ConfigError, match=mentions):
        Settings.from_env(env)


def test_settings_repr_hides_admin_key():
    s = Settings(admin_key="super-secret-value")
    assert "super-secret-value" not in repr(s) and "super-secret-value" not in str(s)


def test_main_refuses_to_start_without_admin_key(monkeypatch, capsys):
    monkeypatch.delenv("API_ADMIN_KEY", raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "API_ADMIN_KEY" in err and "refusing to start" in err


def test_main_check_mode(monkeypatch, capsys, db_path):
    monkeypatch.setenv("API_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("AETHER_DB_PATH", db_path)
    assert main(["--check"]) == 0
    out = capsys.readouterr().out
    assert "configuration ok" in out and ADMIN_KEY not in out


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["db"] == "ok"


def test_healthz_reports_database_failure(client):
    client.app.state.service.storage.close()
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json() == {"status": "error", "db": "unavailable"}


def test_unexpected_error_is_json_500_without_traceback(client, tenant, monkeypatch):
    service = client.app.state.service

    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service, "answer", boom)
    r = ask(client, tenant, "warranty")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert "secret internal detail" not in r.text
    assert sample(client, "aether_http_requests_total", tenant="acme-corp", route="query", code="500") == 1


def test_settings_defaults_for_new_limits_and_metrics_token():
    s = Settings.from_env({"API_ADMIN_KEY": GOOD_KEY})
    assert (s.max_header_bytes, s.max_headers, s.metrics_token) == (16384, 100, None)
    s = Settings.from_env({"API_ADMIN_KEY": GOOD_KEY, "AETHER_MAX_HEADER_BYTES": "8192", "AETHER_MAX_HEADERS": "50",
                           "AETHER_METRICS_TOKEN": "scrape-token-0123456789"})
    assert (s.max_header_bytes, s.max_headers, s.metrics_token) == (8192, 50, "scrape-token-0123456789")
    assert Settings.from_env({"API_ADMIN_KEY": GOOD_KEY, "AETHER_METRICS_TOKEN": ""}).metrics_token is None


BAD_SECRETS = {
    "trailing-space": GOOD_KEY + " ",
    "inner-space": "admin key 0123456789abcdef",
    "leading-tab": "\t" + GOOD_KEY,
    "trailing-newline": GOOD_KEY + "\n",
    "non-ascii": "ädmin-key-0123456789-abcdef",
    "control": "admin-key-0123\x01456789-abcdef",
    "too-short": "short-key-123",
    "too-long": "k" * 257,
}


@pytest.mark.parametrize("value", list(BAD_SECRETS.values()), ids=list(BAD_SECRETS))
@pytest.mark.parametrize("variable", ["API_ADMIN_KEY", "AETHER_METRICS_TOKEN"])
def test_unusable_admin_key_or_metrics_token_is_refused(variable, value):
    env = {"API_ADMIN_KEY": GOOD_KEY, variable: value}
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(env)
    message = str(exc.value)
    assert variable in message and "printable ASCII" in message and "16" in message
    assert value.strip() not in message and value not in message


def test_metrics_token_must_differ_from_admin_key():
    with pytest.raises(ConfigError, match="AETHER_METRICS_TOKEN"):
        Settings.from_env({"API_ADMIN_KEY": GOOD_KEY, "AETHER_METRICS_TOKEN": GOOD_KEY})


@pytest.mark.parametrize("name, value", [
    ("AETHER_MAX_HEADER_BYTES", "100"), ("AETHER_MAX_HEADER_BYTES", "lots"), ("AETHER_MAX_HEADER_BYTES", "9999999"),
    ("AETHER_MAX_HEADERS", "0"), ("AETHER_MAX_HEADERS", "100000"),
])
def test_header_limit_settings_are_validated(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"API_ADMIN_KEY": GOOD_KEY, name: value})


@pytest.mark.parametrize("variable, value", [
    ("API_ADMIN_KEY", GOOD_KEY + " "), ("API_ADMIN_KEY", "tiny-key"), ("API_ADMIN_KEY", "ädmin-key-0123456789-abc"),
    ("AETHER_METRICS_TOKEN", "metrics token with spaces 0123"),
])
def test_check_mode_refuses_unusable_secrets(monkeypatch, capsys, db_path, variable, value):
    monkeypatch.setenv("API_ADMIN_KEY", GOOD_KEY)
    monkeypatch.setenv("AETHER_DB_PATH", db_path)
    monkeypatch.setenv(variable, value)
    assert main(["--check"]) == 2
    out, err = capsys.readouterr()
    assert "configuration ok" not in out
    assert variable in err and value.strip() not in err + out


def test_check_mode_masks_the_metrics_token(monkeypatch, capsys, db_path):
    monkeypatch.setenv("API_ADMIN_KEY", GOOD_KEY)
    monkeypatch.setenv("AETHER_DB_PATH", db_path)
    monkeypatch.setenv("AETHER_METRICS_TOKEN", "scrape-token-0123456789")
    assert main(["--check"]) == 0
    out = capsys.readouterr().out
    assert "configuration ok" in out and "scrape-token-0123456789" not in out and GOOD_KEY not in out
    assert "metrics_token=***" in out and "max_header_bytes=16384" in out
