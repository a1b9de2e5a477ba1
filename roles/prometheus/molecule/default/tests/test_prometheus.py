"""Verify the prometheus role on a live container, through Prometheus' HTTP API.

The expected thresholds, durations and VIP pattern are read from the
environment's shared variables (testkit.shared_vars(): what the role consumed),
never repeated here.
"""

import json
import re
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[5] / "molecule" / "shared"  # testkit: the scenarios' shared helpers
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

from testkit import (  # noqa: E402
    ROOT, changed_hosts, curl, diff_added_lines, http_json, http_status, main_pid, metric_sum, run_playbook, scenario_env,
    scrape, shared_vars, wait_until, web_login,
)

API = "http://127.0.0.1:9090"
# Basic auth on every endpoint (aetherlink_web_*): the tests log in as the roles do.
LOGIN = web_login(SCENARIO)
SERVICE = "prometheus"
ALERTS_FILE = "/etc/prometheus/rules/aetherlink.alerts.yml"

RECORDING_RULES = {
    # the per-tenant rates every ratio below is derived from (each raw range read once)
    "aether:cache_hits:rate5m",
    "aether:cache_requests:rate5m",
    "aether:rag_answers:rate15m",
    "aether:rag_lowconfidence:rate15m",
    "aether:http_requests_5xx:rate5m",
    "aether:query_requests:rate5m",
    "aether:query_duration_seconds_bucket:rate5m",
    # the seed's six
    "aether:cache_hit_ratio:5m",
    "aether:rerank_utilization_pct:15m",
    "aether:lowconfidence_pct:15m",
    "aether:cache_hit_ratio:5m:all",
    "aether:rerank_utilization_pct:15m:all",
    "aether:lowconfidence_pct:15m:all",
    # health score and its components
    "aether:http_requests:rate5m",
    "aether:http_error_ratio_pct:5m",
    "aether:request_latency_seconds:p50_5m",
    "aether:request_latency_seconds:p90_5m",
    "aether:request_latency_seconds:p99_5m",
    "aether:health_score:5m",
    # SLA (plus the ratios per burn-rate window: slo_ratio_records())
    "aether:sla_availability_objective_pct",
    "aether:sla_latency_objective_pct",
    "aether:http_requests:increase1h",
    "aether:http_requests_5xx:increase1h",
    "aether:query_requests:increase1h",
    "aether:query_requests_slow:increase1h",
    "aether:sla_availability_pct:30d",
    "aether:sla_latency_pct:30d",
    "aether:sla_availability_error_budget_remaining_pct:30d",
    "aether:sla_latency_error_budget_remaining_pct:30d",
    # billing
    "aether:rag_answers:increase1h",
    "aether:tenant_billing_cost_usd:30d",
    "aether:billing_cost_usd:30d",
    # the alert thresholds, for the dashboards
    "aether:alert_threshold_pct",
}

# Recording rule groups -> interval in seconds (prometheus_rules_interval is 30s here).
RECORDING_GROUPS = {
    "aetherlink_recording": 30,
    "aetherlink_slo": 30,
    "aetherlink_slo_long": 120,  # prometheus_rules_slo_long_interval: the 6h SLO ratios
    "aetherlink_billing_hourly": 3600,
    "aetherlink_sla_hourly": 3600,
    "aetherlink_billing": 300,
    "aetherlink_sla": 300,
    "aetherlink_thresholds": 30,
}
ALERT_GROUPS = {"aetherlink_alerts": 30, "aetherlink_slo_alerts": 30}

# alert -> (threshold variable, duration variable, operator, severity, sla label, vip only)
ALERTS = {
    "CacheEffectivenessDrop": ("aetherlink_alert_cache_hit_ratio_min", "aetherlink_alert_cache_hit_ratio_for", "<", "warning", None, False),
    "LowConfidenceSpike": ("aetherlink_alert_lowconfidence_max", "aetherlink_alert_lowconfidence_for", ">", "warning", None, False),
    "LowConfidenceSpikeVIP": ("aetherlink_alert_lowconfidence_vip_max", "aetherlink_alert_lowconfidence_vip_for", ">", "critical", "breach", True),
    "CacheEffectivenessDropVIP": ("aetherlink_alert_cache_hit_ratio_vip_min", "aetherlink_alert_cache_hit_ratio_vip_for", "<", "critical", "at_risk", True),
}

