"""Prometheus exposition: exact names, labels, zero-initialised series, bounded cardinality."""

from __future__ import annotations

from aether_testkit import ADMIN, ask, create_tenant, ingest, metric_samples, sample
from aetherlink.metrics import ROUTES, TENANT_QUERY_CODES
from prometheus_client.parser import text_string_to_metric_families

AETHER_FAMILIES = {
    "aether_cache_requests": "counter",
    "aether_cache_hits": "counter",
    "aether_rag_answers": "counter",
    "aether_rag_lowconfidence": "counter",
    "aether_http_requests": "counter",
    "aether_request_duration_seconds": "histogram",
}


def _families(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text, {f.name: f for f in text_string_to_metric_families(r.text)}


def test_exact_metric_families_and_types(client):
    create_tenant(client, "family-co")
    text, fams = _families(client)
    aether = {name: f.type for name, f in fams.items() if name.startswith("aether")}
    assert aether == AETHER_FAMILIES
    for name in ("aether_cache_requests_total", "aether_cache_hits_total", "aether_rag_answers_total",
                 "aether_rag_lowconfidence_total", "aether_http_requests_total",
                 "aether_request_duration_seconds_bucket", "aether_request_duration_seconds_count",
                 "aether_request_duration_seconds_sum"):
        assert f"\n{name}{{" in text
    assert "_created" not in text
    for name in AETHER_FAMILIES:
        assert f"# HELP {name}" in text


def test_label_names(client, tenant):
    ask(client, tenant, "warranty")
    _, fams = _families(client)
    expected = {
        "aether_cache_requests": {"tenant"},
        "aether_cache_hits": {"tenant"},
        "aether_rag_answers": {"tenant", "rerank"},
        "aether_rag_lowconfidence": {"tenant"},
        "aether_http_requests": {"tenant", "route", "code"},
    }
    for name, labels in expected.items():
        for s in fams[name].samples:
            assert set(s.labels) == labels, (name, s)
    for s in fams["aether_request_duration_seconds"].samples:
        assert set(s.labels) - {"le"} == {"tenant", "route"}


def test_tenant_series_exist_at_zero_from_creation(client):
    create_tenant(client, "fresh-co")
    samples = metric_samples(client.get("/metrics").text)

    def get(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))))

    assert get("aether_cache_requests_total", tenant="fresh-co") == 0
    assert get("aether_cache_hits_total", tenant="fresh-co") == 0
    assert get("aether_rag_answers_total", tenant="fresh-co", rerank="true") == 0
    assert get("aether_rag_answers_total", tenant="fresh-co", rerank="false") == 0
    assert get("aether_rag_lowconfidence_total", tenant="fresh-co") == 0
    for code in TENANT_QUERY_CODES:
        assert get("aether_http_requests_total", tenant="fresh-co", route="query", code=code) == 0
    assert get("aether_request_duration_seconds_count", tenant="fresh-co", route="query") == 0
    assert get("aether_request_duration_seconds_bucket", tenant="fresh-co", route="query", le="0.005") == 0
    assert get("aether_request_duration_seconds_bucket", tenant="fresh-co", route="query", le="+Inf") == 0


def test_persisted_tenants_have_series_at_startup(make_client):
    first = make_client()
    create_tenant(first, "persisted-co")
    second = make_client()  # new app on the same DB: no traffic yet
    assert sample(second, "aether_cache_requests_total", tenant="persisted-co") == 0
    assert sample(second, "aether_rag_answers_total", tenant="persisted-co", rerank="true") == 0
    assert sample(second, "aether_http_requests_total", tenant="persisted-co", route="query", code="200") == 0


