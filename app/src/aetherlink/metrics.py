"""Prometheus metrics, exactly as the project's metrics contract (docs/metrics.md) names them.

    aether_cache_requests_total{tenant}
    aether_cache_hits_total{tenant}
    aether_rag_answers_total{tenant, rerank="true"|"false"}
    aether_rag_lowconfidence_total{tenant}
    aether_http_requests_total{tenant, route, code}
    aether_request_duration_seconds{tenant, route}          (histogram)

Cardinality is bounded by construction: ``tenant`` is a known tenant's name or ``_unknown`` (any
request that carries no valid tenant key: admin, health, metrics, unauthenticated or unmatched
requests); ``route`` comes from the fixed set ``ROUTES``, never from the raw path; ``code`` is
a status code the service itself produces. Every series of a tenant is created at 0 when the
tenant is created (and at startup for persisted tenants), so ratios never miss a series, and
removed when the tenant is deleted, so a deleted tenant stops being exported.

Each app instance has its own registry (tests build several apps in one process). The standard
process_* / python_* collectors are registered too; ``*_created`` samples are disabled.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

prometheus_client.disable_created_metrics()

UNKNOWN_TENANT = "_unknown"

ROUTE_QUERY = "query"
ROUTE_ADMIN_TENANTS = "admin_tenants"
ROUTE_ADMIN_TENANT = "admin_tenant"
ROUTE_ADMIN_DOCUMENTS = "admin_documents"
ROUTE_ADMIN_DOCUMENT = "admin_document"
ROUTE_HEALTHZ = "healthz"
ROUTE_METRICS = "metrics"
ROUTE_UNMATCHED = "unmatched"
ROUTES = (
    ROUTE_QUERY,
    ROUTE_ADMIN_TENANTS,
    ROUTE_ADMIN_TENANT,
    ROUTE_ADMIN_DOCUMENTS,
    ROUTE_ADMIN_DOCUMENT,
    ROUTE_HEALTHZ,
    ROUTE_METRICS,
    ROUTE_UNMATCHED,
)

# Status codes that a request *with a valid tenant key* can get on the query route.
TENANT_QUERY_CODES = ("200", "400", "413", "415", "422", "500")

# Series pre-created for the fixed "_unknown" tenant at startup (codes each route can return
# to a request without tenant identity). 503: the database is busy (admin writes). A query whose
# tenant is deleted while it runs is counted under "_unknown" with whatever code it gets.
UNKNOWN_ROUTE_CODES = {
    ROUTE_QUERY: ("400", "401", "405", "413", "415", "422", "500"),
    ROUTE_ADMIN_TENANTS: ("200", "201", "400", "401", "405", "409", "413", "415", "422", "503"),
    ROUTE_ADMIN_TENANT: ("200", "400", "401", "404", "405", "503"),
    ROUTE_ADMIN_DOCUMENTS: ("200", "400", "401", "404", "405", "413", "415", "422", "503"),
    ROUTE_ADMIN_DOCUMENT: ("200", "400", "401", "404", "405", "503"),
    ROUTE_HEALTHZ: ("200", "405", "503"),
    ROUTE_METRICS: ("200", "401", "405"),
    ROUTE_UNMATCHED: ("404",),
}

# Latency buckets (seconds): fine resolution around the 5 ms (cached) and 50 ms (uncached)
# objectives.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class TenantMetrics:
    """Pre-resolved children of one tenant (avoids label lookups on the hot path)."""

    __slots__ = ("cache_requests", "cache_hits", "answers_rerank", "answers_plain", "lowconf")

    def __init__(self, m: "Metrics", tenant: str) -> None:
        self.cache_requests = m.cache_requests.labels(tenant)
        self.cache_hits = m.cache_hits.labels(tenant)
        self.answers_rerank = m.rag_answers.labels(tenant, "true")
        self.answers_plain = m.rag_answers.labels(tenant, "false")
        self.lowconf = m.lowconfidence.labels(tenant)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.cache_requests = Counter(
            "aether_cache_requests", "Answer-cache lookups, one per answered query.",
            ["tenant"], registry=r,
        )
        self.cache_hits = Counter(
            "aether_cache_hits", "Answer-cache lookups served from the cache.", ["tenant"], registry=r
        )
        self.rag_answers = Counter(
            "aether_rag_answers", "Answers returned, by whether the rerank step was applied.",
            ["tenant", "rerank"], registry=r,
        )
        self.lowconfidence = Counter(
            "aether_rag_lowconfidence",
            "Answers whose confidence fell under the tenant's low-confidence threshold.",
            ["tenant"], registry=r,
        )
        self.http_requests = Counter(
            "aether_http_requests", "Finished HTTP requests.", ["tenant", "route", "code"], registry=r
        )
        self.request_duration = Histogram(
            "aether_request_duration_seconds", "HTTP request latency in seconds.",
            ["tenant", "route"], buckets=DURATION_BUCKETS, registry=r,
        )
        self._tenants: dict[str, TenantMetrics] = {}
        self._http_children: dict[tuple[str, str, str], object] = {}
        self._duration_children: dict[tuple[str, str], object] = {}
        for route, codes in UNKNOWN_ROUTE_CODES.items():
            self._duration(UNKNOWN_TENANT, route)
            for code in codes:
                self._http(UNKNOWN_TENANT, route, code)

    def _http(self, tenant: str, route: str, code: str):
        key = (tenant, route, code)
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self.http_requests.labels(tenant, route, code)
        return child

    def _duration(self, tenant: str, route: str):
        key = (tenant, route)
        child = self._duration_children.get(key)
        if child is None:
            child = self._duration_children[key] = self.request_duration.labels(tenant, route)
        return child

    def init_tenant(self, tenant: str) -> TenantMetrics:
        """Create every series of ``tenant`` at 0 (idempotent)."""
        tm = self._tenants.get(tenant)
        if tm is None:
            tm = self._tenants[tenant] = TenantMetrics(self, tenant)
            self._duration(tenant, ROUTE_QUERY)
            for code in TENANT_QUERY_CODES:
                self._http(tenant, ROUTE_QUERY, code)
        return tm

    def remove_tenant(self, tenant: str) -> None:
        """Drop every series labelled with ``tenant`` (the tenant was deleted)."""
        if self._tenants.pop(tenant, None) is None:
            return
        self.cache_requests.remove(tenant)
        self.cache_hits.remove(tenant)
        self.rag_answers.remove(tenant, "true")
        self.rag_answers.remove(tenant, "false")
        self.lowconfidence.remove(tenant)
        for key in [k for k in self._http_children if k[0] == tenant]:
            del self._http_children[key]
            self.http_requests.remove(*key)
        for key in [k for k in self._duration_children if k[0] == tenant]:
            del self._duration_children[key]
            self.request_duration.remove(*key)

    def tenant(self, tenant: str) -> TenantMetrics:
        return self._tenants[tenant]

    def observe_request(self, tenant: str, route: str, code: int, seconds: float) -> None:
        if tenant not in self._tenants:
            # deleted while its request ran: never bring its series back
            tenant = UNKNOWN_TENANT
        self._http(tenant, route, str(code)).inc()
        self._duration(tenant, route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