# alert -> (ratio record, objective record, factor variable, window variables prefix, severity, sla label)
SLO_ALERTS = {
    "SLOAvailabilityFastBurn": ("aether:sla_availability_error_ratio", "aether:sla_availability_objective_pct",
                                "aetherlink_slo_fast_burn_factor", "aetherlink_slo_fast_burn", "critical", "breach"),
    "SLOAvailabilitySlowBurn": ("aether:sla_availability_error_ratio", "aether:sla_availability_objective_pct",
                                "aetherlink_slo_slow_burn_factor", "aetherlink_slo_slow_burn", "warning", "at_risk"),
    "SLOLatencyFastBurn": ("aether:sla_latency_slow_ratio", "aether:sla_latency_objective_pct",
                           "aetherlink_slo_fast_burn_factor", "aetherlink_slo_fast_burn", "critical", "breach"),
    "SLOLatencySlowBurn": ("aether:sla_latency_slow_ratio", "aether:sla_latency_objective_pct",
                           "aetherlink_slo_slow_burn_factor", "aetherlink_slo_slow_burn", "warning", "at_risk"),
}

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration):
    return sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", str(duration)))


@pytest.fixture(scope="module")
def shared():
    return shared_vars()


def slo_ratio_records(shared):
    """The SLO ratios, one per burn-rate window (their names carry the window)."""
    windows = {str(shared["aetherlink_slo_%s_burn_%s_window" % (speed, length)])
               for speed in ("fast", "slow") for length in ("long", "short")}
    return {"%s:%s" % (ratio, w) for ratio in ("aether:sla_availability_error_ratio", "aether:sla_latency_slow_ratio")
            for w in windows}


def api(host, path, method="GET"):
    if path.startswith("/api/"):
        return http_json(host, API + path, *LOGIN, method=method)
    return curl(host, API + path, *LOGIN, method=method)


def rules_by_name(host):
    groups = api(host, "/api/v1/rules")["data"]["groups"]
    return {r["name"]: r for g in groups for r in g["rules"]}


def reload_successful(host):
    samples = scrape(host, API + "/metrics", *LOGIN)
    assert any(name == "prometheus_config_last_reload_successful" for name, _ in samples), "metric missing"
    return metric_sum(samples, "prometheus_config_last_reload_successful")


def run_fast_path(*extra_args):
    """Run playbooks/rules.yml against this scenario's inventory; return (rc, output)."""
    return run_playbook(ROOT / "playbooks" / "rules.yml", *extra_args)


def test_service_running_with_lifecycle_api(host):
    service = host.service("prometheus")
    assert service.is_running
    assert service.is_enabled
    assert "--web.enable-lifecycle" in host.file("/etc/default/prometheus").content_string
    assert "--web.enable-lifecycle" in host.check_output("cat /proc/%s/cmdline | tr '\\0' ' '", main_pid(host, SERVICE))


def test_recording_rules_loaded(host, shared):
    # A rule's health is "unknown" until its group's first evaluation, up to
    # one interval after a (re)load: wait for the 30s groups, then they must be
    # "ok". The hourly and 5-minute groups may not have run yet: "ok" or "unknown".
    def recording_rules():
        groups = api(host, "/api/v1/rules?type=record")["data"]["groups"]
        health = {}
        for g in groups:
            for r in g["rules"]:
                health.setdefault(r["name"], set()).add((g["interval"], r["health"]))
        return groups, health

    def short_groups_evaluated():
        return all(h != "unknown" for states in recording_rules()[1].values() for interval, h in states if interval <= 60)

    wait_until(short_groups_evaluated, timeout=70, interval=2)
    groups, health = recording_rules()
    assert set(health) == RECORDING_RULES | slo_ratio_records(shared)
    # Prometheus 2.42 filters the rules by ?type= but still lists every group
    # (those of the other type empty): compare the groups that have rules.
    assert {g["name"]: g["interval"] for g in groups if g["rules"]} == RECORDING_GROUPS
    for name, states in health.items():
        for interval, state in states:
            assert state in ({"ok"} if interval <= 60 else {"ok", "unknown"}), (name, interval, state)


def test_alerts_loaded_with_configured_thresholds(host, shared):
    rules = rules_by_name(host)
    assert set(ALERTS) <= set(rules)
    for name, (thr_var, for_var, op, severity, sla, vip) in ALERTS.items():
        rule = rules[name]
        expr = " ".join(rule["query"].split())
        assert expr.endswith("%s %s" % (op, shared[thr_var])), (name, expr)
        assert rule["duration"] == seconds(shared[for_var]), name
        assert rule["labels"]["severity"] == severity
        assert rule["labels"].get("sla") == sla
        assert ('tenant=~"%s"' % shared["aetherlink_vip_tenant_pattern"] in expr) == vip, expr
        assert "%s%%" % shared[thr_var] in rule["annotations"]["summary"]
        assert "{{ $value" in rule["annotations"]["description"]
        assert rule["annotations"]["runbook_url"].startswith(shared["aetherlink_runbook_base_url"])


