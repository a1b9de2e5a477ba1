"""The whole stack, end to end: tenant traffic -> Prometheus -> Alertmanager cluster -> a Slack-format message.

The scenario converged site.yml on six containers (molecule.yml): the AetherLink
service, Prometheus, two clustered Alertmanagers, Grafana (up to the install where
its package is unreachable) and the HTTPS Slack-compatible receiver, with the alert
durations shortened through variables (for: 30s, rule evaluation every 10s, scrape
every 5s, group_wait 2s, group_interval 10s).
"""

import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import pytest
import testinfra

SCENARIO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO.parents[0] / "shared"))
from testkit import (  # noqa: E402
    ROOT, curl, http_status, load_yaml, main_pid, metric_sum, metrics_bearer, run_playbook, scenario_env, scrape,
    shared_vars, wait_until, web_login,
)

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
GROUP_VARS = load_yaml(SCENARIO / "molecule.yml")["provisioner"]["inventory"]["group_vars"]
RECEIVER_API = "https://127.0.0.1:8443/requests"
SECRETS = [scenario_env(SCENARIO, name) for name in
           ("SLACK_WEBHOOK_URL", "AETHER_ADMIN_KEY", "AETHER_TENANT_KEY_SEED", "GRAFANA_ADMIN_PASSWORD",
            "AETHER_WEB_PASSWORD", "AETHER_METRICS_TOKEN")]
# TLS and basic auth on Prometheus and Alertmanager (molecule.yml): the tests
# log in as the roles do, trusting the CA each role installed on its host.
PROM_API = "https://127.0.0.1:9090"
PROM_LOGIN = web_login(SCENARIO, cacert="/etc/prometheus/web/tls/ca.crt")
AM_API = "https://127.0.0.1:9093"
AM_LOGIN = web_login(SCENARIO, cacert="/etc/prometheus/alertmanager_web/tls/ca.crt")
VIP_TENANT = "vip-initech"
PLAIN_TENANT = "acme-corp"
SMOKE = ROOT / "playbooks" / "smoke.yml"
VERIFY = ROOT / "playbooks" / "verify.yml"


def get(name):
    return testinfra.get_host("ansible://%s" % name, ansible_inventory=INVENTORY)


@pytest.fixture(scope="module")
def receiver():
    return get("e2e-slack-receiver")


@pytest.fixture(scope="module")
def prometheus():
    return get("e2e-prometheus-1")


@pytest.fixture(scope="module")
def app():
    return get("e2e-app-1")


@pytest.fixture(scope="module")
def alertmanagers():
    return [get("e2e-alertmanager-1"), get("e2e-alertmanager-2")]


def seconds(duration):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", duration))


def run(playbook, *args):
    rc, out = run_playbook(playbook, *args)
    for secret in SECRETS:
        assert secret not in out, "a secret shows in the output of %s" % playbook.name
    return rc, out


def smoke(requests, degrade_cache=(), degrade_confidence=()):
    rc, out = run(SMOKE, "-e", json.dumps({
        "smoke_requests_per_tenant": requests,
        "smoke_degrade_cache": list(degrade_cache),
        "smoke_degrade_confidence": list(degrade_confidence),
    }))
    assert rc == 0, out
    return out


def messages(receiver):
    result = receiver.run("curl -sSk %s", RECEIVER_API)
    if result.rc != 0:
        return []
    return [r["body"]["attachments"][0] for r in json.loads(result.stdout) if r["body"]]


def for_tenant(found, tenant):
    return [m for m in found if "Tenant: %s\n" % tenant in m["text"]]


def alerts(prometheus, state=None):
    data = json.loads(curl(prometheus, PROM_API + "/api/v1/alerts", *PROM_LOGIN))["data"]["alerts"]
    return [a for a in data if state is None or a["state"] == state]


def firing(prometheus):
    """The firing alerts as (alertname, tenant) pairs."""
    return {(a["labels"]["alertname"], a["labels"]["tenant"]) for a in alerts(prometheus, "firing")}


# --- The stack as deployed ---------------------------------------------------------


def test_verify_playbook_passes_on_the_fresh_stack():
    rc, out = run(VERIFY, "-e", "verify_generate_traffic=true")
    assert rc == 0, out
    # One table of what was checked, naming the services.
    for word in ("prometheus", "alertmanager", "aether", "grafana"):
        assert word in out.lower()


