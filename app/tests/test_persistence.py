"""State survives a restart: a new app instance on the same SQLite file loses nothing."""

from __future__ import annotations

from aether_testkit import ADMIN, CORPUS, ask, create_tenant, ingest


def test_restart_keeps_tenants_keys_settings_and_documents(make_client):
    first = make_client()
    key = create_tenant(first, "vip-acme", vip=True, lowconf_threshold=0.3, rerank_default=True)
    ingest(first, "vip-acme", CORPUS)
    ingest(first, "vip-acme", [{"id": "warranty", "text": "Warranty is three years since 2025."}])
    before = ask(first, key, "How long is the warranty?").json()
    listing = first.get("/v1/admin/tenants", headers=ADMIN).json()
    first.app.state.service.close()

    second = make_client()
    assert second.get("/v1/admin/tenants", headers=ADMIN).json() == listing
    info = second.get("/v1/admin/tenants/vip-acme", headers=ADMIN).json()
    assert info["vip"] is True and info["lowconf_threshold"] == 0.3 and info["rerank_default"] is True
    assert info["documents"] == len(CORPUS)
    after = ask(second, key, "How long is the warranty?").json()
    assert after["cached"] is False  # the cache is memory only
    assert {k: v for k, v in after.items() if k != "cached"} == {k: v for k, v in before.items() if k != "cached"}
    assert "three years" in after["answer"]


def test_restart_keeps_updates_and_rotated_keys(make_client):
    first = make_client()
    create_tenant(first, "rotate-co", api_key="rotate-co-key-one-00000")
    first.post("/v1/admin/tenants", json={"name": "rotate-co", "api_key": "rotate-co-key-two-00000",
                                          "lowconf_threshold": 0.7}, headers=ADMIN)
    second = make_client()
    assert ask(second, "rotate-co-key-one-00000", "q").status_code == 401
    assert ask(second, "rotate-co-key-two-00000", "q").status_code == 200
    assert second.get("/v1/admin/tenants/rotate-co", headers=ADMIN).json()["lowconf_threshold"] == 0.7
    r = second.post("/v1/admin/tenants", json={"name": "rotate-co", "api_key": "rotate-co-key-two-00000",
                                               "lowconf_threshold": 0.7}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["changed"] is False


def test_ingest_is_idempotent_across_restarts(make_client):
    first = make_client()
    create_tenant(first, "docs-co")
    r1 = ingest(first, "docs-co", CORPUS)
    assert (r1["inserted"], r1["updated"], r1["unchanged"], r1["changed"]) == (len(CORPUS), 0, 0, True)
    second = make_client()
    r2 = ingest(second, "docs-co", CORPUS)
    assert (r2["inserted"], r2["updated"], r2["unchanged"], r2["changed"]) == (0, 0, len(CORPUS), False)
    r3 = ingest(second, "docs-co", [{"id": "reset", "text": "Reset: unplug it."}, {"id": "z", "text": "zz"}])
    assert (r3["inserted"], r3["updated"], r3["unchanged"], r3["documents"]) == (1, 1, 0, len(CORPUS) + 1)
    third = make_client()
    assert third.get("/v1/admin/tenants/docs-co", headers=ADMIN).json()["documents"] == len(CORPUS) + 1


def test_bare_list_ingest_form(client):
    create_tenant(client, "list-co")
    r = client.post("/v1/admin/tenants/list-co/documents", json=[{"id": "a", "text": "apple"}], headers=ADMIN)
    assert r.status_code == 200 and r.json()["inserted"] == 1