def test_alert_groups_and_names_exact(host):
    groups = api(host, "/api/v1/rules?type=alert")["data"]["groups"]
    assert {g["name"]: g["interval"] for g in groups if g["rules"]} == ALERT_GROUPS
    assert {r["name"] for g in groups for r in g["rules"]} == set(ALERTS) | set(SLO_ALERTS)


def test_slo_alerts_loaded_with_configured_factors_and_windows(host, shared):
    rules = rules_by_name(host)
    for name, (ratio, objective, factor_var, windows, severity, sla) in SLO_ALERTS.items():
        rule = rules[name]
        expr = " ".join(rule["query"].split())
        long_window, short_window = shared[windows + "_long_window"], shared[windows + "_short_window"]
        assert "%s:%s" % (ratio, long_window) in expr and "%s:%s" % (ratio, short_window) in expr, (name, expr)
        assert expr.count(objective) == 2, (name, expr)
        # burn rate over the long window AND over the short one, each against the factor
        assert [float(v) for v in re.findall(r">\s*([0-9.eE+-]+)", expr)] == [float(shared[factor_var])] * 2, (name, expr)
        assert rule["duration"] == 0, name
        assert rule["labels"]["severity"] == severity
        assert rule["labels"]["sla"] == sla
        assert "%sx" % shared[factor_var] in rule["annotations"]["summary"]
        assert "{{ $value" in rule["annotations"]["description"]
        assert "over the last %s." % long_window in rule["annotations"]["description"]
        assert rule["annotations"]["runbook_url"] == "%s/%s" % (shared["aetherlink_runbook_base_url"], name.lower())
        assert "{{ $labels.tenant }}" in rule["annotations"]["dashboard"]


def test_alert_thresholds_recorded_for_dashboards(host, shared):
    def thresholds():
        result = api(host, "/api/v1/query?query=aether:alert_threshold_pct")["data"]["result"]
        return {r["metric"]["alertname"]: float(r["value"][1]) for r in result}

    wait_until(lambda: len(thresholds()) == len(ALERTS), timeout=70, interval=2)
    assert thresholds() == {name: float(shared[spec[0]]) for name, spec in ALERTS.items()}


def test_last_reload_successful(host):
    assert reload_successful(host) == 1


def test_targets_follow_inventory(host):
    # A target's health is "unknown" until its first scrape (one interval).
    def targets():
        return {t["labels"]["job"]: t for t in api(host, "/api/v1/targets")["data"]["activeTargets"]}

    wait_until(lambda: targets().get("prometheus", {}).get("health", "unknown") != "unknown", timeout=60, interval=2)
    jobs = targets()
    assert set(jobs) == {"prometheus", "alertmanager", "aether_app"}
    assert jobs["prometheus"]["health"] == "up"
    assert jobs["alertmanager"]["labels"]["instance"] == "alertmanager-test"
    assert jobs["aether_app"]["scrapeUrl"] == "http://aether-app-test:8000/metrics"
    alertmanagers = api(host, "/api/v1/alertmanagers")["data"]
    urls = [a["url"] for a in alertmanagers["activeAlertmanagers"] + alertmanagers["droppedAlertmanagers"]]
    assert urls == ["http://alertmanager-test:9093/api/v2/alerts"]


def test_every_endpoint_requires_the_web_login(host):
    """Without credentials, or with a wrong password, Prometheus answers 401 on
    its API, its lifecycle endpoint and its own metrics; a refused reload is
    not carried out."""
    def reload_timestamp():
        return metric_sum(scrape(host, API + "/metrics", *LOGIN), "prometheus_config_last_reload_success_timestamp_seconds")

    before = reload_timestamp()
    user = shared_vars()["aetherlink_web_username"]
    wrong = ["-u", "%s:not-the-password-%s" % (user, "x" * 8)]
    for method, path in [("POST", "/-/reload"), ("GET", "/api/v1/query?query=up"), ("GET", "/api/v1/rules"),
                         ("GET", "/api/v1/status/config"), ("GET", "/metrics"), ("GET", "/-/ready"), ("GET", "/graph")]:
        assert http_status(host, API + path, method=method) == 401, path
        assert http_status(host, API + path, *wrong, method=method) == 401, path
    assert http_status(host, API + "/api/v1/query?query=up", *LOGIN) == 200
    assert reload_timestamp() == before, "a reload without credentials was carried out"