def test_every_link_logs_in_and_prometheus_and_alertmanager_speak_tls(prometheus, alertmanagers, app):
    """Prometheus scrapes itself and both Alertmanagers over TLS with basic
    auth, the app's /metrics with its bearer token, and sends alerts over TLS
    with basic auth; each endpoint refuses a client without credentials."""
    def targets():
        return json.loads(curl(prometheus, PROM_API + "/api/v1/targets?state=active", *PROM_LOGIN))["data"]["activeTargets"]

    assert wait_until(lambda: all(t["health"] == "up" for t in targets()), timeout=60, interval=3), targets()
    urls = {t["labels"]["job"] + "/" + t["labels"]["instance"]: t["scrapeUrl"] for t in targets()}
    assert urls == {
        "prometheus/e2e-prometheus-1": "https://localhost:9090/metrics",
        "alertmanager/e2e-alertmanager-1": "https://e2e-alertmanager-1:9093/metrics",
        "alertmanager/e2e-alertmanager-2": "https://e2e-alertmanager-2:9093/metrics",
        "aether_app/e2e-app-1": "http://e2e-app-1:8000/metrics",
    }
    managers = json.loads(curl(prometheus, PROM_API + "/api/v1/alertmanagers", *PROM_LOGIN))["data"]
    assert sorted(a["url"] for a in managers["activeAlertmanagers"]) == [
        "https://e2e-alertmanager-1:9093/api/v2/alerts", "https://e2e-alertmanager-2:9093/api/v2/alerts"]
    assert http_status(prometheus, PROM_API + "/api/v1/query?query=up", "--cacert", PROM_LOGIN[-1]) == 401
    for am in alertmanagers:
        assert http_status(am, AM_API + "/api/v2/status", "--cacert", AM_LOGIN[-1]) == 401
    assert http_status(app, "http://127.0.0.1:8000/metrics") == 401
    assert http_status(app, "http://127.0.0.1:8000/metrics", *metrics_bearer(SCENARIO)) == 200


# --- Traffic -> alert -> Slack message, then recovery -> resolved ---------------------


