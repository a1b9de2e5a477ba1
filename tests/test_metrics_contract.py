"""The metrics contract (docs/metrics.md) against the app and the recording rules.

The metric table of docs/metrics.md is the reference: the app (the
`aetherlink` package, installed editable in the venv) must register exactly
those metric families with exactly those label names and types, every raw
metric that the recording rules template reads must be in the table, every
series the template records must be named in docs/metrics.md, and the
histogram bounds the shared checks accept must be the app's.
"""

import re

import yaml
from aetherlink import metrics as metrics_module

from conftest import ROOT

DOC = ROOT / "docs" / "metrics.md"
RULES_TEMPLATE = ROOT / "roles" / "prometheus" / "templates" / "aetherlink.rules.yml.j2"
SHARED_VARS = ROOT / "roles" / "aetherlink" / "vars" / "main.yml"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan"}
JINJA = "JINJA"  # stands for a templated value (a price, a weight, a window) in rule_expressions()


def contract_table(text=None):
    """{exposed metric name: {"type", "labels"}} from the first table whose header starts with `metric`."""
    lines = (DOC.read_text() if text is None else text).splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells[:3] == ["metric", "type", "labels"]:
            table = {}
            for row in lines[i + 2:]:
                if not row.lstrip().startswith("|"):
                    break
                cells = [c.strip() for c in row.strip().strip("|").split("|")]
                name = re.fullmatch(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`", cells[0])
                assert name, "docs/metrics.md: first cell is not a backticked metric name: %r" % row
                labels = [re.match(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)", part) for part in cells[2].split(",")]
                assert all(labels), "docs/metrics.md: unreadable labels cell: %r" % row
                table[name.group(1)] = {"type": cells[1], "labels": {m.group(1) for m in labels}}
            return table
    raise AssertionError("docs/metrics.md has no table with the header | metric | type | labels | ...")


def app_families():
    """{exposed metric name: {"type", "labels"}} of the aether_* families the app registers."""
    m = metrics_module.Metrics()
    m.init_tenant("contract-co")  # every label combination of a tenant exists from here on
    families = {}
    for family in m.registry.collect():
        if not family.name.startswith("aether"):
            continue
        exposed = family.name + "_total" if family.type == "counter" else family.name
        labels = set()
        for sample in family.samples:
            labels |= set(sample.labels) - ({"le"} if family.type == "histogram" else set())
        families[exposed] = {"type": family.type, "labels": labels}
    return families


def raw_metrics(expr):
    """Metric names an expression reads, without recorded series (names with a colon)."""
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r'"[^"]*"', " ", expr)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = match.group(0)
        if expr[match.end():].lstrip().startswith("(") or word.lower() in PROMQL_WORDS or ":" in word or word == JINJA:
            continue
        names.add(word)
    return names


def rule_expressions():
    """[(record or alert name, expr)] of the template; a loop's body counts once, {{ ... }} becomes JINJA."""
    text = RULES_TEMPLATE.read_text()
    text = re.sub(r"\{#.*?#\}", "", text, flags=re.S)
    text = re.sub(r"\{%.*?%\}", "", text, flags=re.S)
    text = re.sub(r"\{\{.*?\}\}", JINJA, text, flags=re.S)
    rules = [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]
    return [(r.get("record") or r.get("alert"), r["expr"]) for r in rules]


def contract_name(raw, table):
    """The table's name for a raw series name (histogram series carry _bucket/_sum/_count)."""
    if raw in table:
        return raw
    for suffix in HISTOGRAM_SUFFIXES:
        base = raw[: -len(suffix)]
        if raw.endswith(suffix) and table.get(base, {}).get("type") == "histogram":
            return base
    return None


def test_contract_table_is_readable():
    table = contract_table()
    assert len(table) >= 6
    assert all(entry["type"] in {"counter", "gauge", "histogram", "summary"} for entry in table.values())


def test_app_defines_exactly_the_contract_metrics():
    table, app = contract_table(), app_families()
    assert set(app) == set(table), "app only: %s; docs/metrics.md only: %s" % (
        sorted(set(app) - set(table)), sorted(set(table) - set(app)))
    for name, entry in table.items():
        assert app[name]["type"] == entry["type"], "%s: docs/metrics.md says %s, the app registers a %s" % (
            name, entry["type"], app[name]["type"])
        assert app[name]["labels"] == entry["labels"], "%s: docs/metrics.md labels %s, the app's %s" % (
            name, sorted(entry["labels"]), sorted(app[name]["labels"]))


def test_other_families_are_only_the_standard_collectors():
    registry = metrics_module.Metrics().registry
    others = {f.name for f in registry.collect() if not f.name.startswith("aether")}
    assert all(n.startswith(("process_", "python_")) for n in others), sorted(others)


def test_documented_label_values_match_the_app():
    doc = DOC.read_text()
    assert "`%s`" % metrics_module.UNKNOWN_TENANT in doc
    for route in metrics_module.ROUTES:
        assert "| `%s` |" % route in doc, "route %s is not in docs/metrics.md's route table" % route
    for bound in metrics_module.DURATION_BUCKETS:
        assert "`%r`" % float(bound) in doc, "bucket %s is not in docs/metrics.md" % bound


def test_recording_rules_read_only_contract_metrics():
    table, expressions = contract_table(), rule_expressions()
    assert expressions, "no rules found in %s" % RULES_TEMPLATE
    used = set()
    for record, expr in expressions:
        for raw in raw_metrics(expr):
            assert contract_name(raw, table), "%s reads %s, which is not in docs/metrics.md" % (record, raw)
            used.add(contract_name(raw, table))
    # the answer-path counters (seed rules, billing), the HTTP counter (errors,
    # availability) and the histogram (latency): every metric of the contract
    assert used == set(table), "no rule reads %s" % sorted(set(table) - used)


def test_recorded_series_are_documented():
    """Every series the template records is named in docs/metrics.md (a templated
    suffix, such as a window, as `<...>`)."""
    doc = DOC.read_text()
    missing = set()
    for record, _ in rule_expressions():
        name = record.split(JINJA)[0] + ("<" if JINJA in record else "`")
        if "`" + name not in doc:
            missing.add(record.replace(JINJA, "<...>"))
    assert not missing, "docs/metrics.md does not name %s" % sorted(missing)


def test_checked_latency_bounds_are_the_apps():
    """The shared checks accept as SLA latency threshold only a bound of the app's histogram."""
    bounds = yaml.safe_load(SHARED_VARS.read_text())["_aetherlink_latency_bucket_bounds"]
    assert bounds == [float(b) for b in metrics_module.DURATION_BUCKETS]


def test_rule_parser_sees_raw_metrics():
    """The parser is not blind: a made-up metric and a histogram series are found."""
    table = contract_table()
    expr = ('100 * sum by (tenant) (rate(aether_made_up_total{rerank="true"}[5m])) / '
            "histogram_quantile(0.99, sum by (le) (rate(aether_request_duration_seconds_bucket[5m]))) "
            "and on (tenant) aether:cache_hit_ratio:5m")
    raw = raw_metrics(expr)
    assert raw == {"aether_made_up_total", "aether_request_duration_seconds_bucket"}
    assert contract_name("aether_made_up_total", table) is None
    assert contract_name("aether_request_duration_seconds_bucket", table) == "aether_request_duration_seconds"


def test_documented_unknown_tenant_codes_match_the_app():
    """The table of series pre-created for `_unknown` lists exactly the app's routes and codes."""
    lines = DOC.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("| route | codes pre-created"))
    documented = {}
    for row in lines[header + 2:]:
        if not row.lstrip().startswith("|"):
            break
        route, codes = [c.strip() for c in row.strip().strip("|").split("|")]
        documented[route.strip("`")] = tuple(c.strip() for c in codes.split(","))
    assert documented == {route: tuple(codes) for route, codes in metrics_module.UNKNOWN_ROUTE_CODES.items()}
    assert set(documented) == set(metrics_module.ROUTES)
