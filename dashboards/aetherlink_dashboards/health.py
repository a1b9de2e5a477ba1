"""AetherLink tenant health: the composite health score (0-100 per tenant)
and, in a collapsed row, the components it is computed from."""

from .common import GREEN, ORANGE, RED, bars, graph, new_dashboard, query, row, tenant_series, threshold_bands, to_json

UID = "aetherlink_health"
TITLE = "AetherLink Tenant Health"
# Colours of the score (display only): red below 50, orange below 80, green.
SCORE_STEPS = ((None, RED), (50, ORANGE), (80, GREEN))


def build():
    score_now = bars(
        "Health score now",
        "Composite health score of each tenant over 5m (aether:health_score:5m), 0-100: green from 80, "
        "orange from 50, red below.",
        query("A", tenant_series("aether:health_score:5m"), "{{tenant}}", instant=True),
        "none", w=8, steps=SCORE_STEPS, min_value=0, max_value=100,
    )
    score = threshold_bands(
        graph(
            "Health score",
            "aether:health_score:5m per tenant, 0-100, over the background of its colour bands.",
            [query("A", tenant_series("aether:health_score:5m"), "{{tenant}}")],
            unit="none", w=16, percent=True,
        ),
        *SCORE_STEPS,
    )
    components = (
        row("Components of the health score", collapsed=True)
        .with_panel(graph(
            "Cache hit ratio",
            "Share of answer-cache lookups served from the cache over 5m (aether:cache_hit_ratio:5m).",
            [query("A", tenant_series("aether:cache_hit_ratio:5m"), "{{tenant}}")],
        ))
        .with_panel(graph(
            "Low-confidence share",
            "Share of answers below the tenant's confidence threshold over 15m (aether:lowconfidence_pct:15m).",
            [query("A", tenant_series("aether:lowconfidence_pct:15m"), "{{tenant}}")],
        ))
        .with_panel(graph(
            "Error rate",
            "Share of the tenant's requests answered with an error over 5m (aether:http_error_ratio_pct:5m).",
            [query("A", tenant_series("aether:http_error_ratio_pct:5m"), "{{tenant}}")],
        ))
        .with_panel(graph(
            "Latency p99",
            "99th percentile of the request latency over 5m (aether:request_latency_seconds:p99_5m).",
            [query("A", tenant_series("aether:request_latency_seconds:p99_5m"), "{{tenant}}")],
            unit="s",
        ))
    )
    return to_json(
        new_dashboard(
            UID, TITLE,
            "Composite health score of each AetherLink tenant (0-100) and the signals it is built from.",
            ["health", "tenants"],
        )
        .with_panel(score_now)
        .with_panel(score)
        .with_row(components)
    )
