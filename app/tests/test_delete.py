"""DELETE /v1/admin/tenants/{name} and DELETE /v1/admin/tenants/{name}/documents/{doc_id}."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
from aether_testkit import ADMIN, CORPUS, aether_series, ask, create_tenant, ingest, metric_samples, sample


def _db_count(db_path: str, sql: str, *args) -> int:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return conn.execute(sql, args).fetchone()[0]


def test_delete_tenant_removes_key_documents_and_answers(client, tenant, make_client, db_path):
    create_tenant(client, "other-co")
    ingest(client, "other-co", [{"id": "o1", "text": "Other company warranty text."}])
    assert ask(client, tenant, "warranty").status_code == 200
    r = client.delete("/v1/admin/tenants/acme-corp", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": True, "tenant": "acme-corp", "documents": len(CORPUS)}
    # immediately: key refused, tenant gone, other tenant untouched
    r = ask(client, tenant, "warranty")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/admin/tenants/acme-corp", headers=ADMIN).status_code == 404
    assert [t["name"] for t in client.get("/v1/admin/tenants", headers=ADMIN).json()["tenants"]] == ["other-co"]
    assert _db_count(db_path, "SELECT count(*) FROM tenants WHERE name = ?", "acme-corp") == 0
    assert _db_count(db_path, "SELECT count(*) FROM documents WHERE tenant = ?", "acme-corp") == 0
    assert _db_count(db_path, "SELECT count(*) FROM documents WHERE tenant = ?", "other-co") == 1
    # after a restart too
    restarted = make_client()
    assert ask(restarted, tenant, "warranty").status_code == 401
    assert restarted.get("/v1/admin/tenants/acme-corp", headers=ADMIN).status_code == 404
    assert restarted.get("/v1/admin/tenants/other-co", headers=ADMIN).json()["documents"] == 1


def test_deleted_tenant_stops_being_exported(client, tenant):
    ask(client, tenant, "warranty")
    assert sample(client, "aether_cache_requests_total", tenant="acme-corp") == 1
    assert client.delete("/v1/admin/tenants/acme-corp", headers=ADMIN).status_code == 200
    ask(client, tenant, "warranty")  # now a bad key: counted under _unknown
    samples = metric_samples(client.get("/metrics").text)
    assert not [k for k in samples if ("tenant", "acme-corp") in k[1]]
    assert sample(client, "aether_http_requests_total", tenant="_unknown", route="admin_tenant", code="200") == 1
    assert sample(client, "aether_http_requests_total", tenant="_unknown", route="query", code="401") == 1


def test_recreated_tenant_starts_from_zero_with_a_new_key(client, tenant):
    ask(client, tenant, "warranty")
    client.delete("/v1/admin/tenants/acme-corp", headers=ADMIN)
    new_key = create_tenant(client, "acme-corp")
    assert new_key != tenant
    assert sample(client, "aether_cache_requests_total", tenant="acme-corp") == 0
    assert ask(client, tenant, "warranty").status_code == 401
    body = ask(client, new_key, "warranty").json()
    assert body["sources"] == [] and body["cached"] is False  # no documents, no cached answer


def test_delete_unknown_or_invalid_tenant(client):
    r = client.delete("/v1/admin/tenants/no-such-co", headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["code"] == "tenant_not_found"
    r = client.delete("/v1/admin/tenants/Bad_Name", headers=ADMIN)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_tenant_name"
    r = client.delete("/v1/admin/tenants/no-such-co/documents/a", headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["code"] == "tenant_not_found"


def test_delete_document(client, tenant, make_client, db_path):
    r = client.delete("/v1/admin/tenants/acme-corp/documents/warranty", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": True, "tenant": "acme-corp", "document": "warranty",
                        "documents": len(CORPUS) - 1}
    assert "warranty" not in ask(client, tenant, "How long is the warranty?").json()["sources"]
    assert client.get("/v1/admin/tenants/acme-corp", headers=ADMIN).json()["documents"] == len(CORPUS) - 1
    assert _db_count(db_path, "SELECT count(*) FROM documents WHERE doc_id = 'warranty'") == 0
    r = client.delete("/v1/admin/tenants/acme-corp/documents/warranty", headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["code"] == "document_not_found"
    restarted = make_client()
    assert restarted.get("/v1/admin/tenants/acme-corp", headers=ADMIN).json()["documents"] == len(CORPUS) - 1


def test_delete_document_clears_cached_answers(client, tenant):
    assert ask(client, tenant, "factory reset").json()["sources"][0] == "reset"
    assert ask(client, tenant, "factory reset").json()["cached"] is True
    client.delete("/v1/admin/tenants/acme-corp/documents/reset", headers=ADMIN)
    body = ask(client, tenant, "factory reset").json()
    assert body["cached"] is False and "reset" not in body["sources"]


@pytest.mark.parametrize("doc_id, path", [("a/b", "a%2Fb"), ("sp ace", "sp%20ace"), ("ünï", "%C3%BCn%C3%AF")])
def test_delete_document_with_special_id(client, tenant, doc_id, path):
    ingest(client, "acme-corp", [{"id": doc_id, "text": "special"}])
    r = client.delete(f"/v1/admin/tenants/acme-corp/documents/{path}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["document"] == doc_id


@pytest.mark.parametrize("path", ["%0A", "a%E2%80%AEb", "x" * 201])
def test_delete_document_invalid_id_is_400(client, tenant, path):
    r = client.delete(f"/v1/admin/tenants/acme-corp/documents/{path}", headers=ADMIN)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_document_id"
    assert "id" in r.json()["error"]["message"]


def test_deletes_require_the_admin_key(client, tenant):
    for path in ("/v1/admin/tenants/acme-corp", "/v1/admin/tenants/acme-corp/documents/warranty"):
        for headers in ({}, {"Authorization": f"Bearer {tenant}"}):
            r = client.delete(path, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/admin/tenants/acme-corp", headers=ADMIN).json()["documents"] == len(CORPUS)


def test_delete_routes_are_labelled_and_create_no_series(client, tenant):
    for code in ("200", "400", "401", "404", "405", "503"):
        assert sample(client, "aether_http_requests_total", tenant="_unknown", route="admin_document",
                      code=code) == 0
    assert sample(client, "aether_request_duration_seconds_count", tenant="_unknown", route="admin_document") == 0
    before = aether_series(client)
    client.delete("/v1/admin/tenants/acme-corp/documents/warranty", headers=ADMIN)
    client.delete("/v1/admin/tenants/acme-corp/documents/nope", headers=ADMIN)
    client.delete("/v1/admin/tenants/acme-corp/documents/%0A", headers=ADMIN)
    client.delete("/v1/admin/tenants/acme-corp/documents/x")
    client.get("/v1/admin/tenants/acme-corp/documents/x", headers=ADMIN)
    client.delete("/v1/admin/tenants/Evil_Name", headers=ADMIN)
    client.delete("/v1/admin/tenants/no-such-co", headers=ADMIN)
    assert aether_series(client) == before
    assert sample(client, "aether_http_requests_total", tenant="_unknown", route="admin_document", code="200") == 1
    assert sample(client, "aether_http_requests_total", tenant="_unknown", route="admin_document", code="405") == 1
    assert sample(client, "aether_http_requests_total", tenant="_unknown", route="admin_tenant", code="404") == 1


def test_query_of_a_tenant_deleted_while_it_ran(client, tenant):
    """Authenticated, then the tenant is deleted before the answer: 401, and its late request
    count goes to _unknown without bringing back (or adding) any series."""
    service = client.app.state.service
    acme = service.tenants["acme-corp"]
    assert client.delete("/v1/admin/tenants/acme-corp", headers=ADMIN).status_code == 200
    before = aether_series(client)
    with pytest.raises(Exception) as exc:
        service.answer(acme, "warranty", None, None)
    assert getattr(exc.value, "status", None) == 401
    service.metrics.observe_request("acme-corp", "query", 422, 0.01)
    assert aether_series(client) == before
    assert sample(client, "aether_http_requests_total", tenant="_unknown", route="query", code="422") == 1
