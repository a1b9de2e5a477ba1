"""AetherLink billing: what the answers cost, per tenant and in total.

Reads the billing rules (30-day costs built from recorded hourly increases,
never a raw [30d] range) and the hourly answer counts by rerank setting.
"""

from .common import bars, graph, new_dashboard, query, row, single_stat, stacked_bars, tenant_series, to_json

UID = "aetherlink_billing"
TITLE = "AetherLink Billing"
USD = "currencyUSD"


def build():
    total = single_stat(
        "Total cost, all tenants (30d)",
        "Cost of the answers of every tenant over the last 30 days (aether:billing_cost_usd:30d); "
        "it ignores the tenant selection.",
        query("A", "aether:billing_cost_usd:30d", "all tenants", instant=True),
        USD, h=8, decimals=2,
    )
    selected = single_stat(
        "Cost of the selected tenants (30d)",
        "Sum of aether:tenant_billing_cost_usd:30d over the selected tenants.",
        query("A", "sum(%s)" % tenant_series("aether:tenant_billing_cost_usd:30d"), "selected tenants", instant=True),
        USD, h=8, decimals=2,
    )
    per_tenant_now = bars(
        "Cost per tenant (30d)",
        "Cost of each tenant's answers over the last 30 days (aether:tenant_billing_cost_usd:30d).",
        query("A", tenant_series("aether:tenant_billing_cost_usd:30d"), "{{tenant}}", instant=True),
        USD, min_value=0,
    )
    per_tenant = graph(
        "Cost per tenant over time (30d window)",
        "aether:tenant_billing_cost_usd:30d per tenant: each point is the cost of the 30 days before it.",
        [query("A", tenant_series("aether:tenant_billing_cost_usd:30d"), "{{tenant}}")],
        unit=USD, w=24,
    )
    answers_by_rerank = stacked_bars(graph(
        "Answers per hour by rerank",
        "Answers of the selected tenants per hour (aether:rag_answers:increase1h), by rerank setting: "
        "rerank=\"true\" answers are the expensive ones.",
        [query("A", "sum by (rerank) (%s)" % tenant_series("aether:rag_answers:increase1h"), "rerank={{rerank}}")],
        unit="short",
    ))
    answers_by_tenant = graph(
        "Answers per hour by tenant and rerank",
        "aether:rag_answers:increase1h per tenant and rerank setting.",
        [query("A", "sum by (tenant, rerank) (%s)" % tenant_series("aether:rag_answers:increase1h"),
               "{{tenant}} rerank={{rerank}}")],
        unit="short",
    )
    return to_json(
        new_dashboard(
            UID, TITLE,
            "What the AetherLink answers cost: per tenant and in total over 30 days, and the hourly answers "
            "by rerank setting the cost is computed from.",
            ["billing"],
            time_from="now-7d",
        )
        .with_row(row("Cost over the last 30 days"))
        .with_panel(total)
        .with_panel(selected)
        .with_panel(per_tenant_now)
        .with_panel(per_tenant)
        .with_row(row("Answers"))
        .with_panel(answers_by_rerank)
        .with_panel(answers_by_tenant)
    )