def test_degraded_tenants_fire_then_resolve_once_each(receiver, prometheus, alertmanagers, app, capsys):
    receiver.check_output("curl -sSk -X DELETE %s", RECEIVER_API)
    started = time.time()
    smoke(200, degrade_cache=[VIP_TENANT], degrade_confidence=[PLAIN_TENANT])
    degraded_at = time.time()

    def fired():
        found = messages(receiver)
        vip = [m for m in for_tenant(found, VIP_TENANT) if m["title"].startswith("[FIRING]")]
        plain = [m for m in for_tenant(found, PLAIN_TENANT) if m["title"].startswith("[FIRING]")]
        return (vip, plain) if vip and plain else None

    result = wait_until(fired, timeout=240, interval=2)
    assert result, "no firing messages within 240s: %s; alerts in Prometheus: %s" % (messages(receiver), alerts(prometheus))
    first_message_at = time.time()
    time.sleep(25)  # both peers' waits and a group_interval: a duplicate would arrive here
    found = messages(receiver)
    vip = for_tenant(found, VIP_TENANT)
    plain = for_tenant(found, PLAIN_TENANT)
    # The VIP critical alert, once; its warning twin inhibited (no message).
    assert [m["title"] for m in vip] == ["[FIRING] CacheEffectivenessDropVIP (critical)"], vip
    assert vip[0]["color"] == "danger"
    assert vip[0]["text"].startswith("Tenant: %s\nSummary: VIP cache hit ratio low (<" % VIP_TENANT)
    assert re.search(r"Description: Cache hit ratio is [0-9.]+% over the last 5m\.$", vip[0]["text"]), vip[0]["text"]
    # The ordinary tenant's warning, once.
    assert [m["title"] for m in plain] == ["[FIRING] LowConfidenceSpike (warning)"], plain
    assert re.search(r"Description: Share of low-confidence answers is [0-9.]+% over the last 15m\.$", plain[0]["text"])
    # The inhibited twin is firing in Alertmanager, suppressed.
    suppressed = json.loads(curl(alertmanagers[0], AM_API + "/api/v2/alerts?filter=alertname%3D%22CacheEffectivenessDrop%22",
                                 *AM_LOGIN))
    assert any(a["labels"]["tenant"] == VIP_TENANT and a["status"]["state"] == "suppressed" for a in suppressed)

    # Faults while the alerts fire: nothing lost, nothing sent twice.
    fired_pairs = firing(prometheus)
    assert ("CacheEffectivenessDropVIP", VIP_TENANT) in fired_pairs and ("LowConfidenceSpike", PLAIN_TENANT) in fired_pairs
    fault_bad_rule_is_refused_and_the_alerts_keep_firing(prometheus, fired_pairs)
    fault_prometheus_restart_restores_the_alerts(prometheus, fired_pairs)
    fault_app_restart_under_traffic_keeps_tenants(app, prometheus)
    time.sleep(15)  # a group_interval and the peers' waits: a duplicate would arrive here
    # No alert fired twice (the fault's traffic is ordinary: it may already resolve them).
    for tenant, first in ((VIP_TENANT, vip), (PLAIN_TENANT, plain)):
        titles = [m["title"] for m in for_tenant(messages(receiver), tenant)]
        assert [t for t in titles if t.startswith("[FIRING]")] == [m["title"] for m in first], titles

    # Recovery: plenty of ordinary traffic brings both ratios back inside their thresholds.
    smoke(3000)

    def resolved():
        found = messages(receiver)
        titles = [m["title"] for m in for_tenant(found, VIP_TENANT) + for_tenant(found, PLAIN_TENANT)]
        return found if sum(t.startswith("[RESOLVED]") for t in titles) >= 2 else None

    assert wait_until(resolved, timeout=300, interval=3), "not resolved: %s" % messages(receiver)
    time.sleep(25)
    found = messages(receiver)
    assert [m["title"] for m in for_tenant(found, VIP_TENANT)] == [
        "[FIRING] CacheEffectivenessDropVIP (critical)", "[RESOLVED] CacheEffectivenessDropVIP (critical)"]
    assert [m["title"] for m in for_tenant(found, PLAIN_TENANT)] == [
        "[FIRING] LowConfidenceSpike (warning)", "[RESOLVED] LowConfidenceSpike (warning)"]
    assert {m["color"] for m in found if m["title"].startswith("[RESOLVED]")} == {"good"}
    # No other tenant was ever alerted: not by the faults (the app's counter reset included).
    assert len(found) == 4, [m["title"] + " / " + m["text"].splitlines()[0] for m in found]

    expected = (seconds(GROUP_VARS["all"]["aetherlink_alert_cache_hit_ratio_vip_for"])
                + seconds(GROUP_VARS["prometheus"]["prometheus_rules_interval"])
                + seconds(GROUP_VARS["prometheus"]["prometheus_scrape_interval"])
                + seconds(GROUP_VARS["alertmanager"]["alertmanager_group_wait"]))
    with capsys.disabled():
        print("\ncondition -> first Slack message: %.0f s after the degraded traffic ended (%.0f s after it began); "
              "for + evaluation interval + scrape interval + group_wait = %d s"
              % (first_message_at - degraded_at, first_message_at - started, expected))


