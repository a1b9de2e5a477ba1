"""What every AetherLink dashboard shares: the datasource, the tenant variable,
the panel shapes, and the step that turns a builder into the committed JSON.

The contract with the grafana role (roles/grafana/vars/main.yml): the
Prometheus datasource it provisions has the fixed uid DATASOURCE_UID; the
folder "AetherLink" comes from its dashboard provider, not from the JSON.
"""

import json

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

from ..queries import ALL_VALUE, MAY_BE_EMPTY_NOTE

DATASOURCE_UID = "aetherlink-prometheus"
DATASOURCE = dashboard_models.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
TAG = "aetherlink"

# The tenant variable: the tenants that have answer-cache series. The app
# counts requests without a tenant under "_unknown" (never a real tenant name,
# docs/metrics.md); the regex keeps it out of the list.
TENANT_VARIABLE_QUERY = "label_values(aether_cache_requests_total, tenant)"
TENANT_VARIABLE_REGEX = "/^(?!_unknown$).+$/"
TENANT = 'tenant=~"$tenant"'

# Colours of the value thresholds (display only; the alert thresholds are
# series from Prometheus, never numbers copied here).
RED, ORANGE, GREEN, BLUE = "red", "orange", "green", "blue"


def tenant_series(name, *matchers):
    """A recorded per-tenant series filtered by the tenant variable (=~, so "All" works)."""
    return "%s{%s}" % (name, ", ".join((TENANT,) + matchers))


def new_dashboard(uid, title, description, tags, time_from="now-6h"):
    """A dashboard with the shared settings and the tenant variable."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG] + list(tags))
        .editable()
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .time(time_from, "now")
        .refresh("1m")
        .timezone("browser")
        .annotations([])
        .with_variable(tenant_variable())
    )


def tenant_variable():
    return (
        dashboard.QueryVariable("tenant")
        .label("Tenant")
        .description("AetherLink tenants (from the answer-cache series); All matches every tenant.")
        .datasource(DATASOURCE)
        .query(TENANT_VARIABLE_QUERY)
        .regex(TENANT_VARIABLE_REGEX)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(ALL_VALUE)
        .allow_custom_value(False)
        .current(dashboard_models.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def query(ref_id, expr, legend, instant=False, table_format=False):
    target = (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(DATASOURCE)
        .expr(expr)
        .legend_format(legend)
        .editor_mode(prometheus_models.QueryEditorMode.CODE)
    )
    if instant:
        target = target.instant()
    else:
        target = target.range()
    if table_format:
        target = target.format(prometheus_models.PromQueryFormat.TABLE)
    return target


def row(title, collapsed=False):
    return dashboard.Row(title).collapsed(collapsed)


def _legend():
    return (
        common_builders.VizLegendOptions()
        .show_legend(True)
        .display_mode(common_models.LegendDisplayMode.TABLE)
        .placement(common_models.LegendPlacement.BOTTOM)
        .calcs(["lastNotNull", "mean", "min", "max"])
    )


def _tooltip():
    return (
        common_builders.VizTooltipOptions()
        .mode(common_models.TooltipDisplayMode.MULTI)
        .sort(common_models.SortOrder.DESCENDING)
    )


def thresholds(*steps):
    """Value thresholds: (None, colour) is the base step, then (value, colour)."""
    return (
        dashboard.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=v, color=c) for v, c in steps])
    )


def graph(title, description, targets, unit="percent", w=12, h=8, percent=None):
    """A time series panel. percent (default: unit == "percent") pins the
    axis to 0-100."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common_models.VisibilityMode.NEVER)
        .span_nulls(False)
        .legend(_legend())
        .tooltip(_tooltip())
    )
    if percent if percent is not None else unit == "percent":
        panel = panel.min(0).max(100)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def stacked_bars(panel):
    """A time series panel drawn as stacked bars (counts per interval)."""
    return (
        panel.draw_style(common_models.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builders.StackingConfig().mode(common_models.StackingMode.NORMAL))
    )


