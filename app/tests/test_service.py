"""Configuration, the console entry point, health, and crash handling."""

from __future__ import annotations

import pytest
from aether_testkit import ADMIN_KEY, ask, sample
from aetherlink.__main__ import main
from aetherlink.config import ConfigError, Settings


def test_settings_defaults():
    s = Settings.from_env({"API_ADMIN_KEY": "k"})
    assert (s.listen_host, s.port, s.db_path) == ("0.0.0.0", 8000, "./aetherlink.db")
    assert (s.cache_ttl_seconds, s.cache_max_entries, s.max_body_bytes) == (300.0, 1024, 65536)


def test_settings_from_env_values():
    s = Settings.from_env({
        "API_ADMIN_KEY": "k", "AETHER_LISTEN_HOST": "127.0.0.1", "AETHER_PORT": "9000",
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
        ({"API_ADMIN_KEY": "k", "AETHER_PORT": "http"}, "AETHER_PORT"),
        ({"API_ADMIN_KEY": "k", "AETHER_PORT": "70000"}, "AETHER_PORT"),
        ({"API_ADMIN_KEY": "k", "AETHER_CACHE_TTL_SECONDS": "-1"}, "AETHER_CACHE_TTL_SECONDS"),
        ({"API_ADMIN_KEY": "k", "AETHER_CACHE_TTL_SECONDS": "nan"}, "AETHER_CACHE_TTL_SECONDS"),
        ({"API_ADMIN_KEY": "k", "AETHER_CACHE_MAX_ENTRIES": "many"}, "AETHER_CACHE_MAX_ENTRIES"),
        ({"API_ADMIN_KEY": "k", "AETHER_MAX_BODY_BYTES": "10"}, "AETHER_MAX_BODY_BYTES"),
        ({"API_ADMIN_KEY": "k", "AETHER_LOG_LEVEL": "loud"}, "AETHER_LOG_LEVEL"),
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
