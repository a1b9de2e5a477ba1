"""Unit tests of the verify playbook's filters (roles/aetherlink/filter_plugins/aetherlink_verify.py).

Controller only: the evaluators get registered task results as Ansible
builds them (uri, slurp, command, an unreachable host), the report filters
plain rows. No container, no network.
"""

import base64
import importlib.util
import re

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import ROOT

PLUGIN = ROOT / "roles" / "aetherlink" / "filter_plugins" / "aetherlink_verify.py"


def load():
    spec = importlib.util.spec_from_file_location("aetherlink_filter_aetherlink_verify", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


v = load()

TENANTS = ["acme-corp", "globex", "vip-initech", "premium-umbrella"]
SEED_RECORDS = ["aether:cache_hit_ratio:5m", "aether:rerank_utilization_pct:15m", "aether:lowconfidence_pct:15m"]
SECRET = "S3cret-Passw0rd-never-shown"


# --- Registered results as Ansible builds them -----------------------------------


def answer(status=200, json=None, content=None, **extra):
    """A uri result (failed_when: false) with the request it came from, secrets included."""
    result = {
        "changed": False,
        "failed": False,
        "status": status,
        "url": "http://127.0.0.1:3000/api/search",
        "msg": (
            "OK (unknown bytes)"
            if status == 200
            else "Status code was %d and not [200]: HTTP Error %d" % (status, status)
        ),
        "invocation": {
            "module_args": {
                "url": "http://127.0.0.1:3000/api/search",
                "url_username": "admin",
                "url_password": SECRET,
                "headers": {"Authorization": "Bearer " + SECRET},
            }
        },
    }
    if json is not None:
        result["json"] = json
    if content is not None:
        result["content"] = content
    result.update(extra)
    return result


def refused():
    return {
        "changed": False,
        "failed": False,
        "status": -1,
        "url": "http://127.0.0.1:9090/-/ready",
        "msg": "Status code was -1 and not [200]: Request failed: <urlopen error [Errno 111] Connection refused>",
        "invocation": {"module_args": {"url_password": SECRET}},
    }


def unreachable_result():
    return {
        "unreachable": True,
        "changed": False,
        "msg": "Failed to connect to the host via ssh: ssh: connect to host prom-1 port 22: Connection refused",
    }


def skipped():
    return {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}


def slurped(path, document):
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    return {
        "changed": False,
        "failed": False,
        "item": path,
        "source": path,
        "encoding": "base64",
        "content": base64.b64encode(text.encode()).decode(),
    }


def slurp_missing(path):
    return {"changed": False, "failed": False, "item": path, "msg": "file not found: %s" % path}


def prom(data):
    return answer(json={"status": "success", "data": data})


RULE_FILES = {
    "/etc/prometheus/rules/aetherlink.rules.yml": {
        "groups": [
            {
                "name": "aetherlink_recording",
                "rules": [{"record": r, "expr": "1"} for r in SEED_RECORDS]
                + [{"record": "aether:health_score:5m", "expr": "1"}],
            }
        ]
    },
    "/etc/prometheus/rules/aetherlink.alerts.yml": {
        "groups": [
            {
                "name": "aetherlink_alerts",
                "rules": [
                    {"alert": "CacheEffectivenessDrop", "expr": "1"},
                    {"alert": "LowConfidenceSpike", "expr": "1"},
                ],
            }
        ]
    },
}
ROLE_ALERTS = ["CacheEffectivenessDrop", "LowConfidenceSpike"]


def rules_api(drop=(), health=None, errors=None, last_evaluation="2026-01-01T00:00:30.123456789Z"):
    """GET /api/v1/rules with the rules of RULE_FILES (minus `drop`)."""
    health = health or {}
    errors = errors or {}
    groups = []
    for document in RULE_FILES.values():
        for group in document["groups"]:
            rules = []
            for rule in group["rules"]:
                name = rule.get("record") or rule.get("alert")
                if name in drop:
                    continue
                rules.append(
                    {
                        "name": name,
                        "type": "recording" if "record" in rule else "alerting",
                        "health": health.get(name, "ok"),
                        "lastError": errors.get(name, ""),
                    }
                )
            groups.append({"name": group["name"], "rules": rules, "lastEvaluation": last_evaluation})
    return prom({"groups": groups})


def files(missing=()):
    return [slurp_missing(p) if p in missing else slurped(p, d) for p, d in RULE_FILES.items()]


def only(rows):
    assert len(rows) == 1, rows
    return rows[0]


def by_check(rows):
    return {r["check"]: r for r in rows}


# --- The plugin -------------------------------------------------------------------


def test_filters_are_prefixed_documented_and_callable():
    filters = v.FilterModule().filters()
    assert {"aetherlink_verify_table", "aetherlink_verify_failures", "aetherlink_verify_collect"} <= set(filters)
    for name, function in filters.items():
        assert name.startswith("aetherlink_verify_"), name
        assert callable(function)
        assert (function.__doc__ or "").strip(), name


# --- Any service -------------------------------------------------------------------


def test_unreachable_host_is_one_failed_row_with_the_reason():
    row = only(v.unreachable(unreachable_result(), "prometheus"))
    assert row == {
        "service": "prometheus",
        "check": "host reachable",
        "status": "failed",
        "detail": "Failed to connect to the host via ssh: ssh: connect to host prom-1 port 22: Connection refused",
    }


def test_http_ok_refused_and_error_status():
    assert (
        only(v.http(answer(content="Prometheus Server is Ready."), "prometheus", "prometheus ready"))["status"] == "ok"
    )
    row = only(v.http(refused(), "prometheus", "prometheus ready"))
    assert row["status"] == "failed"
    assert row["detail"] == "no answer: <urlopen error [Errno 111] Connection refused>"
    row = only(v.http(answer(503, content="Service Unavailable"), "alertmanager", "alertmanager ready"))
    assert (row["service"], row["check"], row["status"], row["detail"]) == (
        "alertmanager",
        "alertmanager ready",
        "failed",
        "HTTP 503: Service Unavailable",
    )
    assert only(v.http(unreachable_result(), "grafana", "x"))["detail"].startswith("host unreachable: ")


@pytest.mark.parametrize(
    "content, status, detail",
    [
        (
            "# HELP x\nprometheus_config_last_reload_successful 1\n",
            "ok",
            "prometheus_config_last_reload_successful is 1",
        ),
        (
            "prometheus_config_last_reload_successful 0\n",
            "failed",
            "prometheus_config_last_reload_successful is 0: the last reload",
        ),
        ("prometheus_config_last_reload_success_timestamp_seconds 1.7e9\n", "failed", "not found in /metrics"),
    ],
)
def test_reload_metric(content, status, detail):
    row = only(
        v.reload_status(
            answer(content=content),
            "prometheus",
            "prometheus config reload",
            "prometheus_config_last_reload_successful",
        )
    )
    assert row["status"] == status
    assert detail in row["detail"]


def test_reload_without_an_answer():
    row = only(
        v.reload_status(
            refused(), "alertmanager", "alertmanager config reload", "alertmanager_config_last_reload_successful"
        )
    )
    assert row["status"] == "failed" and row["detail"].endswith("(GET /metrics)")


def test_settled_is_false_while_a_row_asks_again():
    assert v.settled([])
    assert v.settled([{"check": "a", "status": "ok"}])
    assert not v.settled([{"check": "a", "status": "failed", "retry": True}])


# --- Prometheus --------------------------------------------------------------------


def test_rules_all_deployed_loaded_and_healthy():
    rows = by_check(v.rules(rules_api(), files(), ROLE_ALERTS))
    assert [r["status"] for r in rows.values()] == ["ok", "ok", "ok"]
    assert rows["rule files deployed"]["detail"] == "2 files: 4 records, 2 alerts"
    assert rows["rules loaded"]["detail"] == "4 records, 2 alerts of the rule files loaded"
    assert rows["rules healthy"]["detail"] == "no rule in error (6 rules)"


def test_rules_missing_file_and_rule_not_loaded_are_named():
    path = "/etc/prometheus/rules/aetherlink.rules.yml"
    rows = by_check(v.rules(rules_api(drop={"aether:health_score:5m"}), files(missing={path}), ROLE_ALERTS))
    assert rows["rule files deployed"]["status"] == "failed"
    assert rows["rule files deployed"]["detail"] == "%s missing" % path
    # The records of the missing file are unknown; the alerts are still expected.
    assert rows["rules loaded"]["status"] == "ok"

    rows = by_check(v.rules(rules_api(drop={"aether:health_score:5m", "LowConfidenceSpike"}), files(), ROLE_ALERTS))
    assert rows["rules loaded"]["status"] == "failed"
    assert rows["rules loaded"]["detail"] == "not loaded: aether:health_score:5m, LowConfidenceSpike"


def test_rules_role_alert_missing_from_the_files_and_unparsable_file():
    rows = by_check(v.rules(rules_api(), files(), ROLE_ALERTS + ["SLOLatencyFastBurn"]))
    assert rows["rule files deployed"]["status"] == "failed"
    assert "alerts of the role not in the files: SLOLatencyFastBurn" in rows["rule files deployed"]["detail"]
    assert rows["rules loaded"]["detail"] == "not loaded: SLOLatencyFastBurn"

    broken = [slurped("/etc/prometheus/rules/custom.rules.yml", "groups: [unclosed")]
    row = by_check(v.rules(rules_api(), broken, []))["rule files deployed"]
    assert row["status"] == "failed" and "not valid YAML" in row["detail"]


def test_rules_in_error_fail_and_not_evaluated_yet_do_not():
    rows = by_check(
        v.rules(
            rules_api(
                health={"aether:health_score:5m": "err", "LowConfidenceSpike": "unknown"},
                errors={"aether:health_score:5m": "many-to-many matching not allowed"},
            ),
            files(),
            ROLE_ALERTS,
        )
    )
    assert rows["rules healthy"]["status"] == "failed"
    assert (
        rows["rules healthy"]["detail"]
        == "aether:health_score:5m (aetherlink_recording): many-to-many matching not allowed"
    )
    rows = by_check(v.rules(rules_api(health={"LowConfidenceSpike": "unknown"}), files(), ROLE_ALERTS))
    assert rows["rules healthy"] == {
        "service": "prometheus",
        "check": "rules healthy",
        "status": "ok",
        "detail": "no rule in error (6 rules, 1 not evaluated yet)",
    }


def test_rules_without_an_answer_fail_loaded_and_healthy():
    rows = by_check(v.rules(refused(), files(), ROLE_ALERTS))
    assert rows["rule files deployed"]["status"] == "ok"
    assert rows["rules loaded"]["status"] == rows["rules healthy"]["status"] == "failed"
    assert "Connection refused" in rows["rules loaded"]["detail"]


def target(job, instance, health, error=""):
    return {"labels": {"job": job, "instance": instance}, "health": health, "lastError": error}


def test_targets_up_down_and_not_scraped_yet():
    up = prom({"activeTargets": [target("prometheus", "prom-1", "up"), target("aether_app", "aether-app-1", "up")]})
    assert only(v.targets(up)) == {
        "service": "prometheus",
        "check": "targets up",
        "status": "ok",
        "detail": "2 targets up",
    }

    down = prom(
        {
            "activeTargets": [
                target("prometheus", "prom-1", "up"),
                target(
                    "aether_app",
                    "aether-app-1",
                    "down",
                    'Get "http://aether-app-1:8000/metrics": dial tcp: connection refused',
                ),
                target("alertmanager", "am-2", "unknown"),
            ]
        }
    )
    row = only(v.targets(down))
    assert row["status"] == "failed"
    assert row["detail"].startswith("aether_app/aether-app-1 down (Get ")
    assert row["detail"].endswith("; alertmanager/am-2 not scraped yet")
    assert row["retry"] is True  # asked again while a target is unknown

    only_down = prom({"activeTargets": [target("aether_app", "aether-app-1", "down")]})
    row = only(v.targets(only_down))
    assert row["detail"] == "aether_app/aether-app-1 down" and "retry" not in row
    assert only(v.targets(prom({"activeTargets": []})))["detail"] == "no active scrape target"
    assert only(v.targets(refused()))["status"] == "failed"


def test_prometheus_time_and_rfc3339_with_nanoseconds():
    assert v.prometheus_time(prom({"resultType": "scalar", "result": [1767225600.5, "1767225600.5"]})) == 1767225600.5
    assert v.prometheus_time(refused()) is None
    assert v.prometheus_time(skipped()) is None
    assert v._epoch("2026-01-01T00:00:00.5Z") == 1767225600.5
    assert v._epoch("2026-01-01T01:00:00.123456789+01:00") == pytest.approx(1767225600.123456789)
    assert v._epoch("0001-01-01T00:00:00Z") < 0  # never evaluated
    assert v._epoch("yesterday") is None


def test_evaluation_after_the_traffic():
    evaluated = v._epoch("2026-01-01T00:00:30.123456789Z")
    rules = rules_api(last_evaluation="2026-01-01T00:00:30.123456789Z")
    assert only(v.evaluation(rules, SEED_RECORDS, evaluated - 20, 17))["status"] == "ok"
    row = only(v.evaluation(rules, SEED_RECORDS, evaluated - 10, 17))
    assert row["status"] == "failed" and row["retry"] is True
    assert row["detail"] == "not evaluated since the traffic: aetherlink_recording"
    row = only(v.evaluation(rules, SEED_RECORDS, None, 17))
    assert row["detail"] == "could not read Prometheus' time after the traffic" and "retry" not in row
    row = only(v.evaluation(rules_api(drop={SEED_RECORDS[1]}), SEED_RECORDS, 0, 0))
    assert row["detail"] == "rules not loaded: %s" % SEED_RECORDS[1]


def data(values):
    """An instant query of the seed records: {(record, tenant): value}."""
    return prom(
        {
            "resultType": "vector",
            "result": [
                {"metric": {"__name__": r, "tenant": t}, "value": [1767225600, value]}
                for (r, t), value in values.items()
            ],
        }
    )


def test_tenant_data_a_value_per_tenant_and_record():
    full = {(r, t): "50" for r in SEED_RECORDS for t in TENANTS}
    rows = v.tenant_data(data(full), SEED_RECORDS, TENANTS)
    assert [r["check"] for r in rows] == ["data " + r for r in SEED_RECORDS]
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["detail"] == "acme-corp 50.0, globex 50.0, vip-initech 50.0, premium-umbrella 50.0"


def test_tenant_data_missing_tenant_and_nan_fail():
    values = {(r, t): "50" for r in SEED_RECORDS for t in TENANTS}
    del values[(SEED_RECORDS[0], "globex")]
    values[(SEED_RECORDS[2], "vip-initech")] = "NaN"
    rows = v.tenant_data(data(values), SEED_RECORDS, TENANTS, "checked", "traffic sent 3 s ago")
    assert [r["status"] for r in rows] == ["failed", "ok", "failed"]
    assert rows[0]["detail"] == "no value for globex (traffic sent 3 s ago)"
    assert rows[2]["detail"] == "NaN for vip-initech (traffic sent 3 s ago)"
    assert rows[0]["retry"] is True


def test_tenant_data_not_checked_without_traffic():
    rows = v.tenant_data(skipped(), SEED_RECORDS, TENANTS, "skipped", "no traffic requested")
    assert [(r["status"], r["detail"]) for r in rows] == [("skipped", "not checked (no traffic requested)")] * 3
    with pytest.raises(AnsibleFilterError, match="mode must be checked or skipped"):
        v.tenant_data(skipped(), SEED_RECORDS, TENANTS, "maybe")


# --- Alertmanager ------------------------------------------------------------------


def status(cluster_status, peers):
    return answer(json={"cluster": {"status": cluster_status, "peers": [{"name": "p%d" % i} for i in range(peers)]}})


def test_cluster_ready_with_every_peer():
    assert only(v.am_cluster(status("ready", 2), 2, True))["detail"] == "ready, 2 peers"
    row = only(v.am_cluster(status("ready", 1), 2, True))
    assert (row["status"], row["detail"], row["retry"]) == ("failed", "status ready, 1 of 2 peers", True)
    row = only(v.am_cluster(status("settling", 2), "2", "True"))
    assert row["status"] == "failed" and row["retry"] is True


def test_cluster_disabled_when_not_clustered():
    disabled = answer(json={"cluster": {"status": "disabled"}})
    assert only(v.am_cluster(disabled, 1, False))["status"] == "ok"
    assert only(v.am_cluster(status("ready", 3), 1, False))["status"] == "failed"
    assert only(v.am_cluster(refused(), 2, True))["status"] == "failed"


# --- AetherLink API ----------------------------------------------------------------


def test_app_health():
    ok = answer(json={"status": "ok", "db": "ok", "tenants": 4, "version": "0.1.0"})
    assert (
        only(v.app_health(ok, [{"name": t} for t in TENANTS]))["detail"] == "status ok, db ok, 4 tenants, version 0.1.0"
    )
    row = only(v.app_health(ok, 5))
    assert row["status"] == "failed" and row["detail"] == "4 tenants, expected 5 (aetherlink_tenants)"
    down = answer(503, json={"status": "error", "db": "unavailable"})
    assert only(v.app_health(down, 4))["detail"] == "HTTP 503: error (db unavailable)"
    assert only(v.app_health(refused(), 4))["detail"].startswith("no answer: ")


# --- Grafana -----------------------------------------------------------------------


def dpkg(stdout, rc=0):
    return {"changed": False, "failed": False, "rc": rc, "stdout": stdout, "stderr": ""}


def test_grafana_installed_skipped_or_required():
    assert only(v.grafana_installed(dpkg("installed 12.1.1"), "grafana"))["detail"] == "grafana 12.1.1"
    row = only(v.grafana_installed(dpkg("", 1), "grafana"))
    assert (row["status"], row["detail"]) == ("skipped", "not installed here (package grafana)")
    assert only(v.grafana_installed(dpkg("config-files 12.1.1"), "grafana", "true"))["status"] == "failed"


def test_grafana_health_dashboards_and_datasource():
    assert only(v.grafana_health(answer(json={"database": "ok", "version": "12.1.1"})))["status"] == "ok"
    assert only(v.grafana_health(answer(json={"database": "failing"})))["detail"] == "database failing"

    expected = ["aetherlink_rag_tenant_metrics_enhanced", "aetherlink_sla"]
    listed = [
        {"uid": "aetherlink_rag_tenant_metrics_enhanced", "type": "dash-db", "folderTitle": "AetherLink"},
        {"uid": "aetherlink_sla", "type": "dash-db", "folderTitle": "AetherLink"},
        {"uid": "other", "type": "dash-db", "folderTitle": "AetherLink"},
    ]
    assert (
        only(v.grafana_dashboards(answer(json=listed), expected, "AetherLink"))["detail"]
        == "2 dashboards in AetherLink; also other"
    )
    row = only(v.grafana_dashboards(answer(json=listed[1:2]), expected, "AetherLink"))
    assert row["detail"] == "missing: aetherlink_rag_tenant_metrics_enhanced"
    moved = [dict(listed[0], folderTitle="General"), listed[1]]
    assert (
        "not in AetherLink: aetherlink_rag_tenant_metrics_enhanced (folder General)"
        in only(v.grafana_dashboards(answer(json=moved), expected, "AetherLink"))["detail"]
    )

    health = answer(json={"status": "OK", "message": "Successfully queried the Prometheus API."})
    assert only(v.grafana_datasource(health, "aetherlink-prometheus"))["status"] == "ok"
    bad = answer(400, json={"status": "ERROR", "message": "connection refused"})
    assert (
        only(v.grafana_datasource(bad, "aetherlink-prometheus"))["detail"]
        == "aetherlink-prometheus HTTP 400: connection refused"
    )


def test_no_secret_reaches_a_row_or_the_table():
    """The evaluators read answers only: the request's password and headers never show."""
    denied = answer(401, json={"message": "Invalid username or password"})
    rows = (
        v.grafana_dashboards(denied, ["aetherlink_sla"], "AetherLink")
        + v.grafana_datasource(denied, "aetherlink-prometheus")
        + v.grafana_health(answer(json={"database": "ok"}))
        + v.http(answer(content="ok"), "prometheus", "prometheus ready")
        + v.http(refused(), "prometheus", "prometheus ready")
        + v.app_health(answer(json={"status": "ok", "db": "ok", "tenants": 4}), 4)
        + v.am_cluster(status("ready", 2), 2, True)
        + v.targets(prom({"activeTargets": [target("prometheus", "prom-1", "up")]}))
        + v.tenant_data(data({}), SEED_RECORDS, TENANTS)
    )
    assert rows[0]["detail"] == "HTTP 401: Invalid username or password"
    collected = v.collect({"g-1": {"_verify_results": rows}}, {"grafana": ["g-1"]}, ["grafana"])
    text = v.table(collected) + "\n".join(v.failures(collected)) + v.summary(collected)
    assert SECRET not in text
    for row in rows:
        assert set(row) <= {"service", "check", "status", "detail", "retry"}
        assert SECRET not in repr(row)


# --- Report ------------------------------------------------------------------------


def row(host, check, status, detail, service="prometheus"):
    return {"host": host, "service": service, "check": check, "status": status, "detail": detail}


ROWS = [
    row("prometheus-1", "prometheus ready", "ok", "HTTP 200"),
    row("prometheus-1", "targets up", "failed", "aether_app/aether-app-1 down"),
    row("aether-grafana-1", "grafana installed", "skipped", "not installed here (package grafana)", "grafana"),
    row("am-1", "alertmanager cluster", "failed", "status ready,\n 1 of 2 peers", "alertmanager"),
]


def columns(header):
    """Start of each column, from the header line."""
    return [header.index(name) for name in ("host", "check", "result", "detail")]


def test_table_rows_are_aligned_without_trailing_spaces():
    lines = v.table(ROWS).split("\n")
    assert len(lines) == 2 + len(ROWS)
    starts = columns(lines[0])
    assert starts[0] == 0
    for line in lines:
        assert line == line.rstrip()
    for line, expected in zip(lines[2:], ROWS):
        cells = [line[a:b].rstrip() for a, b in zip(starts, starts[1:] + [None])]
        label = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}[expected["status"]]
        assert cells == [expected["host"], expected["check"], label, " ".join(expected["detail"].split())]
        # Two spaces at least between columns: no cell runs into the next.
        for start in starts[1:]:
            assert line[start - 2 : start] == "  "
    assert set(lines[1]) <= {"-", " "}