def threshold_bands(panel, *steps, mode=common_models.GraphThresholdsStyleMode.AREA):
    """Colour the background of a time series panel by value thresholds."""
    return panel.thresholds(thresholds(*steps)).thresholds_style(
        common_builders.GraphThresholdsStyleConfig().mode(mode))


def emphasize(panel, ref_id):
    """Draw the series of one query (an aggregate over all tenants) thicker."""
    return panel.override_by_query(ref_id, [
        dashboard_models.DynamicConfigValue(id_val="custom.lineWidth", value=3),
        dashboard_models.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
    ])


def reference_lines(panel, ref_id, color=RED):
    """Draw the series of one query (thresholds, objectives) as dashed lines."""
    return panel.override_by_query(ref_id, [
        dashboard_models.DynamicConfigValue(id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"}),
        dashboard_models.DynamicConfigValue(id_val="custom.lineWidth", value=2),
        dashboard_models.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        dashboard_models.DynamicConfigValue(id_val="color", value={"fixedColor": color, "mode": "fixed"}),
    ])


def alert_thresholds(ref_id, *alertnames):
    """The thresholds of the named alerts as Prometheus records them
    (aether:alert_threshold_pct, one series per alert, label alertname):
    the numbers stay in the environment's settings, not in the JSON."""
    return query(ref_id, 'aether:alert_threshold_pct{alertname=~"%s"}' % "|".join(alertnames),
                 "threshold {{alertname}}")


def _value_panel(panel, title, description, target, unit, w, h, steps):
    """What a stat and a bar gauge share: text, datasource, size, the last value, threshold colours."""
    panel = (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(target)
    )
    if steps:
        panel = panel.thresholds(thresholds(*steps)).color_scheme(
            dashboard.FieldColor().mode(dashboard_models.FieldColorModeId.THRESHOLDS))
    return panel


def single_stat(title, description, target, unit, w=6, h=5, steps=None, decimals=None):
    panel = _value_panel(
        stat.Panel()
        .graph_mode(common_models.BigValueGraphMode.AREA)
        .color_mode(common_models.BigValueColorMode.VALUE),
        title, description, target, unit, w, h, steps)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def bars(title, description, target, unit, w=12, h=8, steps=None, min_value=None, max_value=None):
    """Current value per series as horizontal bars."""
    panel = _value_panel(
        bargauge.Panel()
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT),
        title, description, target, unit, w, h, steps)
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def firing_alerts(title, description, expr, w=24, h=6):
    """A table of the alerts firing now. It is empty on a healthy stack, which
    the description says in the sentence the live tests read back
    (queries.MAY_BE_EMPTY_NOTE)."""
    hidden = {"Time": True, "Value": True, "__name__": True, "alertstate": True}
    return (
        table.Panel()
        .title(title)
        .description("%s %s" % (description, MAY_BE_EMPTY_NOTE))
        .datasource(DATASOURCE)
        .span(w)
        .height(h)
        .no_value("No alert firing")
        .with_target(query("A", expr, "{{alertname}}", instant=True, table_format=True))
        .with_transformation(dashboard_models.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": hidden,
                "indexByName": {"alertname": 0, "tenant": 1, "severity": 2, "sla": 3},
                "renameByName": {"alertname": "Alert", "tenant": "Tenant", "severity": "Severity", "sla": "SLA"},
            },
        ))
        .sort_by([common_builders.TableSortByFieldState().display_name("Severity")])
    )


def to_json(builder):
    """The dashboard as plain JSON data, panel ids numbered in order
    (collapsed rows' panels included) so that links to a panel stay stable."""
    data = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    next_id = 1
    for panel in data.get("panels", []):
        panel["id"] = next_id
        next_id += 1
        for inner in panel.get("panels", []) if panel.get("type") == "row" else []:
            inner["id"] = next_id
            next_id += 1
    return data
