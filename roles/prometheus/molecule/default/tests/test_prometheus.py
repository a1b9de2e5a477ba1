"""Verify the prometheus role on a live container, through Prometheus' HTTP API.

The expected thresholds, durations and VIP pattern are read from the
environment's shared variables (the same file the role consumed), never
repeated here.
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[5]
SHARED_VARS = ROOT / "inventories" / "local" / "group_vars" / "all" / "aetherlink.yml"
API = "http://127.0.0.1:9090"

RECORDING_RULES = {
    "aether:cache_hit_ratio:5m",
    "aether:rerank_utilization_pct:15m",
    "aether:lowconfidence_pct:15m",
    "aether:cache_hit_ratio:5m:all",
    "aether:rerank_utilization_pct:15m:all",
    "aether:lowconfidence_pct:15m:all",
}

# alert -> (threshold variable, duration variable, operator, severity, sla label, vip only)
ALERTS = {
    "CacheEffectivenessDrop": ("aetherlink_alert_cache_hit_ratio_min", "aetherlink_alert_cache_hit_ratio_for", "<", "warning", None, False),
    "LowConfidenceSpike": ("aetherlink_alert_lowconfidence_max", "aetherlink_alert_lowconfidence_for", ">", "warning", None, False),
    "LowConfidenceSpikeVIP": ("aetherlink_alert_lowconfidence_vip_max", "aetherlink_alert_lowconfidence_vip_for", ">", "critical", "breach", True),
    "CacheEffectivenessDropVIP": ("aetherlink_alert_cache_hit_ratio_vip_min", "aetherlink_alert_cache_hit_ratio_vip_for", "<", "critical", "at_risk", True),
}

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration):
    return sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", str(duration)))


@pytest.fixture(scope="module")
def shared():
    return yaml.safe_load(SHARED_VARS.read_text())


def api(host, path, method="GET"):
    out = host.check_output("curl -sS -X %s %s%s", method, API, path)
    return json.loads(out) if path.startswith("/api/") else out


def rules_by_name(host):
    groups = api(host, "/api/v1/rules")["data"]["groups"]
    return {r["name"]: r for g in groups for r in g["rules"]}


def reload_successful(host):
    metrics = api(host, "/metrics")
    return float(re.search(r"^prometheus_config_last_reload_successful (\S+)$", metrics, re.M).group(1))


def main_pid(host):
    return host.check_output("systemctl show --property MainPID --value prometheus")


def run_fast_path(*extra_args):
    """Run playbooks/rules.yml against this scenario's inventory; return (rc, output)."""
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        ["ansible-playbook", "-i", inventory, str(ROOT / "playbooks" / "rules.yml"), *extra_args],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_service_running_with_lifecycle_api(host):
    service = host.service("prometheus")
    assert service.is_running
    assert service.is_enabled
    assert "--web.enable-lifecycle" in host.file("/etc/default/prometheus").content_string
    assert "--web.enable-lifecycle" in host.check_output("cat /proc/%s/cmdline | tr '\\0' ' '", main_pid(host))


def test_recording_rules_loaded(host, shared):
    # A rule's health is "unknown" until its group's first evaluation, up to
    # one interval (30s) after a (re)load: wait for it, then it must be "ok".
    deadline = time.time() + 70
    while True:
        groups = api(host, "/api/v1/rules?type=record")["data"]["groups"]
        health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        if "unknown" not in health.values() or time.time() > deadline:
            break
        time.sleep(2)
    assert set(health) == RECORDING_RULES
    assert {g["interval"] for g in groups} == {30}
    assert set(health.values()) == {"ok"}, health


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


def test_last_reload_successful(host):
    assert reload_successful(host) == 1


def test_targets_follow_inventory(host):
    # A target's health is "unknown" until its first scrape (one interval).
    deadline = time.time() + 60
    while True:
        active = api(host, "/api/v1/targets")["data"]["activeTargets"]
        jobs = {t["labels"]["job"]: t for t in active}
        if jobs.get("prometheus", {}).get("health", "unknown") != "unknown" or time.time() > deadline:
            break
        time.sleep(2)
    assert set(jobs) == {"prometheus", "alertmanager", "aether_app"}
    assert jobs["prometheus"]["health"] == "up"
    assert jobs["alertmanager"]["labels"]["instance"] == "alertmanager-test"
    assert jobs["aether_app"]["scrapeUrl"] == "http://aether-app-test:8000/metrics"
    alertmanagers = api(host, "/api/v1/alertmanagers")["data"]
    urls = [a["url"] for a in alertmanagers["activeAlertmanagers"] + alertmanagers["droppedAlertmanagers"]]
    assert urls == ["http://alertmanager-test:9093/api/v2/alerts"]


def test_config_files_not_world_readable(host):
    for path in ("/etc/prometheus/prometheus.yml", "/etc/prometheus/rules/aetherlink.alerts.yml"):
        f = host.file(path)
        assert f.group == "prometheus"
        assert f.mode & 0o007 == 0, path


def test_fast_path_reloads_without_restart_and_purges_stale_rules(host, shared):
    pid = main_pid(host)
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
        assert main_pid(host) == pid, "Prometheus was restarted instead of reloaded"
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
    assert main_pid(host) == pid


def test_broken_rule_fails_play_and_keeps_last_good_rules(host):
    pid = main_pid(host)
    before = rules_by_name(host)
    broken = [{"name": "broken", "rules": [{"record": "aether:broken", "expr": "sum(rate(x[5m])"}]}]
    rc, out = run_fast_path("-e", json.dumps({"prometheus_custom_rule_groups": broken}))
    assert rc != 0
    assert "failed validation" in out or "parse error" in out, out
    assert re.search(r"unclosed left parenthesis|parse error", out), out
    assert not host.file("/etc/prometheus/rules/custom.rules.yml").exists
    assert rules_by_name(host).keys() == before.keys()
    assert main_pid(host) == pid
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