def test_table_shows_a_failed_check():
    text = v.table(ROWS)
    failed_line = next(line for line in text.split("\n") if "targets up" in line)
    assert re.search(r"prometheus-1\s+targets up\s+FAILED\s+aether_app/aether-app-1 down$", failed_line)


def test_table_of_no_rows():
    lines = v.table([]).split("\n")
    assert lines[0].split() == ["host", "check", "result", "detail"]
    assert lines[2].startswith("(no check ran")
    assert v.failures([]) == []
    assert v.summary([]) == "verify: no check ran"


def test_failures_name_each_failed_check_and_the_summary_counts_them():
    assert v.failures(ROWS) == [
        "prometheus-1 targets up: aether_app/aether-app-1 down",
        "am-1 alertmanager cluster: status ready, 1 of 2 peers",
    ]
    assert v.summary(ROWS) == (
        "verify: 2 checks failed: prometheus-1 targets up: aether_app/aether-app-1 down; "
        "am-1 alertmanager cluster: status ready, 1 of 2 peers"
    )
    assert v.summary(ROWS[:1]) == "verify: all 1 check passed"
    assert v.summary(ROWS[:1] + ROWS[2:3]) == "verify: all 1 check passed (1 not checked)"
    assert v.summary(ROWS[2:3]) == "verify: no check failed, none passed: 1 not checked"