def test_web_config_holds_a_bcrypt_hash_never_the_password(host):
    password = scenario_env(SCENARIO, "AETHER_WEB_PASSWORD")
    web = host.file("/etc/prometheus/web/web.yml")
    assert web.user == "root" and web.group == "prometheus" and web.mode == 0o640
    assert re.search(r'"%s": "\$2b\$10\$[./A-Za-z0-9]{53}"' % shared_vars()["aetherlink_web_username"],
                     web.content_string), web.content_string
    assert password not in web.content_string
    cmdline = host.check_output("cat /proc/%s/cmdline | tr '\\0' ' '", main_pid(host, SERVICE))
    assert "--web.config.file=/etc/prometheus/web/web.yml" in cmdline
    secret = host.file("/etc/prometheus/secrets/web_password")
    assert secret.mode == 0o640 and secret.group == "prometheus" and secret.content_string == password
    assert password not in host.file("/etc/prometheus/prometheus.yml").content_string
    token = host.file("/etc/prometheus/secrets/app_metrics_token")
    assert token.mode == 0o640 and token.content_string == scenario_env(SCENARIO, "AETHER_METRICS_TOKEN")


def test_scrapes_and_alerting_present_their_credentials(host):
    config = host.file("/etc/prometheus/prometheus.yml").content_string
    jobs = {job["job_name"]: job for job in yaml.safe_load(config)["scrape_configs"]}
    login = {"username": shared_vars()["aetherlink_web_username"], "password_file": "/etc/prometheus/secrets/web_password"}
    assert jobs["prometheus"]["basic_auth"] == login
    assert jobs["alertmanager"]["basic_auth"] == login
    assert jobs["aether_app"]["authorization"] == {"type": "Bearer",
                                                    "credentials_file": "/etc/prometheus/secrets/app_metrics_token"}
    alerting = yaml.safe_load(config)["alerting"]["alertmanagers"][0]
    assert alerting["basic_auth"] == login
    # Its own scrape logs in: the self target is up (test_targets_follow_inventory waits for the first scrape).


def test_password_rotation_needs_no_restart(host):
    """A new web password reaches web.yml and the password file; Prometheus
    takes it at the next request (no reload, no restart), its scrape of itself
    keeps working with it, and a second run changes nothing."""
    pid = main_pid(host, SERVICE)
    old = scenario_env(SCENARIO, "AETHER_WEB_PASSWORD")
    new = old + "-rotated"
    new_login = ["-u", "%s:%s" % (shared_vars()["aetherlink_web_username"], new)]

    def self_target():
        targets = http_json(host, API + "/api/v1/targets", *new_login)["data"]["activeTargets"]
        return next(t for t in targets if t["labels"]["job"] == "prometheus")

    try:
        rc, out = run_playbook(SCENARIO / "converge.yml", env={"AETHER_WEB_PASSWORD": new})
        assert rc == 0, out
        assert new not in out and old not in out
        rotated_at = float(host.check_output("date +%s"))
        assert http_status(host, API + "/api/v1/query?query=up", *new_login) == 200
        assert http_status(host, API + "/api/v1/query?query=up", *LOGIN) == 401
        assert main_pid(host, SERVICE) == pid
        # The next scrape of itself, after the rotation, logs in with the new password.
        def scraped_since_rotation():
            target = self_target()
            return target if _epoch(target["lastScrape"]) > rotated_at + 1 else None

        target = wait_until(scraped_since_rotation, timeout=60, interval=3)
        assert target and target["health"] == "up", target
        rc, out = run_playbook(SCENARIO / "converge.yml", env={"AETHER_WEB_PASSWORD": new})
        assert rc == 0 and changed_hosts(out) == [], out
    finally:
        rc, out = run_playbook(SCENARIO / "converge.yml")
        assert rc == 0, out
    assert http_status(host, API + "/api/v1/query?query=up", *LOGIN) == 200
    assert main_pid(host, SERVICE) == pid