def test_counts_follow_traffic(client, tenant):
    ask(client, tenant, "warranty")
    ask(client, tenant, "warranty")
    ask(client, tenant, "warranty", rerank=True)
    client.post("/v1/query", content=b"{", headers={"Authorization": f"Bearer {tenant}",
                                                     "Content-Type": "application/json"})
    samples = metric_samples(client.get("/metrics").text)

    def get(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert get("aether_cache_requests_total", tenant="acme-corp") == 3
    assert get("aether_cache_hits_total", tenant="acme-corp") == 1
    assert get("aether_rag_answers_total", tenant="acme-corp", rerank="false") == 2
    assert get("aether_rag_answers_total", tenant="acme-corp", rerank="true") == 1
    assert get("aether_http_requests_total", tenant="acme-corp", route="query", code="200") == 3
    assert get("aether_http_requests_total", tenant="acme-corp", route="query", code="400") == 1
    assert get("aether_request_duration_seconds_count", tenant="acme-corp", route="query") == 4
    # admin traffic carries no tenant identity
    assert get("aether_http_requests_total", tenant="_unknown", route="admin_tenants", code="201") == 1
    assert get("aether_http_requests_total", tenant="_unknown", route="admin_documents", code="200") == 1


def test_requests_without_valid_tenant_use_unknown_label(client, tenant):
    client.post("/v1/query", json={"question": "q"})
    ask(client, "alk_wrong-key-0000000000000", "q")
    client.get("/no/such/path")
    assert sample(client, "aether_http_requests_total", tenant="_unknown", route="query", code="401") == 2
    assert sample(client, "aether_http_requests_total", tenant="_unknown", route="unmatched", code="404") == 1


def test_bad_input_creates_no_new_series(client, tenant):
    client.get("/metrics")  # its own series exist from startup
    before = set(metric_samples(client.get("/metrics").text))
    garbage_paths = ["/x", "/v1/query/../../etc/passwd", "/v1/admin/tenants/%2e%2e", "/" + "a" * 300,
                     "/v1/admin/tenants/Evil_Name", "/v1/admin/tenants/no-such-co",
                     "/v1/admin/tenants/no-such-co/documents", "/metrics?tenant=evil"]
    for path in garbage_paths:
        client.get(path)
        client.post(path, json={})
        client.get(path, headers=ADMIN)
        client.post(path, json={"name": "Bad Name"}, headers=ADMIN)
    for key in ("evil-tenant", "", "acme-corp", "_unknown", "x" * 500):
        ask(client, key, "q")
        client.post("/v1/query", json={"question": "q"}, headers={"X-API-Key": key})
    client.post("/v1/query", content=b"{", headers={"Content-Type": "application/json"})
    client.request("PATCH", "/v1/query", headers={"Authorization": f"Bearer {tenant}"})
    client.post("/v1/admin/tenants", json={"name": "-bad"}, headers=ADMIN)
    client.post("/v1/admin/tenants", content=b"x", headers={**ADMIN, "Content-Type": "text/plain"})
    client.post("/v1/admin/tenants/acme-corp/documents", json=[], headers=ADMIN)
    after = set(metric_samples(client.get("/metrics").text))
    new = {k for k in after - before if k[0].startswith("aether")}
    assert new == set(), new
    tenants = {dict(labels).get("tenant") for name, labels in after if name.startswith("aether")}
    assert tenants == {"acme-corp", "_unknown"}
    routes = {dict(labels).get("route") for name, labels in after if name.startswith("aether_http")}
    assert routes <= set(ROUTES)


def test_query_route_series_for_unknown_tenant_exist_at_startup(client):
    assert sample(client, "aether_http_requests_total", tenant="_unknown", route="query", code="401") == 0
    assert sample(client, "aether_request_duration_seconds_count", tenant="_unknown", route="query") == 0


def test_lowconfidence_counter(client, tenant):
    ask(client, tenant, "completely unrelated astronomy")
    ask(client, tenant, "factory reset button")
    assert sample(client, "aether_rag_lowconfidence_total", tenant="acme-corp") == 1
    ingest(client, "acme-corp", [{"id": "astro", "text": "Completely unrelated astronomy notes."}])
    ask(client, tenant, "completely unrelated astronomy")
    assert sample(client, "aether_rag_lowconfidence_total", tenant="acme-corp") == 1


# --- /metrics authentication (AETHER_METRICS_TOKEN) -----------------------------------------

METRICS_TOKEN = "scrape-token-0123456789abcdef"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def test_metrics_open_when_no_token_is_set(client):
    assert client.get("/metrics").status_code == 200


def test_metrics_token_is_required_when_set(make_client):
    client = make_client(metrics_token=METRICS_TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Bearer {METRICS_TOKEN}x"},
                    {"Authorization": f"Basic {METRICS_TOKEN}"}, {"X-API-Key": METRICS_TOKEN}, ADMIN):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"]["code"] in {"missing_metrics_token", "invalid_metrics_token",
                                             "unsupported_auth_scheme"}
        assert "aether_" not in r.text
    r = client.get("/metrics", headers=SCRAPE)
    assert r.status_code == 200 and "aether_http_requests_total" in r.text
    r = client.get("/metrics", headers={"authorization": f"bearer {METRICS_TOKEN}"})
    assert r.status_code == 200


def test_metrics_401_is_counted_and_pre_created(make_client):
    client = make_client(metrics_token=METRICS_TOKEN)
    samples = metric_samples(client.get("/metrics", headers=SCRAPE).text)
    key = ("aether_http_requests_total", (("code", "401"), ("route", "metrics"), ("tenant", "_unknown")))
    assert samples[key] == 0
    before = {k for k in samples if k[0].startswith("aether")}
    client.get("/metrics")
    client.get("/metrics", headers={"Authorization": "Bearer nope"})
    samples = metric_samples(client.get("/metrics", headers=SCRAPE).text)
    assert samples[key] == 2
    assert {k for k in samples if k[0].startswith("aether")} == before


def test_metrics_401_series_exists_without_a_token_too(client):
    assert sample(client, "aether_http_requests_total", tenant="_unknown", route="metrics", code="401") == 0