def test_long_details_are_cut_to_one_line():
    long = row("h", "c", "failed", "x " * 500)
    line = v.table([long]).split("\n")[2]
    assert line.endswith("...") and len(line) < 400


def test_collect_orders_hosts_by_service_and_reports_hosts_without_results():
    hostvars = {
        "prom-1": {"_verify_results": v.http(answer(content="ok"), "prometheus", "prometheus ready")},
        # An all-in-one host: its rows go under each of its groups.
        "aio-1": {
            "_verify_results": v.http(answer(content="ok"), "alertmanager", "alertmanager ready")
            + v.app_health(answer(json={"status": "ok", "db": "ok", "tenants": 1}), 1)
        },
        "app-2": {"other": 1},
    }
    groups = {
        "prometheus": ["prom-1"],
        "alertmanager": ["aio-1"],
        "aether_app": ["aio-1", "app-2"],
        "all": ["prom-1", "aio-1", "app-2"],
    }
    rows = v.collect(hostvars, groups)
    assert [(r["host"], r["check"], r["status"]) for r in rows] == [
        ("prom-1", "prometheus ready", "ok"),
        ("aio-1", "alertmanager ready", "ok"),
        ("aio-1", "api healthz", "ok"),
        ("app-2", "aether_app checks", "failed"),
    ]
    assert rows[-1]["detail"].startswith("did not run")
    # Under --limit only the hosts of the run count.
    assert [r["host"] for r in v.collect(hostvars, groups, v.SERVICES, ["prom-1", "localhost"])] == ["prom-1"]
    assert v.collect({}, {}) == []


def test_report_filters_reject_malformed_rows():
    for function in (v.table, v.failures, v.summary):
        with pytest.raises(AnsibleFilterError, match="rows\\[0\\] must be a mapping with check and status"):
            function([{"check": "x", "status": "maybe"}])
        with pytest.raises(AnsibleFilterError, match="rows must be a list"):
            function("not rows")
