"""Per-tenant answer cache: hits, normalisation, TTL expiry, LRU size bound, invalidation."""

from __future__ import annotations

from aether_testkit import ADMIN, ask, create_tenant, ingest, sample
from aetherlink.cache import TTLCache


def test_ttlcache_unit():
    now = [0.0]
    c: TTLCache[str] = TTLCache(2, 10, clock=lambda: now[0])
    c.put("a", "A")
    c.put("b", "B")
    assert c.get("a") == "A"  # a is now most recent
    c.put("c", "C")  # evicts b (least recently used)
    assert c.get("b") is None and c.get("a") == "A" and c.get("c") == "C"
    now[0] = 10.0
    assert c.get("a") is None and len(c) == 1
    c.clear()
    assert len(c) == 0


def test_ttlcache_disabled():
    assert not TTLCache(0, 10).enabled
    assert not TTLCache(10, 0).enabled
    c: TTLCache[str] = TTLCache(10, 0)
    c.put("a", "A")
    assert c.get("a") is None


def test_repeated_question_is_cached(client, tenant):
    first = ask(client, tenant, "How long is the warranty?").json()
    second = ask(client, tenant, "  how LONG is the   warranty? ").json()
    assert first["cached"] is False and second["cached"] is True
    for field in ("answer", "sources", "confidence", "low_confidence", "reranked"):
        assert first[field] == second[field]
    assert sample(client, "aether_cache_requests_total", tenant="acme-corp") == 2
    assert sample(client, "aether_cache_hits_total", tenant="acme-corp") == 1


def test_cache_key_includes_top_k_and_rerank(client, tenant):
    ask(client, tenant, "warranty")
    assert ask(client, tenant, "warranty", top_k=1).json()["cached"] is False
    assert ask(client, tenant, "warranty", rerank=True).json()["cached"] is False
    assert ask(client, tenant, "warranty", top_k=3, rerank=False).json()["cached"] is True


def test_ttl_expiry(client, tenant, clock):
    ask(client, tenant, "factory reset")
    clock.advance(299)
    assert ask(client, tenant, "factory reset").json()["cached"] is True
    clock.advance(2)  # 301 s after the entry was written
    assert ask(client, tenant, "factory reset").json()["cached"] is False
    assert ask(client, tenant, "factory reset").json()["cached"] is True


def test_custom_ttl(make_client, clock):
    client = make_client(cache_ttl_seconds=5)
    key = create_tenant(client, "short-ttl")
    ingest(client, "short-ttl", [{"id": "x", "text": "Xylophone lessons every Monday."}])
    ask(client, key, "xylophone")
    clock.advance(4.9)
    assert ask(client, key, "xylophone").json()["cached"] is True
    clock.advance(0.2)
    assert ask(client, key, "xylophone").json()["cached"] is False


def test_size_bound_evicts_least_recently_used(make_client):
    client = make_client(cache_max_entries=2)
    key = create_tenant(client, "tiny-cache")
    ingest(client, "tiny-cache", [{"id": "x", "text": "alpha beta gamma delta"}])
    for q in ("alpha", "beta"):
        ask(client, key, q)
    assert ask(client, key, "alpha").json()["cached"] is True  # alpha most recent, beta LRU
    ask(client, key, "gamma")  # evicts beta
    assert ask(client, key, "beta").json()["cached"] is False  # evicts alpha
    assert ask(client, key, "gamma").json()["cached"] is True
    service = client.app.state.service
    assert len(service.tenants["tiny-cache"].cache) == 2


def test_cache_bound_is_per_tenant(make_client):
    client = make_client(cache_max_entries=1)
    k1 = create_tenant(client, "one-co")
    k2 = create_tenant(client, "two-co")
    ask(client, k1, "first")
    ask(client, k2, "second")
    assert ask(client, k1, "first").json()["cached"] is True
    assert ask(client, k2, "second").json()["cached"] is True
    assert ask(client, k2, "first").json()["cached"] is False


def test_cache_disabled_by_zero_ttl(make_client):
    client = make_client(cache_ttl_seconds=0)
    key = create_tenant(client, "no-cache")
    ask(client, key, "hello there")
    assert ask(client, key, "hello there").json()["cached"] is False
    assert sample(client, "aether_cache_requests_total", tenant="no-cache") == 2
    assert sample(client, "aether_cache_hits_total", tenant="no-cache") == 0


def test_ingest_and_settings_change_invalidate_cache(client, tenant):
    ask(client, tenant, "warranty")
    ingest(client, "acme-corp", [{"id": "new", "text": "Warranty extension can be purchased."}])
    assert ask(client, tenant, "warranty").json()["cached"] is False
    # unchanged re-ingest keeps the cache
    ingest(client, "acme-corp", [{"id": "new", "text": "Warranty extension can be purchased."}])
    assert ask(client, tenant, "warranty").json()["cached"] is True
    r = client.post("/v1/admin/tenants", json={"name": "acme-corp", "lowconf_threshold": 0.9}, headers=ADMIN)
    assert r.json()["changed"] is True
    assert ask(client, tenant, "warranty").json()["cached"] is False
