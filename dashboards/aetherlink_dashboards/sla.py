"""AetherLink SLA: availability and latency compliance over 30 days, the
error budgets left, how fast they burn, and the SLO alerts firing.

The objectives are series Prometheus records per tenant
(aether:sla_*_objective_pct), not numbers copied here. A burn rate is the
error ratio divided by the budget ratio (1 - objective/100), matched on
tenant as the SLO alerts compute it: 1 spends exactly the 30-day budget.
"""

from grafana_foundation_sdk.models import common as common_models

from .common import (GREEN, RED, firing_alerts, graph, new_dashboard, query, reference_lines, row, tenant_series,
                     threshold_bands, to_json)

UID = "aetherlink_sla"
TITLE = "AetherLink SLA"
AVAILABILITY_OBJECTIVE = "aether:sla_availability_objective_pct"
LATENCY_OBJECTIVE = "aether:sla_latency_objective_pct"


def burn_rate(ratio_record, objective):
    # Each tenant's ratio over its own objective, as the SLO alerts compute it.
    return "%s / on(tenant) (1 - %s / 100)" % (tenant_series(ratio_record), tenant_series(objective))


def burn_rate_panel(title, what, ratio_1h, ratio_5m, objective):
    return threshold_bands(
        graph(
            title,
            "How fast the %s error budget burns: %s over 1h and 5m divided by (1 - %s / 100). "
            "1 spends exactly the 30-day budget; above the dashed line the budget runs out early."
            % (what, ratio_1h.rsplit(":", 1)[0], objective),
            [
                query("A", burn_rate(ratio_1h, objective), "{{tenant}} 1h"),
                query("B", burn_rate(ratio_5m, objective), "{{tenant}} 5m"),
            ],
            unit="suffix:x",
        ),
        (None, GREEN), (1, RED),
        mode=common_models.GraphThresholdsStyleMode.DASHED,
    )


def build():
    availability = reference_lines(graph(
        "Availability (30d)",
        "Share of the tenant's requests answered without a server error over 30 days "
        "(aether:sla_availability_pct:30d). Dashed: the tenant's objective (%s)." % AVAILABILITY_OBJECTIVE,
        [
            query("A", tenant_series("aether:sla_availability_pct:30d"), "{{tenant}}"),
            query("B", tenant_series(AVAILABILITY_OBJECTIVE), "{{tenant}} objective"),
        ],
        percent=False,
    ), "B")
    latency = reference_lines(graph(
        "Latency compliance (30d)",
        "Share of the tenant's requests answered within the latency objective over 30 days "
        "(aether:sla_latency_pct:30d). Dashed: the tenant's objective (%s)." % LATENCY_OBJECTIVE,
        [
            query("A", tenant_series("aether:sla_latency_pct:30d"), "{{tenant}}"),
            query("B", tenant_series(LATENCY_OBJECTIVE), "{{tenant}} objective"),
        ],
        percent=False,
    ), "B")
    availability_budget = graph(
        "Availability error budget remaining (30d)",
        "Share of the 30-day availability error budget not yet spent "
        "(aether:sla_availability_error_budget_remaining_pct:30d); below 0 the objective is missed.",
        [query("A", tenant_series("aether:sla_availability_error_budget_remaining_pct:30d"), "{{tenant}}")],
        percent=False,
    ).max(100)
    latency_budget = graph(
        "Latency error budget remaining (30d)",
        "Share of the 30-day latency error budget not yet spent "
        "(aether:sla_latency_error_budget_remaining_pct:30d); below 0 the objective is missed.",
        [query("A", tenant_series("aether:sla_latency_error_budget_remaining_pct:30d"), "{{tenant}}")],
        percent=False,
    ).max(100)
    return to_json(
        new_dashboard(
            UID, TITLE,
            "AetherLink availability and latency objectives per tenant: compliance over 30 days, error budgets, "
            "burn rates and the SLO alerts firing.",
            ["sla", "tenants"],
            time_from="now-7d",
        )
        .with_panel(firing_alerts(
            "Firing SLO alerts",
            "SLO alerts firing now for the selected tenants (ALERTS{alertname=~\"SLO.*\"}).",
            tenant_series("ALERTS", 'alertname=~"SLO.*"', 'alertstate="firing"'),
        ))
        .with_row(row("Compliance over 30 days"))
        .with_panel(availability)
        .with_panel(latency)
        .with_row(row("Error budget remaining"))
        .with_panel(availability_budget)
        .with_panel(latency_budget)
        .with_row(row("Burn rate"))
        .with_panel(burn_rate_panel("Availability burn rate", "availability",
                                    "aether:sla_availability_error_ratio:1h", "aether:sla_availability_error_ratio:5m",
                                    AVAILABILITY_OBJECTIVE))
        .with_panel(burn_rate_panel("Latency burn rate", "latency",
                                    "aether:sla_latency_slow_ratio:1h", "aether:sla_latency_slow_ratio:5m",
                                    LATENCY_OBJECTIVE))
    )
