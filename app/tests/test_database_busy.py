"""A busy database (another process holds SQLite's write lock): 503 + Retry-After, and memory and
the database never disagree (the database is written first, memory changed only after a commit)."""

from __future__ import annotations

import hashlib

import pytest
from aether_testkit import ADMIN, CORPUS, aether_series, ask, create_tenant, db_write_locked, ingest

OLD_KEY = "lock-co-old-key-0000000001"
NEW_KEY = "lock-co-new-key-0000000002"


@pytest.fixture
def busy_client(make_client, monkeypatch):
    """A client whose service gives up on a locked database after 0.3 s (not the default)."""
    monkeypatch.setattr("aetherlink.storage.BUSY_TIMEOUT_MS", 300, raising=False)
    return make_client()


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _db_tenant(conn, name: str):
    return conn.execute("SELECT api_key_sha256, vip FROM tenants WHERE name = ?", (name,)).fetchone()


def assert_busy(r) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "database_busy"
    assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1


def test_key_rotation_on_busy_database_changes_nothing_then_succeeds(busy_client, make_client, db_path):
    client = busy_client
    create_tenant(client, "lock-co", api_key=OLD_KEY)
    update = {"name": "lock-co", "api_key": NEW_KEY, "vip": True}
    with db_write_locked(db_path) as lock:
        assert_busy(client.post("/v1/admin/tenants", json=update, headers=ADMIN))
        # memory: still the old key and flag
        assert ask(client, OLD_KEY, "warranty").status_code == 200
        assert ask(client, NEW_KEY, "warranty").status_code == 401
        assert client.get("/v1/admin/tenants/lock-co", headers=ADMIN).json()["vip"] is False
        # database: the old key and flag too
        assert _db_tenant(lock, "lock-co") == (_sha(OLD_KEY), 0)
    r = client.post("/v1/admin/tenants", json=update, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["changed"] is True and r.json()["changed_fields"] == ["vip", "api_key"]
    with db_write_locked(db_path) as lock:
        assert _db_tenant(lock, "lock-co") == (_sha(NEW_KEY), 1)
    assert ask(client, NEW_KEY, "warranty").status_code == 200
    assert ask(client, OLD_KEY, "warranty").status_code == 401
    restarted = make_client()
    assert ask(restarted, NEW_KEY, "warranty").status_code == 200
    assert ask(restarted, OLD_KEY, "warranty").status_code == 401
    assert restarted.get("/v1/admin/tenants/lock-co", headers=ADMIN).json()["vip"] is True


def test_create_and_ingest_on_busy_database(busy_client, db_path):
    client = busy_client
    create_tenant(client, "docs-co")
    with db_write_locked(db_path) as lock:
        assert_busy(client.post("/v1/admin/tenants", json={"name": "new-co"}, headers=ADMIN))
        r = client.post("/v1/admin/tenants/docs-co/documents", json=CORPUS, headers=ADMIN)
        assert_busy(r)
        assert client.get("/v1/admin/tenants/new-co", headers=ADMIN).status_code == 404
        assert client.get("/v1/admin/tenants/docs-co", headers=ADMIN).json()["documents"] == 0
        assert lock.execute("SELECT count(*) FROM tenants WHERE name = 'new-co'").fetchone() == (0,)
        assert lock.execute("SELECT count(*) FROM documents").fetchone() == (0,)
    assert client.post("/v1/admin/tenants", json={"name": "new-co"}, headers=ADMIN).status_code == 201
    assert ingest(client, "docs-co", CORPUS)["inserted"] == len(CORPUS)


def test_deletes_on_busy_database_change_nothing(busy_client, make_client, db_path):
    client = busy_client
    key = create_tenant(client, "gone-co")
    ingest(client, "gone-co", CORPUS)
    with db_write_locked(db_path):
        assert_busy(client.delete("/v1/admin/tenants/gone-co/documents/warranty", headers=ADMIN))
        assert_busy(client.delete("/v1/admin/tenants/gone-co", headers=ADMIN))
        assert ask(client, key, "warranty").json()["sources"][0] == "warranty"
    restarted = make_client()
    assert ask(restarted, key, "warranty").json()["sources"][0] == "warranty"
    assert restarted.get("/v1/admin/tenants/gone-co", headers=ADMIN).json()["documents"] == len(CORPUS)


def test_busy_answers_create_no_series(busy_client, db_path):
    client = busy_client
    create_tenant(client, "series-co")
    ingest(client, "series-co", CORPUS)
    before = aether_series(client)
    with db_write_locked(db_path):
        assert_busy(client.post("/v1/admin/tenants", json={"name": "series-co", "vip": True}, headers=ADMIN))
        assert_busy(client.post("/v1/admin/tenants/series-co/documents", json=[{"id": "n", "text": "new"}],
                                headers=ADMIN))
        assert_busy(client.delete("/v1/admin/tenants/series-co/documents/reset", headers=ADMIN))
        assert_busy(client.delete("/v1/admin/tenants/series-co", headers=ADMIN))
    assert aether_series(client) == before