def _epoch(rfc3339):
    """Seconds since the epoch of a Prometheus API timestamp (2026-11-28T22:10:01.123456789Z)."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def test_config_files_not_world_readable(host):
    for path in ("/etc/prometheus/prometheus.yml", "/etc/prometheus/rules/aetherlink.alerts.yml"):
        f = host.file(path)
        assert f.group == "prometheus"
        assert f.mode & 0o007 == 0, path


def test_fast_path_reloads_without_restart_and_purges_stale_rules(host, shared):
    pid = main_pid(host, SERVICE)
    host.check_output("echo 'groups: []' > /etc/prometheus/rules/stale.yml")
    new_threshold = shared["aetherlink_alert_cache_hit_ratio_min"] + 7
    custom = [{"name": "operator", "rules": [{"record": "aether:answers:rate5m",
                                              "expr": "sum by (tenant) (rate(aether_rag_answers_total[5m]))"}]}]
    try:
        rc, out = run_fast_path("-e", json.dumps({"aetherlink_alert_cache_hit_ratio_min": new_threshold,
                                                  "prometheus_custom_rule_groups": custom}))
        assert rc == 0, out
        rules = rules_by_name(host)
        assert rules["CacheEffectivenessDrop"]["query"].strip().endswith("< %s" % new_threshold)
        assert "aether:answers:rate5m" in rules
        assert main_pid(host, SERVICE) == pid, "Prometheus was restarted instead of reloaded"
        assert reload_successful(host) == 1
        assert not host.file("/etc/prometheus/rules/stale.yml").exists
    finally:
        rc, out = run_fast_path()
        assert rc == 0, out
    rules = rules_by_name(host)
    assert rules["CacheEffectivenessDrop"]["query"].strip().endswith("< %s" % shared["aetherlink_alert_cache_hit_ratio_min"])
    # The operator's group is gone with its variable: its file was purged.
    assert "aether:answers:rate5m" not in rules
    assert not host.file("/etc/prometheus/rules/custom.rules.yml").exists
    assert main_pid(host, SERVICE) == pid


def test_broken_rule_fails_play_and_keeps_last_good_rules(host):
    pid = main_pid(host, SERVICE)
    before = rules_by_name(host)
    broken = [{"name": "broken", "rules": [{"record": "aether:broken", "expr": "sum(rate(x[5m])"}]}]
    rc, out = run_fast_path("-e", json.dumps({"prometheus_custom_rule_groups": broken}))
    assert rc != 0
    assert "failed validation" in out or "parse error" in out, out
    assert re.search(r"unclosed left parenthesis|parse error", out), out
    assert not host.file("/etc/prometheus/rules/custom.rules.yml").exists
    assert rules_by_name(host).keys() == before.keys()
    assert main_pid(host, SERVICE) == pid
    assert reload_successful(host) == 1
    assert api(host, "/-/ready").strip().startswith("Prometheus")


def test_bad_threshold_rejected_before_touching_host(host):
    rc, out = run_fast_path("-e", "aetherlink_alert_lowconfidence_max=120")
    assert rc != 0
    assert "aetherlink_alert_lowconfidence_max must be a number from 0 to 100" in out
    rc, out = run_fast_path("-e", "aetherlink_vip_tenant_pattern=vip-(.*")
    assert rc != 0
    assert "aetherlink_vip_tenant_pattern is not a valid regular expression" in out
    rc, out = run_fast_path("-e", "aetherlink_alert_lowconfidence_vip_for=5minutes")
    assert rc != 0
    assert "aetherlink_alert_lowconfidence_vip_for must be a Prometheus duration" in out


def test_check_diff_previews_change_without_touching_host(host, shared):
    """converge.yml --check --diff with a new threshold: the diff shows it, the host keeps the old one."""
    old = shared["aetherlink_alert_cache_hit_ratio_min"]
    new = old - 5
    checksum = host.file(ALERTS_FILE).sha256sum
    pid = main_pid(host, SERVICE)
    rc, out = run_playbook(SCENARIO / "converge.yml", "--check", "--diff",
                           "-e", json.dumps({"aetherlink_alert_cache_hit_ratio_min": new}))
    assert rc == 0, out
    threshold = re.compile(r"<\s*%s(?![\d.])" % re.escape(str(new)))
    assert any(threshold.search(line) for line in diff_added_lines(out, ALERTS_FILE)), out
    assert host.backend.get_hostname() in changed_hosts(out), out
    # Nothing reached the host: same file, same process, the live rule keeps the old threshold.
    assert host.file(ALERTS_FILE).sha256sum == checksum
    assert main_pid(host, SERVICE) == pid
    query = " ".join(rules_by_name(host)["CacheEffectivenessDrop"]["query"].split())
    assert query.endswith("< %s" % old), query
    assert reload_successful(host) == 1