def prometheus_value(prometheus, query):
    """The first value of an instant query (None when empty)."""
    result = json.loads(curl(prometheus, PROM_API + "/api/v1/query", *PROM_LOGIN, "--data-urlencode", "query=" + query,
                             method="POST"))["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def fault_bad_rule_is_refused_and_the_alerts_keep_firing(prometheus, fired_pairs):
    """A broken rule pushed through the fast path is refused before it goes
    live; the old rules keep evaluating and the alerts keep firing."""
    pid = main_pid(prometheus, "prometheus")
    broken = {"prometheus_custom_rule_groups": [{"name": "broken", "rules": [{"record": "x:y", "expr": "sum(rate(x[5m])"}]}]}
    last_evaluation = 'max(prometheus_rule_group_last_evaluation_timestamp_seconds{rule_group=~".*aetherlink_alerts"})'
    evaluated = prometheus_value(prometheus, last_evaluation)
    rc, out = run(ROOT / "playbooks" / "rules.yml", "-e", json.dumps(broken))
    assert rc != 0 and re.search(r"unclosed left parenthesis|parse error", out), out
    assert not prometheus.file("/etc/prometheus/rules/custom.rules.yml").exists
    assert main_pid(prometheus, "prometheus") == pid

    assert wait_until(lambda: prometheus_value(prometheus, last_evaluation) > evaluated, timeout=60, interval=2), \
        "the alert rules stopped being evaluated"
    now = firing(prometheus)
    assert fired_pairs <= now, fired_pairs - now


def fault_prometheus_restart_restores_the_alerts(prometheus, fired_pairs):
    """Prometheus restarted while the alerts fire: its rules are back and the
    same alerts fire again (Alertmanager still holds them: no new message)."""
    pid = main_pid(prometheus, "prometheus")
    prometheus.check_output("systemctl restart prometheus")
    assert main_pid(prometheus, "prometheus") != pid

    def firing_again():
        try:
            return fired_pairs <= firing(prometheus)
        except (AssertionError, ValueError, KeyError):  # not ready yet
            return False
    assert wait_until(firing_again, timeout=150, interval=3), "the alerts did not fire again after the restart"


def fault_app_restart_under_traffic_keeps_tenants(app, prometheus):
    """The app restarted while smoke traffic runs: the sender sees the outage,
    the service comes back with every tenant, key and document, and Prometheus
    sees the counter reset (rate() absorbs it)."""
    outcome = {}

    def answered():
        samples = scrape(app, "http://127.0.0.1:8000/metrics", *metrics_bearer(SCENARIO))
        return metric_sum(samples, "aether_http_requests_total", route="query")

    before = answered()
    sender = threading.Thread(target=lambda: outcome.update(result=run(SMOKE, "-e", json.dumps(
        {"smoke_requests_per_tenant": 20000}))))
    sender.start()
    # Restart while the traffic flows (the sender stops at the first refused connection).
    assert wait_until(lambda: answered() > before + 500, timeout=60, interval=0.2), "the smoke traffic never started"
    pid = main_pid(app, "aetherlink")
    app.check_output("systemctl restart aetherlink")
    sender.join(timeout=300)
    assert not sender.is_alive() and "result" in outcome
    assert main_pid(app, "aetherlink") != pid
    assert wait_until(lambda: app.run("curl -sSf http://127.0.0.1:8000/healthz").rc == 0, timeout=60)
    health = json.loads(curl(app, "http://127.0.0.1:8000/healthz"))
    assert health["status"] == "ok" and health["tenants"] == len(shared_vars()["aetherlink_tenants"])
    # Every tenant's key and documents answer after the restart (a smoke run that must pass).
    smoke(20)

    def reset_seen():
        value = prometheus_value(prometheus, "sum(resets(aether_http_requests_total[5m]))")
        return value is not None and value > 0
    assert wait_until(reset_seen, timeout=60, interval=3), "Prometheus did not see the counters restart"


# --- A broken stack makes verify fail, naming the check ------------------------------------


def test_verify_names_a_stopped_app(app):
    app.check_output("systemctl stop aetherlink")
    try:
        rc, out = run(VERIFY)
        assert rc != 0
        assert re.search(r"e2e-app-1.*(healthz|health)", out), out
    finally:
        app.check_output("systemctl start aetherlink")
    wait_until(lambda: app.run("curl -sSf http://127.0.0.1:8000/healthz").rc == 0, timeout=60)


def test_verify_names_a_missing_rule_file(prometheus):
    pid = main_pid(prometheus, "prometheus")
    prometheus.check_output("mv /etc/prometheus/rules/aetherlink.alerts.yml /root/aetherlink.alerts.yml.moved")
    curl(prometheus, PROM_API + "/-/reload", *PROM_LOGIN, method="POST")
    try:
        rc, out = run(VERIFY)
        assert rc != 0
        assert "CacheEffectivenessDrop" in out and re.search(r"e2e-prometheus-1.*(rule|alert)", out), out
    finally:
        rc, out = run(ROOT / "playbooks" / "rules.yml")
        assert rc == 0, out
    assert main_pid(prometheus, "prometheus") == pid
    assert prometheus.file("/etc/prometheus/rules/aetherlink.alerts.yml").exists


def test_verify_names_a_peer_down(alertmanagers):
    second = alertmanagers[1]
    second.check_output("systemctl stop prometheus-alertmanager")
    try:
        rc, out = run(VERIFY)
        assert rc != 0
        # The stopped peer fails its readiness check; its partner may still list it for a few
        # seconds (memberlist's suspicion timeout), then counts one peer fewer.
        assert re.search(r"e2e-alertmanager-[12].*(peer|cluster|ready)", out), out
    finally:
        second.check_output("systemctl start prometheus-alertmanager")

    def two_peers():
        status = json.loads(curl(alertmanagers[0], AM_API + "/api/v2/status", *AM_LOGIN))
        return len(status["cluster"]["peers"]) == 2
    assert wait_until(two_peers, timeout=90, interval=2), "the cluster did not re-form with 2 peers"
