"""The service's own exposition renderer (metrics.Metrics) against prometheus_client's.

``/metrics`` is rendered from pre-built line prefixes instead of prometheus_client's
generate_latest; these tests hold the two equal (byte for byte for the aether_* families, and
parsed), check gzip, and check that a large scrape neither blocks the event loop nor is
rendered once per concurrent scraper.
"""

from __future__ import annotations

import asyncio
import gzip
import math

import httpx
import pytest
from aether_testkit import ADMIN, ask, create_tenant, ingest, metric_samples
from aetherlink import metrics as metrics_module
from aetherlink.metrics import DURATION_BUCKETS, ROUTE_ADMIN_TENANT, ROUTE_QUERY, Metrics
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

CORPUS = [{"id": "warranty", "text": "Warranty policy. Every router carries a two year warranty."}]


def aether_part(text: str) -> str:
    """The text from the first aether_* family on (process_* and python_* values move between calls)."""
    start = text.index("# HELP aether_")
    assert not text[start:].count("# HELP process_") and not text[start:].count("# HELP python_")
    return text[start:]


# on every bound (a value on a bound counts in that bound's bucket), between bounds, beyond the last
OBSERVED = (*DURATION_BUCKETS, 0.0, 0.0003, 0.0049, 7.5, 1e-9)


def busy_metrics() -> Metrics:
    """A registry with every kind of content: traffic, a deleted and a re-created tenant, a
    request of a deleted tenant, bucket boundaries, large values, label values to escape."""
    m = Metrics()
    for name in ("acme-corp", "globex", "gone-co", "again-co", "idle-co"):
        m.init_tenant(name)
    acme = m.tenant("acme-corp")
    acme.cache_requests.inc(3)
    acme.cache_hits.inc()
    acme.answers_plain.inc(2)
    acme.answers_rerank.inc()
    acme.lowconf.inc()
    for seconds in OBSERVED:
        m.observe_request("acme-corp", ROUTE_QUERY, 200, seconds)
    m.observe_request("acme-corp", ROUTE_QUERY, 422, 0.002)
    g = m.tenant("globex")
    g.cache_requests.inc(2_500_000)  # large values: Go-style exponent ("2.5e+06")
    g.answers_plain.inc(123456789.0)
    m.observe_request("globex", ROUTE_QUERY, 200, 1234567.0)
    m.observe_request("gone-co", ROUTE_QUERY, 200, 0.01)
    m.remove_tenant("gone-co")
    m.observe_request("gone-co", ROUTE_QUERY, 200, 0.01)  # finished after the delete: _unknown
    m.tenant("again-co").cache_requests.inc()
    m.remove_tenant("again-co")
    m.init_tenant("again-co")  # re-created: from 0, at the end of each family
    m.observe_request("_unknown", ROUTE_ADMIN_TENANT, 500, 0.3)  # a combination not pre-created
    # the API only accepts [a-z0-9-] names; the renderer escapes anyway, as the client does
    m.init_tenant('odd"name\\with\nnewline')
    m.tenant('odd"name\\with\nnewline').cache_hits.inc()
    return m


def test_exposition_is_byte_for_byte_what_prometheus_client_writes():
    m = busy_metrics()
    ours = m.exposition().decode()
    theirs = generate_latest(m.registry).decode()
    assert aether_part(ours) == aether_part(theirs)
    assert ours.startswith("# HELP process_")  # the standard collectors come first, as before
    for prefix in ("process_", "python_gc_", "python_info"):
        assert f"\n# HELP {prefix}" in ours or ours.startswith(f"# HELP {prefix}")
    assert "_created" not in ours
    assert 'tenant="gone-co"' not in ours
    assert r'tenant="odd\"name\\with\nnewline"' in ours


