"""The AetherLink Grafana dashboards (dashboards/ -> roles/grafana/files/dashboards).

Controller only, no Grafana and no Prometheus: the committed JSON is what the
code generates, the dashboards keep the contract the grafana role and the
alerts rely on (fixed uids, the provisioned datasource, the tenant variable,
=~ on $tenant), every recorded series they read is one the prometheus role
records, and dashboards/queries.py turns every query into one that Prometheus
accepts. The live run of these queries against Prometheus is in Molecule.
"""

import json
import re
import sys

import pytest
import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT))
from dashboards import generate, queries  # noqa: E402  (the repository root is not always on sys.path)

DASHBOARD_DIR = ROOT / "roles" / "grafana" / "files" / "dashboards"
FIXED_UIDS = {
    "aetherlink_rag_tenant_metrics_enhanced",
    "aetherlink_billing",
    "aetherlink_health",
    "aetherlink_sla",
}
DATASOURCE = {"type": "prometheus", "uid": "aetherlink-prometheus"}
RULES_FIXTURE = "@" + str(ROOT / "tests" / "rules" / "fixture_vars.yml")
# Recorded series that hold no tenant label (besides the :all aggregates):
# only these may be queried without tenant=~"$tenant".
GLOBAL_SERIES = {"aether:billing_cost_usd:30d", "aether:alert_threshold_pct"}
PROMETHEUS_SERIES = {"ALERTS", "ALERTS_FOR_STATE"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                "bool", "offset", "inf", "nan"}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
LABEL_BLOCK = re.compile(r'([A-Za-z_:][\w:]*)?\s*\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}')
MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")


def load_committed():
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


COMMITTED = load_committed()
DASHBOARDS = sorted(COMMITTED.values(), key=lambda d: d.get("uid", ""))
IDS = [d.get("uid", "?") for d in DASHBOARDS]


def selectors(expr):
    """[(metric name or None, [(label, op, value)])] of the selectors of a PromQL expression."""
    found = []
    for m in LABEL_BLOCK.finditer(expr):
        found.append((m.group(1), MATCHER.findall(m.group(2))))
    rest = LABEL_BLOCK.sub(" ", expr)
    rest = STRING.sub('""', rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)
    rest = GROUPING.sub(" ", rest)
    for name in IDENT.findall(rest):
        if name.lower() not in PROMQL_WORDS:
            found.append((name, []))
    return found


def metric_names(expr):
    return {name for name, _ in selectors(expr) if name}


def balanced(expr):
    """True when (), [] and {} pair up outside string literals."""
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in STRING.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            if not stack or stack.pop() != pairs[char]:
                return False
    return not stack and expr.count('"') % 2 == 0


def contract_metrics():
    """Raw metric names of docs/metrics.md's table, as Prometheus exposes them."""
    names = set()
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        m = re.match(r"\|\s*`(aether_\w+)`\s*\|\s*(\w+)\s*\|", line)
        if m:
            names.add(m.group(1))
            if m.group(2) == "histogram":
                names |= {m.group(1) + suffix for suffix in ("_bucket", "_sum", "_count")}
    assert names, "no metric table found in docs/metrics.md"
    return names


def is_per_tenant(name):
    return not (name in GLOBAL_SERIES or name.endswith(":all") or name == "ALERTS_FOR_STATE")


# --- The committed JSON is the generator's ---------------------------------------


def test_committed_json_is_what_the_code_generates(tmp_path):
    generate.write(tmp_path)
    fresh = {path.name: path.read_text() for path in sorted(tmp_path.glob("*.json"))}
    committed = {path.name: path.read_text() for path in sorted(DASHBOARD_DIR.glob("*.json"))}
    stale = sorted(name for name in set(fresh) | set(committed) if fresh.get(name) != committed.get(name))
    assert not stale, (
        "roles/grafana/files/dashboards is out of date with dashboards/ (%s); regenerate with `%s` "
        "from the repository root and commit the JSON" % (", ".join(stale), generate.REGENERATE))


def test_the_check_mode_reports_a_changed_file(tmp_path):
    generate.write(tmp_path)
    assert generate.differences(tmp_path) == []
    path = tmp_path / "aetherlink_sla.json"
    path.write_text(path.read_text().replace("AetherLink SLA", "Edited by hand"))
    (tmp_path / "stray.json").write_text("{}\n")
    assert generate.differences(tmp_path) == ["aetherlink_sla.json (differs)", "stray.json (not generated)"]
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1


def test_json_format_is_stable():
    for name, data in COMMITTED.items():
        text = (DASHBOARD_DIR / name).read_text()
        assert text == json.dumps(data, indent=2, sort_keys=True) + "\n", name


# --- Identity ------------------------------------------------------------------


def test_uids_are_exactly_the_fixed_set():
    uids = [d.get("uid") for d in DASHBOARDS]
    assert len(uids) == len(set(uids)), "duplicate uids: %s" % uids
    assert set(uids) == FIXED_UIDS
    for name, data in COMMITTED.items():
        assert name == "%s.json" % data["uid"], "%s holds the dashboard %s" % (name, data["uid"])


