"""The queries of the AetherLink dashboards, ready to send to Prometheus.

Standard library only, so the live tests can use it wherever the dashboards'
JSON is: import it with the repository root on sys.path
(`from dashboards import queries`) or with dashboards/ on it (`import queries`).

    dashboard = json.load(open("roles/grafana/files/dashboards/aetherlink_sla.json"))
    for q in panel_queries(dashboard):
        for tenant in ("acme-corp", ALL_VALUE):
            expr = substitute(q.expr, tenant)
            # GET /api/v1/query?query=<expr>: status "success"; an empty result
            # is a failure unless q.may_be_empty
    for v in variable_queries(dashboard):
        path, params = label_values_request(v.query)   # /api/v1/label/tenant/values

`may_be_empty` comes from the dashboard itself: the generator ends the
description of every panel that legitimately shows nothing on a healthy stack
(the firing-alerts tables) with MAY_BE_EMPTY_NOTE.
"""

import collections
import re

# The value the tenant variable takes for "All" (its allValue): a regex, so
# the panels match with tenant=~"$tenant".
ALL_VALUE = ".*"

# The last sentence of the description of a panel that may be empty on a
# healthy stack. The generator writes it (aetherlink_dashboards/common.py).
MAY_BE_EMPTY_NOTE = "Empty while nothing fires: that is the healthy state."

PanelQuery = collections.namedtuple("PanelQuery", "title ref_id expr may_be_empty")
VariableQuery = collections.namedtuple("VariableQuery", "name query regex all_value")

# Grafana's ways of writing a variable: $name, ${name}, ${name:format}, [[name]].
_VARIABLE = r"\$\{%(n)s(?::[a-z]+)?\}|\[\[%(n)s\]\]|\$%(n)s\b"
_ANY_VARIABLE = re.compile(_VARIABLE % {"n": r"[A-Za-z_]\w*"})
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# Characters Grafana escapes in the value of a multi-value or "All" variable
# used by a Prometheus query (prometheusSpecialRegexEscape).
_REGEX_SPECIAL = re.compile(r"([$^*{}\[\]'+?.()|])")


def iter_panels(dashboard):
    """Every panel of a dashboard, the panels of collapsed rows included, rows excluded."""
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def panel_may_be_empty(panel):
    return (panel.get("description") or "").rstrip().endswith(MAY_BE_EMPTY_NOTE)


def panel_queries(dashboard):
    """[PanelQuery(title, ref_id, expr, may_be_empty)] of every target of every panel."""
    found = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets") or []:
            if target.get("hide"):
                continue
            found.append(PanelQuery(panel.get("title", ""), target.get("refId", ""), target.get("expr", ""),
                                    panel_may_be_empty(panel)))
    return found


def variable_queries(dashboard):
    """[VariableQuery(name, query, regex, all_value)] of every query variable."""
    found = []
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):  # the Prometheus query editor's object form
            query = query.get("query", "")
        found.append(VariableQuery(variable.get("name", ""), query or "", variable.get("regex", ""),
                                   variable.get("allValue")))
    return found


def label_values_request(query):
    """The Prometheus HTTP API request behind `label_values(metric, label)` or
    `label_values(label)`: (path, params) for GET."""
    m = re.fullmatch(r"\s*label_values\(\s*(?:(.+?)\s*,\s*)?([A-Za-z_]\w*)\s*\)\s*", query)
    if not m:
        raise ValueError("not a label_values() variable query: %r" % query)
    selector, label = m.groups()
    return "/api/v1/label/%s/values" % label, ({"match[]": selector} if selector else {})


def seconds(duration):
    """Seconds of a Prometheus/Grafana duration such as "5m" or "1h30m"."""
    if not re.fullmatch(r"(?:\d+(?:ms|s|m|h|d|w|y))+", duration or ""):
        raise ValueError("not a duration: %r" % duration)
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(duration))


def _tenant_text(tenant_value):
    """What Grafana writes for the tenant variable (multi, includeAll) in a
    Prometheus query: the All value as it is, a name regex-escaped, several
    names as (a|b)."""
    if isinstance(tenant_value, str):
        values = [tenant_value]
    else:
        values = list(tenant_value)
    if not values:
        raise ValueError("no tenant value")
    if values == [ALL_VALUE]:
        return ALL_VALUE
    escaped = [_REGEX_SPECIAL.sub(r"\\\\\1", v.replace("\\", "\\\\\\\\")) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _number(value):
    return str(int(value)) if float(value).is_integer() else repr(value)


def substitute(expr, tenant_value, interval="5m", time_range="1h", rate_interval=None):
    """The query as Grafana sends it to Prometheus' /api/v1/query.

    tenant_value: one tenant name, several (a list), or ALL_VALUE (".*");
    it replaces $tenant, ${tenant} and [[tenant]]. Grafana's macros get
    concrete values: $__interval (interval), $__rate_interval (rate_interval,
    default: interval), $__range / $__range_s / $__range_ms (time_range), and
    the _ms forms of the intervals. A variable left over (one this module
    does not know) raises ValueError rather than reaching Prometheus.
    """
    rate_interval = rate_interval or interval
    interval_s, rate_s, range_s = seconds(interval), seconds(rate_interval), seconds(time_range)
    values = {
        "tenant": _tenant_text(tenant_value),
        "__interval": interval,
        "__interval_ms": _number(interval_s * 1000),
        "__rate_interval": rate_interval,
        "__rate_interval_ms": _number(rate_s * 1000),
        "__range": time_range,
        "__range_s": _number(range_s),
        "__range_ms": _number(range_s * 1000),
    }
    # Longest names first: $__range_s must not be read as $__range + "_s".
    for name in sorted(values, key=len, reverse=True):
        pattern = re.compile(_VARIABLE % {"n": re.escape(name)})
        expr = pattern.sub(lambda _m, v=values[name]: v, expr)
    left = _ANY_VARIABLE.search(expr)
    if left:
        raise ValueError("unknown variable %s left in %r" % (left.group(0), expr))
    return expr