def test_exposition_parses_to_the_same_samples():
    m = busy_metrics()
    ours = metric_samples(m.exposition().decode())
    theirs = metric_samples(generate_latest(m.registry).decode())
    aether = {k: v for k, v in ours.items() if k[0].startswith("aether")}
    assert aether == {k: v for k, v in theirs.items() if k[0].startswith("aether")}
    get = lambda name, **labels: aether[(name, tuple(sorted(labels.items())))]  # noqa: E731
    assert get("aether_cache_requests_total", tenant="globex") == 2_500_000
    assert get("aether_cache_requests_total", tenant="again-co") == 0
    assert get("aether_http_requests_total", tenant="_unknown", route="query", code="200") == 1
    assert get("aether_cache_hits_total", tenant='odd"name\\with\nnewline') == 1


def test_histogram_buckets_are_cumulative_and_end_in_the_count():
    m = busy_metrics()
    families = {f.name: f for f in text_string_to_metric_families(m.exposition().decode())}
    series: dict[tuple, dict] = {}
    for s in families["aether_request_duration_seconds"].samples:
        key = (s.labels["tenant"], s.labels["route"])
        entry = series.setdefault(key, {"buckets": []})
        if s.name.endswith("_bucket"):
            entry["buckets"].append((float(s.labels["le"]), s.value))
        else:
            entry[s.name.rsplit("_", 1)[1]] = s.value
    acme = series[("acme-corp", ROUTE_QUERY)]
    observed = (*OBSERVED, 0.002)  # and the 422
    assert acme["count"] == len(observed)
    for bound, value in acme["buckets"]:
        assert value == sum(1 for x in observed if x <= bound), bound
    assert math.isclose(acme["sum"], sum(observed))
    for key, entry in series.items():
        bounds = [b for b, _ in entry["buckets"]]
        values = [v for _, v in entry["buckets"]]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf, key
        assert values == sorted(values), key
        assert values[-1] == entry["count"], key


def test_counters_only_grow_between_scrapes():
    m = busy_metrics()
    first = metric_samples(m.exposition().decode())
    m.tenant("acme-corp").cache_requests.inc()
    m.observe_request("acme-corp", ROUTE_QUERY, 200, 0.004)
    second = metric_samples(m.exposition().decode())
    for key, value in first.items():
        if key[0].startswith("aether") and not key[0].endswith("_sum"):
            assert second[key] >= value, key
    assert second[("aether_cache_requests_total", (("tenant", "acme-corp"),))] == 4


def test_metrics_endpoint_matches_generate_latest(client, tenant):
    ask(client, tenant, "warranty")
    ask(client, tenant, "warranty", rerank=True)
    ask(client, tenant, "zzz unrelated")
    key = create_tenant(client, "short-lived")
    ask(client, key, "warranty")
    assert client.delete("/v1/admin/tenants/short-lived", headers=ADMIN).status_code == 200
    r = client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and "content-encoding" not in r.headers
    registry = client.app.state.service.metrics.registry
    # the scrape itself is counted after its body was made: leave route="metrics" out
    served = {k: v for k, v in metric_samples(aether_part(r.text)).items() if ("route", "metrics") not in k[1]}
    expected = {k: v for k, v in metric_samples(aether_part(generate_latest(registry).decode())).items()
                if ("route", "metrics") not in k[1]}
    assert served == expected
    assert not any(("tenant", "short-lived") in labels for _, labels in served)


@pytest.mark.parametrize("accept", ["gzip", "gzip, deflate, br", "deflate;q=1, GZIP;q=0.5", "x, gzip ; q=1.0"])
def test_gzip_when_the_scraper_accepts_it(client, tenant, accept):
    ask(client, tenant, "warranty")
    plain = client.get("/metrics", headers={"Accept-Encoding": "identity"})
    r = client.get("/metrics", headers={"Accept-Encoding": accept})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"] == plain.headers["content-type"]
    assert "accept-encoding" in r.headers["vary"].lower()
    assert int(r.headers["content-length"]) < len(plain.content)
    assert aether_part(r.text).split("aether_http_requests_total")[0] == aether_part(plain.text).split(
        "aether_http_requests_total")[0]