@pytest.mark.parametrize("dash", DASHBOARDS, ids=IDS)
def test_title_and_tags(dash):
    assert dash["title"].startswith("AetherLink"), dash["title"]
    assert "aetherlink" in dash["tags"]
    assert "id" not in dash or dash["id"] is None, "a provisioned dashboard carries no database id"


@pytest.mark.parametrize("dash", DASHBOARDS, ids=IDS)
def test_panel_ids_are_unique(dash):
    ids = [p["id"] for p in dash["panels"]] + [q["id"] for p in dash["panels"] for q in p.get("panels", [])]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids), ids


# --- Datasource and queries ----------------------------------------------------------


@pytest.mark.parametrize("dash", DASHBOARDS, ids=IDS)
def test_every_panel_and_variable_uses_the_provisioned_datasource(dash):
    for row in (p for p in dash["panels"] if p.get("type") == "row"):
        assert row.get("datasource") in (None, DATASOURCE), row["title"]
    for panel in queries.iter_panels(dash):
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource") == DATASOURCE, (panel["title"], target.get("refId"))
    for variable in dash["templating"]["list"]:
        if variable.get("type") == "query":
            assert variable.get("datasource") == DATASOURCE, variable["name"]


@pytest.mark.parametrize("dash", DASHBOARDS, ids=IDS)
def test_every_panel_has_a_query(dash):
    for panel in queries.iter_panels(dash):
        exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
        assert exprs and all(exprs), "panel %r of %s has no query" % (panel.get("title"), dash["uid"])
    titles = [(q.title, q.ref_id) for q in queries.panel_queries(dash)]
    assert len(titles) == len(set(titles)), "the live tests name queries by (panel title, refId): %s" % titles


@pytest.mark.parametrize("dash", DASHBOARDS, ids=IDS)
def test_tenant_variable(dash):
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert "tenant" in variables, dash["uid"]
    tenant = variables["tenant"]
    assert tenant["type"] == "query"
    assert tenant["includeAll"] is True and tenant["allValue"] == queries.ALL_VALUE
    assert tenant["multi"] is True
    assert tenant["refresh"] == 2, "refresh on time range change"
    [variable_query] = [v for v in queries.variable_queries(dash) if v.name == "tenant"]
    assert variable_query.query == "label_values(aether_cache_requests_total, tenant)"
    assert queries.label_values_request(variable_query.query) == (
        "/api/v1/label/tenant/values", {"match[]": "aether_cache_requests_total"})
    assert "aether_cache_requests_total" in contract_metrics()
    # Grafana applies the regex (JavaScript, /.../) to each value: "_unknown" must go, tenants stay.
    regex = re.compile(variable_query.regex.strip("/"))
    assert not regex.search("_unknown")
    for name in ("acme-corp", "vip-initech", "premium-umbrella", "unknown-co"):
        assert regex.search(name), name


@pytest.mark.parametrize("dash", DASHBOARDS, ids=IDS)
def test_per_tenant_queries_match_tenant_with_a_regex(dash):
    problems = []
    for q in queries.panel_queries(dash):
        for name, matchers in selectors(q.expr):
            for label, op, value in matchers:
                if re.search(r"\$|\[\[", value) and op != "=~":
                    problems.append("%s %s: %s%s\"%s\" (must be =~, for All and several tenants)"
                                    % (q.title, q.ref_id, label, op, value))
            if name and is_per_tenant(name) and ("tenant", "=~", "$tenant") not in matchers:
                problems.append("%s %s: %s without tenant=~\"$tenant\"" % (q.title, q.ref_id, name))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("dash", DASHBOARDS, ids=IDS)
