"""Admin and tenant authentication, key handling, idempotent tenant provisioning."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from aether_testkit import ADMIN, ADMIN_KEY, ask, create_tenant


@pytest.mark.parametrize(
    "headers, code",
    [
        ({}, "missing_admin_key"),
        ({"Authorization": "Bearer wrong-key"}, "invalid_admin_key"),
        ({"X-Admin-Key": "wrong-key"}, "invalid_admin_key"),
        ({"Authorization": f"Basic {ADMIN_KEY}"}, "unsupported_auth_scheme"),
        ({"Authorization": "Bearer "}, "missing_admin_key"),
        ({"Authorization": f"Bearer {ADMIN_KEY}x"}, "invalid_admin_key"),
    ],
)
def test_admin_rejects_missing_or_wrong_key(client, headers, code):
    for method, path in (("GET", "/v1/admin/tenants"), ("GET", "/v1/admin/tenants/acme-corp"),
                         ("POST", "/v1/admin/tenants"), ("POST", "/v1/admin/tenants/acme-corp/documents")):
        r = client.request(method, path, headers=headers, json={"name": "acme-corp"})
        assert r.status_code == 401, (method, path)
        assert r.json()["error"]["code"] == code
        assert r.headers["www-authenticate"] == "Bearer"


def test_admin_accepts_bearer_and_x_admin_key(client):
    assert client.get("/v1/admin/tenants", headers=ADMIN).status_code == 200
    assert client.get("/v1/admin/tenants", headers={"X-Admin-Key": ADMIN_KEY}).status_code == 200
    assert client.get("/v1/admin/tenants", headers={"authorization": f"bearer {ADMIN_KEY}"}).status_code == 200


def test_tenant_key_is_not_an_admin_key(client, tenant):
    r = client.get("/v1/admin/tenants", headers={"Authorization": f"Bearer {tenant}"})
    assert r.status_code == 401


def test_query_rejects_missing_and_wrong_keys(client, tenant):
    r = client.post("/v1/query", json={"question": "warranty"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    r = ask(client, "alk_not-a-real-key-000000", "warranty")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = ask(client, ADMIN_KEY, "warranty")  # the admin key is no tenant key
    assert r.status_code == 401


def test_query_accepts_bearer_and_x_api_key(client, tenant):
    assert ask(client, tenant, "warranty").status_code == 200
    r = client.post("/v1/query", json={"question": "warranty"}, headers={"X-API-Key": tenant})
    assert r.status_code == 200


def test_auth_is_checked_before_body(client):
    r = client.post("/v1/query", content=b"{broken", headers={"Content-Type": "application/json"})
    assert r.status_code == 401


def test_keys_are_stored_hashed(client, db_path):
    key = create_tenant(client, "hash-check")
    supplied = "my-own-deployment-key-0001"
    create_tenant(client, "hash-check-2", api_key=supplied)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = dict(conn.execute("SELECT name, api_key_sha256 FROM tenants").fetchall())
    assert rows["hash-check"] == hashlib.sha256(key.encode()).hexdigest()
    assert rows["hash-check-2"] == hashlib.sha256(supplied.encode()).hexdigest()
    raw = b"".join(Path(p).read_bytes() for p in (db_path, db_path + "-wal") if os.path.exists(p))
    assert key.encode() not in raw and supplied.encode() not in raw and ADMIN_KEY.encode() not in raw


def test_generated_keys_are_unique_and_work(client):
    k1 = create_tenant(client, "gen-one")
    k2 = create_tenant(client, "gen-two")
    assert k1 != k2 and len(k1) >= 32
    assert ask(client, k1, "x").status_code == 200
    assert ask(client, k2, "x").status_code == 200


def test_supplied_key_makes_provisioning_idempotent(client):
    body = {"name": "acme-corp", "vip": False, "lowconf_threshold": 0.4, "rerank_default": True,
            "api_key": "acme-deploy-key-from-vault-01"}
    r = client.post("/v1/admin/tenants", json=body, headers=ADMIN)
    assert r.status_code == 201
    assert r.json()["created"] is True and r.json()["api_key"] == body["api_key"]
    assert r.headers["cache-control"] == "no-store"
    r = client.post("/v1/admin/tenants", json=body, headers=ADMIN)
    assert r.status_code == 200
    assert r.json() | {"tenant": None} == {"created": False, "changed": False, "changed_fields": [],
                                           "tenant": None}
    assert "api_key" not in r.json()
    r = client.post("/v1/admin/tenants", json=body | {"lowconf_threshold": 0.6, "vip": True}, headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["changed"] is True
    assert r.json()["changed_fields"] == ["vip", "lowconf_threshold"]
    assert r.json()["tenant"]["vip"] is True and r.json()["tenant"]["lowconf_threshold"] == 0.6
    assert ask(client, body["api_key"], "q").status_code == 200


def test_key_rotation(client):
    create_tenant(client, "rotor", api_key="rotor-key-number-one-000")
    r = client.post("/v1/admin/tenants", json={"name": "rotor", "api_key": "rotor-key-number-two-000"},
                    headers=ADMIN)
    assert r.status_code == 200 and r.json()["changed_fields"] == ["api_key"]
    assert ask(client, "rotor-key-number-one-000", "q").status_code == 401
    assert ask(client, "rotor-key-number-two-000", "q").status_code == 200


def test_update_without_key_keeps_key(client):
    key = create_tenant(client, "keeper")
    r = client.post("/v1/admin/tenants", json={"name": "keeper", "vip": True}, headers=ADMIN)
    assert r.status_code == 200 and "api_key" not in r.json()
    assert ask(client, key, "q").status_code == 200


def test_key_of_another_tenant_conflicts(client):
    create_tenant(client, "first-co", api_key="shared-key-0123456789")
    r = client.post("/v1/admin/tenants", json={"name": "second-co", "api_key": "shared-key-0123456789"},
                    headers=ADMIN)
    assert r.status_code == 409 and r.json()["error"]["code"] == "api_key_conflict"
    assert "first-co" not in r.text


def test_admin_key_cannot_be_a_tenant_key(client):
    r = client.post("/v1/admin/tenants", json={"name": "sneaky", "api_key": ADMIN_KEY}, headers=ADMIN)
    assert r.status_code == 422 and "api_key" in r.json()["error"]["message"]


def test_list_and_get_never_expose_keys(client):
    key = create_tenant(client, "secretive", api_key="secretive-key-0123456789")
    for path in ("/v1/admin/tenants", "/v1/admin/tenants/secretive"):
        r = client.get(path, headers=ADMIN)
        assert r.status_code == 200
        assert key not in r.text and "api_key" not in r.text
        assert hashlib.sha256(key.encode()).hexdigest() not in r.text
    tenants = client.get("/v1/admin/tenants", headers=ADMIN).json()["tenants"]
    assert [t["name"] for t in tenants] == ["secretive"]
    assert set(tenants[0]) == {"name", "vip", "lowconf_threshold", "rerank_default", "documents",
                               "created_at", "updated_at"}


@pytest.mark.parametrize("value", ["Basic YWRtaW46c2VjcmV0", "basic dXNlcjpwYXNz", "Basic", "Digest username=x",
                                   "Token abc0123456789abcdef"])
def test_wrong_authorization_scheme_is_named(client, tenant, value):
    scheme = value.split()[0]
    for method, path, alt in (("GET", "/v1/admin/tenants", "X-Admin-Key"), ("POST", "/v1/query", "X-API-Key")):
        r = client.request(method, path, headers={"Authorization": value}, json={"question": "q"})
        assert r.status_code == 401
        err = r.json()["error"]
        assert err["code"] == "unsupported_auth_scheme"
        assert scheme in err["message"] and "not accepted" in err["message"]
        assert "Bearer" in err["message"] and alt in err["message"]
        assert r.headers["www-authenticate"] == "Bearer"


def test_wrong_scheme_with_a_valid_alternative_header_is_accepted(client, tenant):
    r = client.get("/v1/admin/tenants", headers={"Authorization": "Basic eDp5", "X-Admin-Key": ADMIN_KEY})
    assert r.status_code == 200
    r = client.post("/v1/query", json={"question": "q"}, headers={"Authorization": "Basic eDp5", "X-API-Key": tenant})
    assert r.status_code == 200


def test_unprintable_scheme_is_not_echoed(client):
    r = client.get("/v1/admin/tenants", headers={"Authorization": "S" * 300 + " x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unsupported_auth_scheme"
    assert "S" * 100 not in r.text


def test_admin_key_regexes_match_whole_strings():
    from aetherlink.service import valid_api_key

    assert valid_api_key("abcdefghijklmnop")
    assert not valid_api_key("abcdefghijklmnop\n")
    assert not valid_api_key("abcdefghijklmno\n")