@pytest.mark.parametrize("accept", ["", "identity", "gzip;q=0", "deflate", "gzip;q=0.000", "gzip;q=bad", "*"])
def test_no_gzip_unless_asked_for(client, accept):
    r = client.get("/metrics", headers={"Accept-Encoding": accept})
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert r.text.startswith("# HELP ")


def test_gzip_keeps_the_metrics_token(make_client):
    client = make_client(metrics_token="metrics-token-0123456789")
    r = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 401
    r = client.get("/metrics", headers={"Accept-Encoding": "gzip",
                                        "Authorization": "Bearer metrics-token-0123456789"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"


def test_raw_gzip_body_is_the_plain_exposition():
    m = busy_metrics()

    async def both():
        snap = await m.snapshot()
        return snap.body, await snap.gzipped()

    body, packed = asyncio.run(both())
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == body


# --- the event loop during a large scrape ----------------------------------------------------

def many_tenants(m: Metrics, count: int) -> None:
    for i in range(count):
        m.init_tenant(f"tenant-{i:05d}")
        m.observe_request(f"tenant-{i:05d}", ROUTE_QUERY, 200, 0.001)


def test_a_large_scrape_yields_to_the_event_loop(monkeypatch):
    monkeypatch.setattr(metrics_module, "SLICE_LINES", 100)
    m = Metrics()
    many_tenants(m, 200)  # ~5,400 lines: dozens of slices

    async def scenario():
        scrape = asyncio.ensure_future(m.snapshot())
        ticks_during_scrape = 0
        while not scrape.done():
            ticks_during_scrape += 1
            await asyncio.sleep(0)
        return ticks_during_scrape, (await scrape).body

    ticks, body = asyncio.run(scenario())
    assert ticks >= 20
    assert aether_part(body.decode()) == aether_part(generate_latest(m.registry).decode())


def test_concurrent_scrapes_share_one_rendering_and_later_ones_see_new_values():
    m = Metrics()
    many_tenants(m, 50)
    renders = 0
    original = m._pieces

    def counting():
        nonlocal renders
        renders += 1
        return original()

    m._pieces = counting

    async def scenario():
        first, second, third = await asyncio.gather(m.snapshot(), m.snapshot(), m.snapshot())
        assert first is second is third
        m.tenant("tenant-00007").cache_hits.inc()
        later = await m.snapshot()
        assert later is not first
        return later.body

    body = asyncio.run(scenario())
    assert renders == 2
    assert 'aether_cache_hits_total{tenant="tenant-00007"} 1.0\n' in body.decode()


def test_a_scraper_that_goes_away_does_not_cancel_the_others():
    m = Metrics()
    many_tenants(m, 300)

    async def scenario():
        gone = asyncio.ensure_future(m.snapshot())
        stays = asyncio.ensure_future(m.snapshot())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        gone.cancel()
        snap = await stays
        assert gone.cancelled()
        return snap.body

    body = asyncio.run(scenario())
    assert aether_part(body.decode()) == aether_part(generate_latest(m.registry).decode())


def test_queries_are_answered_while_a_large_scrape_is_rendered(make_client, monkeypatch):
    """Through the whole app (ASGI, one event loop): a query sent after a big scrape started is
    answered before that scrape is complete."""
    monkeypatch.setattr(metrics_module, "SLICE_LINES", 50)
    client = make_client()
    key = create_tenant(client, "acme-corp")
    ingest(client, "acme-corp", CORPUS)
    app = client.app
    many_tenants(app.state.service.metrics, 300)  # metrics-only tenants: a large exposition
    order: list[str] = []

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            async def scrape():
                r = await http.get("/metrics")
                order.append("scrape")
                return r

            async def query():
                await asyncio.sleep(0)  # the scrape is under way
                r = await http.post("/v1/query", json={"question": "warranty"},
                                    headers={"Authorization": f"Bearer {key}"})
                order.append("query")
                return r

            return await asyncio.gather(scrape(), query())

    scraped, answered = asyncio.run(scenario())
    assert scraped.status_code == 200 and answered.status_code == 200
    assert 'tenant="tenant-00299"' in scraped.text
    assert order == ["query", "scrape"]