def test_panels_read_recorded_series(dash):
    """Dashboards are cheap: they read the recording rules (and ALERTS), and a
    raw counter, should one ever be needed, goes through $__rate_interval."""
    raw = contract_metrics()
    problems = []
    for q in queries.panel_queries(dash):
        for name in metric_names(q.expr):
            if name in raw:
                problems.append("%s %s reads the raw series %s" % (q.title, q.ref_id, name))
            elif ":" not in name and name not in PROMETHEUS_SERIES:
                problems.append("%s %s reads an unknown series %s" % (q.title, q.ref_id, name))
        for window in re.findall(r"\b(?:rate|irate|increase)\s*\([^\[]*\[([^\]]*)\]", q.expr):
            if window != "$__rate_interval":
                problems.append("%s %s: a rate over [%s], not [$__rate_interval]" % (q.title, q.ref_id, window))
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def recorded_series(render_rules, tmp_path_factory):
    """Names the prometheus role records, from its rendered rule files."""
    rendered = render_rules(tmp_path_factory.mktemp("rules"), "-e", RULES_FIXTURE)
    names = set()
    for path in sorted(rendered.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            names |= {rule["record"] for rule in group.get("rules", []) if "record" in rule}
    return names


def test_every_recorded_series_used_is_recorded(recorded_series):
    used = {}
    for dash in DASHBOARDS:
        for q in queries.panel_queries(dash):
            for name in metric_names(q.expr):
                if ":" in name:
                    used.setdefault(name, set()).add("%s / %s" % (dash["uid"], q.title))
    missing = sorted(set(used) - recorded_series)
    assert not missing, (
        "the dashboards read %d recorded series that roles/prometheus does not record (yet):\n%s"
        % (len(missing), "\n".join("  %s  (%s)" % (name, "; ".join(sorted(used[name]))) for name in missing)))


# --- queries.py ------------------------------------------------------------------


def test_panel_queries_cover_collapsed_rows_and_mark_the_alert_tables():
    health = COMMITTED["aetherlink_health.json"]
    nested = [p["title"] for row in health["panels"] if row.get("type") == "row" for p in row.get("panels", [])]
    assert nested, "the health dashboard keeps its components in a collapsed row"
    assert set(nested) <= {q.title for q in queries.panel_queries(health)}
    for dash in DASHBOARDS:
        for q in queries.panel_queries(dash):
            is_alert_table = "ALERTS{" in q.expr
            assert q.may_be_empty == is_alert_table, (dash["uid"], q.title)
    assert any(q.may_be_empty for q in queries.panel_queries(COMMITTED["aetherlink_sla.json"]))


@pytest.mark.parametrize("dash", DASHBOARDS, ids=IDS)
@pytest.mark.parametrize("tenant", ["acme-corp", queries.ALL_VALUE, ["acme-corp", "vip-initech"]])
def test_substituted_queries_are_well_formed(dash, tenant):
    known = contract_metrics() | PROMETHEUS_SERIES
    for q in queries.panel_queries(dash):
        expr = queries.substitute(q.expr, tenant)
        assert "$" not in expr and "[[" not in expr, expr
        assert balanced(expr), "unbalanced brackets or quotes: %s" % expr
        for name in metric_names(expr):
            assert ":" in name or name in known, "unknown metric %s in %s" % (name, expr)
        for _name, matchers in selectors(expr):
            for label, op, value in matchers:
                if label == "tenant":
                    re.compile(value.replace("\\\\", "\\"))  # the regex Prometheus gets is valid


@pytest.mark.parametrize("expr, tenant, expected", [
    ('m{tenant=~"$tenant"}', "acme-corp", 'm{tenant=~"acme-corp"}'),
    ('m{tenant=~"${tenant}"}', "acme-corp", 'm{tenant=~"acme-corp"}'),
    ('m{tenant=~"[[tenant]]"}', "acme-corp", 'm{tenant=~"acme-corp"}'),
    ('m{tenant=~"${tenant:regex}"}', "acme-corp", 'm{tenant=~"acme-corp"}'),
    ('m{tenant=~"$tenant"}', ".*", 'm{tenant=~".*"}'),
    ('m{tenant=~"$tenant"}', ["acme-corp", "globex"], 'm{tenant=~"(acme-corp|globex)"}'),
    ('m{tenant=~"$tenant"}', "a.b", 'm{tenant=~"a\\\\.b"}'),
    ('m{tenant=~"$tenant", route=~"^q$"}', "globex", 'm{tenant=~"globex", route=~"^q$"}'),
    ('rate(c{tenant=~"$tenant"}[$__rate_interval])', "globex", 'rate(c{tenant=~"globex"}[5m])'),
    ("avg_over_time(m[$__interval])", ".*", "avg_over_time(m[5m])"),
    ("increase(c[$__range])", ".*", "increase(c[1h])"),
    ("increase(c[${__range}]) / $__range_s", ".*", "increase(c[1h]) / 3600"),
    ("x * $__range_ms + $__interval_ms", ".*", "x * 3600000 + 300000"),
])
def test_substitute(expr, tenant, expected):
    assert queries.substitute(expr, tenant) == expected


def test_substitute_takes_the_intervals_given():
    expr = "rate(c[$__rate_interval]) + rate(c[$__interval]) + increase(c[$__range]) + $__range_s"
    assert (queries.substitute(expr, "x", interval="1m", rate_interval="2m", time_range="30m")
            == "rate(c[2m]) + rate(c[1m]) + increase(c[30m]) + 1800")


@pytest.mark.parametrize("expr", ['m{tenant=~"$tenants"}', "m{x=~\"$team\"}", "m{x=~\"[[team]]\"}", "m[$__unknown]"])
def test_substitute_refuses_unknown_variables(expr):
    with pytest.raises(ValueError, match="unknown variable"):
        queries.substitute(expr, "acme-corp")


def test_label_values_request():
    assert queries.label_values_request("label_values(tenant)") == ("/api/v1/label/tenant/values", {})
    with pytest.raises(ValueError):
        queries.label_values_request("query_result(up)")


def test_queries_module_needs_only_the_standard_library():
    """The live tests import it on machines without the SDK (dashboards/ on sys.path)."""
    imports = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", (ROOT / "dashboards" / "queries.py").read_text(), re.M)
    assert set(imports) <= {"collections", "re"}, imports
