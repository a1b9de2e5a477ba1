"""AetherLink RAG tenant metrics (enhanced): the seed's dashboard, the one the
alerts link to (roles/prometheus/templates/aetherlink.alerts.yml.j2).

Every panel reads the recording rules (docs/metrics.md), so it shows the very
number an alert compares, and the alert thresholds are drawn from
Prometheus' aether:alert_threshold_pct, never copied here.
"""

from .common import (alert_thresholds, emphasize, firing_alerts, graph, new_dashboard, query, reference_lines, row,
                     tenant_series, to_json)

UID = "aetherlink_rag_tenant_metrics_enhanced"
TITLE = "AetherLink RAG Tenant Metrics (Enhanced)"


def build():
    cache = graph(
        "Cache hit ratio",
        "Share of answer-cache lookups served from the cache over 5m (aether:cache_hit_ratio:5m), per tenant and "
        "over all tenants (:all). Dashed: the thresholds of CacheEffectivenessDrop and CacheEffectivenessDropVIP "
        "(the VIP one applies to VIP tenants only).",
        [
            query("A", tenant_series("aether:cache_hit_ratio:5m"), "{{tenant}}"),
            query("B", "aether:cache_hit_ratio:5m:all", "all tenants"),
            alert_thresholds("C", "CacheEffectivenessDrop", "CacheEffectivenessDropVIP"),
        ],
    )
    lowconf = graph(
        "Low-confidence share",
        "Share of answers below the tenant's confidence threshold over 15m (aether:lowconfidence_pct:15m), per "
        "tenant and over all tenants (:all). Dashed: the thresholds of LowConfidenceSpike and LowConfidenceSpikeVIP "
        "(the VIP one applies to VIP tenants only).",
        [
            query("A", tenant_series("aether:lowconfidence_pct:15m"), "{{tenant}}"),
            query("B", "aether:lowconfidence_pct:15m:all", "all tenants"),
            alert_thresholds("C", "LowConfidenceSpike", "LowConfidenceSpikeVIP"),
        ],
    )
    rerank = graph(
        "Rerank utilization",
        "Share of answers computed with rerank over 15m (aether:rerank_utilization_pct:15m), per tenant and over "
        "all tenants (:all).",
        [
            query("A", tenant_series("aether:rerank_utilization_pct:15m"), "{{tenant}}"),
            query("B", "aether:rerank_utilization_pct:15m:all", "all tenants"),
        ],
        w=24,
    )
    requests = graph(
        "Request rate",
        "HTTP requests per second the service finished, per tenant, over 5m (aether:http_requests:rate5m).",
        [query("A", "sum by (tenant) (%s)" % tenant_series("aether:http_requests:rate5m"), "{{tenant}}")],
        unit="reqps",
    )
    errors = graph(
        "Error rate",
        "Share of the tenant's requests answered with an error over 5m (aether:http_error_ratio_pct:5m).",
        [query("A", tenant_series("aether:http_error_ratio_pct:5m"), "{{tenant}}")],
    )
    latency = graph(
        "Latency percentiles",
        "Request latency per tenant over 5m: median, 90th and 99th percentile "
        "(aether:request_latency_seconds:p50_5m, :p90_5m, :p99_5m).",
        [
            query("A", tenant_series("aether:request_latency_seconds:p50_5m"), "{{tenant}} p50"),
            query("B", tenant_series("aether:request_latency_seconds:p90_5m"), "{{tenant}} p90"),
            query("C", tenant_series("aether:request_latency_seconds:p99_5m"), "{{tenant}} p99"),
        ],
        unit="s",
        w=24,
    )
    return to_json(
        new_dashboard(
            UID, TITLE,
            "Per-tenant answer quality, traffic and latency of the AetherLink RAG API, on the recording rules "
            "the alerts use.",
            ["rag", "tenants"],
        )
        .with_panel(firing_alerts(
            "Firing alerts",
            "AetherLink alerts firing now for the selected tenants (ALERTS{alertstate=\"firing\"}).",
            tenant_series("ALERTS", 'alertstate="firing"'),
        ))
        .with_row(row("Answer quality"))
        .with_panel(reference_lines(emphasize(cache, "B"), "C"))
        .with_panel(reference_lines(emphasize(lowconf, "B"), "C"))
        .with_panel(emphasize(rerank, "B"))
        .with_row(row("Traffic"))
        .with_panel(requests)
        .with_panel(errors)
        .with_row(row("Latency"))
        .with_panel(latency)
    )
