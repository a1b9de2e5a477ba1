"""Verify the alertmanager role on a live two-node cluster, through the HTTP APIs.

Alerts are posted to BOTH Alertmanagers, as two Prometheus servers would; the
Slack-compatible receiver records exactly what Alertmanager sent.
Timers of the scenario (converge.yml): group_wait 2s, group_interval 10s,
cluster peer timeout 5s.
"""

import json
import os
import re
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import testinfra

SCENARIO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[5] / "molecule" / "shared"  # testkit: the scenarios' shared helpers
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

from testkit import (  # noqa: E402
    ROOT, assert_unchanged, changed_hosts, curl, diff_added_lines, http_json, http_status, main_pid, metric_sum,
    run_playbook, scenario_env, scrape, shared_vars, wait_until, web_login,
)

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
AM_HOSTS = ["alertmanager-1", "alertmanager-2"]
SERVICE = "prometheus-alertmanager"
CONFIG_FILE = "/etc/prometheus/alertmanager.yml"
# TLS and basic auth on the web endpoints (molecule.yml): the tests log in as
# the roles do, trusting the CA the role installed beside web.yml.
AM_API = "https://127.0.0.1:9093"
WEB_DIR = "/etc/prometheus/alertmanager_web"
LOGIN = web_login(SCENARIO, cacert=WEB_DIR + "/tls/ca.crt")
RECEIVER_API = "https://127.0.0.1:8443/requests"
GROUP_WAIT = 2
SETTLE = 2 * 5 + GROUP_WAIT + 5  # both peers' waits + group_wait + margin: any duplicate would be here


def webhook_url():
    return scenario_env(SCENARIO, "SLACK_WEBHOOK_URL")


def get(name):
    return testinfra.get_host("ansible://%s" % name, ansible_inventory=INVENTORY)


@pytest.fixture(scope="module")
def ams():
    return [get(name) for name in AM_HOSTS]


@pytest.fixture(scope="module")
def receiver():
    return get("slack-receiver")


def am_get(host, path):
    return http_json(host, AM_API + path, *LOGIN)


def metric(host, name, **labels):
    """Sum of the samples of `name` on this Alertmanager whose labels include `labels`."""
    return metric_sum(scrape(host, AM_API + "/metrics", *LOGIN), name, **labels)


def iso(dt):
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def post_alert(hosts, alertname, tenant, severity, resolved=False, **labels):
    """Post one alert to every host; return when the first post started."""
    started = time.time()
    now = datetime.now(timezone.utc)
    alert = {
        "labels": dict(alertname=alertname, tenant=tenant, severity=severity, **labels),
        "annotations": {
            "summary": "%s summary for %s" % (alertname, tenant),
            "description": "Value is 12.3%% over the last 5m (%s)." % tenant,
        },
        # A fresh alert: Alertmanager skips group_wait for alerts older than it.
        "startsAt": iso(now),
        "endsAt": iso(now if resolved else now + timedelta(hours=1)),
    }
    for host in hosts:
        curl(host, AM_API + "/api/v2/alerts", "-f", "-H", "Content-Type: application/json", "--data", json.dumps([alert]),
             *LOGIN, method="POST")
    return started


def messages(receiver, tenant):
    result = receiver.run("curl -sSk %s", RECEIVER_API)
    if result.rc != 0:  # receiver (re)starting
        return []
    records = json.loads(result.stdout)
    return [r for r in records if r["body"] and "Tenant: %s\n" % tenant in r["body"]["attachments"][0]["text"]]


def wait_for(receiver, tenant, count, timeout=60):
    """The tenant's messages once there are `count` of them; after `timeout`, whatever there is."""
    def enough():
        found = messages(receiver, tenant)
        return found if len(found) >= count else None
    return wait_until(enough, timeout=timeout, interval=0.5) or messages(receiver, tenant)


def unique_tenant(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:6])


def converge(*extra, url=None):
    """Run the scenario's converge.yml with the webhook URL (default: the scenario's) in the environment."""
    return run_playbook(SCENARIO / "converge.yml", *extra,
                        env={"SLACK_WEBHOOK_URL": webhook_url() if url is None else url})


def test_services_running(ams):
    for am in ams:
        assert am.service("prometheus-alertmanager").is_running
        assert am.service("prometheus-alertmanager").is_enabled


def test_cluster_ready_with_two_peers(ams):
    for am in ams:
        wait_until(lambda: am_get(am, "/api/v2/status")["cluster"]["status"] == "ready", timeout=60, interval=1)
        cluster = am_get(am, "/api/v2/status")["cluster"]
        assert cluster["status"] == "ready"
        assert len(cluster["peers"]) == 2


def test_every_endpoint_requires_the_web_login(ams):
    """Without credentials, or with a wrong password, Alertmanager answers 401
    on its API v2 (an alert posted that way is not taken), its reload endpoint
    and its metrics."""
    tenant = unique_tenant("noauth")
    wrong = ["-u", "%s:wrong-password-%s" % (shared_vars()["aetherlink_web_username"], "y" * 8)]
    ca = ["--cacert", WEB_DIR + "/tls/ca.crt"]
    alert = json.dumps([{"labels": {"alertname": "Unauthenticated", "tenant": tenant, "severity": "warning"}}])
    for am in ams:
        for method, path in [("GET", "/api/v2/status"), ("GET", "/api/v2/alerts"), ("GET", "/api/v2/silences"),
                             ("POST", "/-/reload"), ("GET", "/metrics"), ("GET", "/-/ready")]:
            assert http_status(am, AM_API + path, *ca, method=method) == 401, path
            assert http_status(am, AM_API + path, *ca, *wrong, method=method) == 401, path
        assert http_status(am, AM_API + "/api/v2/alerts", *ca, "-H", "Content-Type: application/json",
                           "--data", alert, method="POST") == 401
        assert http_status(am, AM_API + "/api/v2/status", *LOGIN) == 200
    for am in ams:
        assert not [a for a in am_get(am, "/api/v2/alerts") if a["labels"].get("tenant") == tenant]


def test_web_endpoints_speak_tls_with_the_hosts_certificate(ams):
    """TLS is real: plain HTTP is refused, the certificate is the host's (its
    name and 127.0.0.1), signed by the CA the role installed; an untrusted
    client fails the handshake."""
    for name, am in zip(AM_HOSTS, ams):
        assert http_status(am, AM_API.replace("https://", "http://") + "/-/ready", *LOGIN[:2]) == 400
        result = am.run("curl -sS -o /dev/null %s", AM_API + "/-/ready")  # system CAs only
        assert result.rc == 60, result.stderr  # curl: peer certificate cannot be authenticated
        subject = am.check_output("openssl x509 -in %s -noout -ext subjectAltName", WEB_DIR + "/tls/server.crt")
        assert "DNS:%s" % name in subject and "IP Address:127.0.0.1" in subject
        assert am.file(WEB_DIR + "/tls/server.key").mode == 0o640
        assert am.file(WEB_DIR + "/tls/server.key").group == "prometheus"
        web = am.file(WEB_DIR + "/web.yml").content_string
        assert "tls_server_config" in web and "$2b$10$" in web
        assert scenario_env(SCENARIO, "AETHER_WEB_PASSWORD") not in web
        # The peer's name works too: the other Alertmanager's certificate carries it.
        other = AM_HOSTS[1 - AM_HOSTS.index(name)]
        assert http_status(am, "https://%s:9093/-/ready" % other, *LOGIN) == 200


def test_secret_file_readable_by_service_only(ams):
    url = webhook_url()
    for am in ams:
        secret = am.file("/etc/prometheus/alertmanager_secrets/slack_webhook_url")
        assert secret.user == "root" and secret.group == "prometheus"
        assert secret.mode == 0o640
        assert secret.content_string.strip() == url
        assert am.file("/etc/prometheus/alertmanager_secrets").mode == 0o750
        config = am.file("/etc/prometheus/alertmanager.yml")
        assert config.mode & 0o007 == 0
        assert url not in config.content_string
        assert "api_url_file" in config.content_string
        # Not in the service's logs either.
        assert url not in am.check_output("journalctl -u prometheus-alertmanager --no-pager")


def test_alert_posted_to_both_gives_one_message_then_one_resolved(ams, receiver, capsys):
    tenant = unique_tenant("acme")
    posted = post_alert(ams, "CacheEffectivenessDrop", tenant, "warning")
    firing = wait_for(receiver, tenant, 1)
    assert len(firing) == 1
    delay = firing[0]["received_at"] - posted
    time.sleep(SETTLE)
    firing = messages(receiver, tenant)
    assert len(firing) == 1, "the cluster notified more than once: %s" % firing
    body = firing[0]["body"]
    attachment = body["attachments"][0]
    assert body["channel"] == "#aetherlink-alerts"
    assert attachment["color"] == "danger"
    assert attachment["title"] == "[FIRING] CacheEffectivenessDrop (warning)"
    assert attachment["text"] == (
        "Tenant: %s\nSummary: CacheEffectivenessDrop summary for %s\n"
        "Description: Value is 12.3%% over the last 5m (%s)." % (tenant, tenant, tenant)
    )

    post_alert(ams, "CacheEffectivenessDrop", tenant, "warning", resolved=True)
    both = wait_for(receiver, tenant, 2)
    time.sleep(SETTLE)
    both = messages(receiver, tenant)
    assert len(both) == 2, both
    resolved = both[1]["body"]["attachments"][0]
    assert resolved["color"] == "good"
    assert resolved["title"] == "[RESOLVED] CacheEffectivenessDrop (warning)"
    with capsys.disabled():
        print("\nalert -> Slack message delay: %.2f s (group_wait %ss, posted to both peers)" % (delay, GROUP_WAIT))


def test_vip_critical_inhibits_its_warning_twin(ams, receiver):
    tenant = unique_tenant("vip-inhibit")
    post_alert(ams, "CacheEffectivenessDropVIP", tenant, "critical", sla="at_risk")
    time.sleep(1)
    post_alert(ams, "CacheEffectivenessDrop", tenant, "warning")
    wait_for(receiver, tenant, 1)
    time.sleep(SETTLE)
    titles = [m["body"]["attachments"][0]["title"] for m in messages(receiver, tenant)]
    assert titles == ["[FIRING] CacheEffectivenessDropVIP (critical)"]
    for am in ams:
        alerts = am_get(am, '/api/v2/alerts?filter=tenant%3D%22' + tenant + '%22')
        states = {a["labels"]["alertname"]: a["status"] for a in alerts}
        assert states["CacheEffectivenessDrop"]["state"] == "suppressed"
        assert states["CacheEffectivenessDrop"]["inhibitedBy"]
        assert states["CacheEffectivenessDropVIP"]["state"] == "active"


def test_ordinary_tenant_warning_is_not_inhibited(ams, receiver):
    tenant = unique_tenant("plain")
    post_alert(ams, "CacheEffectivenessDropVIP", tenant, "critical", sla="at_risk")
    post_alert(ams, "CacheEffectivenessDrop", tenant, "warning")
    found = wait_for(receiver, tenant, 2)
    assert sorted(m["body"]["attachments"][0]["title"] for m in found) == [
        "[FIRING] CacheEffectivenessDrop (warning)",
        "[FIRING] CacheEffectivenessDropVIP (critical)",
    ]


def test_notification_not_lost_while_receiver_is_down(ams, receiver):
    tenant = unique_tenant("outage")
    def failed_total():
        return sum(metric(am, "alertmanager_notifications_failed_total", integration="slack") for am in ams)

    failed_before = failed_total()
    receiver.check_output("systemctl stop slack-receiver")
    try:
        post_alert(ams, "LowConfidenceSpike", tenant, "warning")
        wait_until(lambda: failed_total() > failed_before, timeout=60, interval=1)
        failed = failed_total()
        assert failed > failed_before, "Alertmanager never tried the receiver while it was down"
    finally:
        receiver.check_output("systemctl start slack-receiver")
    found = wait_for(receiver, tenant, 1, timeout=90)
    assert len(found) >= 1, "the notification was lost"
    time.sleep(SETTLE)
    found = messages(receiver, tenant)
    # While the receiver is down neither peer has a successful send to gossip,
    # so each retries on its own: Alertmanager HA is at-least-once here, at
    # most one message per peer.
    assert 1 <= len(found) <= len(ams), found
    assert {m["body"]["attachments"][0]["title"] for m in found} == {"[FIRING] LowConfidenceSpike (warning)"}


def test_peer_stopped_while_an_alert_fires_gives_one_message_and_the_cluster_reforms(ams, receiver):
    """One of the two Alertmanagers is down while an alert fires: the other
    sends exactly one message. Started again, the peer rejoins (2 peers) and
    learns from the cluster's notification log that the message went out:
    the alert sent again to both, as Prometheus keeps doing, gives no second
    message."""
    tenant = unique_tenant("peerdown")
    first, second = ams
    title = "[FIRING] CacheEffectivenessDrop (warning)"
    second.check_output("systemctl stop %s", SERVICE)
    try:
        post_alert([first], "CacheEffectivenessDrop", tenant, "warning")  # Prometheus only reaches the first
        found = wait_for(receiver, tenant, 1)
        time.sleep(SETTLE)
        assert [m["body"]["attachments"][0]["title"] for m in messages(receiver, tenant)] == [title], found
    finally:
        second.check_output("systemctl start %s", SERVICE)

    def reformed():
        try:
            return all(len(am_get(am, "/api/v2/status")["cluster"]["peers"]) == 2 for am in ams)
        except (AssertionError, ValueError):  # the restarted peer is not answering yet
            return False
    assert wait_until(reformed, timeout=90, interval=2), "the cluster did not re-form with 2 peers"
    post_alert(ams, "CacheEffectivenessDrop", tenant, "warning")
    time.sleep(SETTLE + 10)  # and a group_interval
    assert [m["body"]["attachments"][0]["title"] for m in messages(receiver, tenant)] == [title]


def test_config_change_is_live_after_reload_with_same_process(ams):
    pids = [main_pid(am, SERVICE) for am in ams]
    try:
        rc, out = converge("-e", "alertmanager_repeat_interval=3h")
        assert rc == 0, out
        for am, pid in zip(ams, pids):
            assert "repeat_interval: 3h" in am_get(am, "/api/v2/status")["config"]["original"]
            assert main_pid(am, SERVICE) == pid, "Alertmanager was restarted instead of reloaded"
            assert metric(am, "alertmanager_config_last_reload_successful") == 1
    finally:
        rc, out = converge()
        assert rc == 0, out
    for am, pid in zip(ams, pids):
        assert "repeat_interval: 1h" in am_get(am, "/api/v2/status")["config"]["original"]
        assert main_pid(am, SERVICE) == pid


def test_fast_path_moves_the_vip_inhibitions_with_the_pattern_without_restart(ams):
    """playbooks/rules.yml (the fast path) updates alertmanager.yml too: the VIP pattern lives in both."""
    pids = [main_pid(am, SERVICE) for am in ams]
    rules = ROOT / "playbooks" / "rules.yml"
    env = {"SLACK_WEBHOOK_URL": webhook_url()}
    try:
        rc, out = run_playbook(rules, "-e", "aetherlink_vip_tenant_pattern=gold-.*", env=env)
        assert rc == 0, out
        for am, pid in zip(ams, pids):
            config = am_get(am, "/api/v2/status")["config"]["original"]
            assert 'tenant=~"gold-.*"' in config, config
            assert main_pid(am, SERVICE) == pid, "Alertmanager was restarted instead of reloaded"
            assert metric(am, "alertmanager_config_last_reload_successful") == 1
            # The fast path leaves the rest of the configuration as converge made it.
            assert "group_wait: 2s" in config and "slack_configs" in config
    finally:
        rc, out = run_playbook(rules, env=env)
        assert rc == 0, out
    for am, pid in zip(ams, pids):
        config = am_get(am, "/api/v2/status")["config"]["original"]
        assert "gold-" not in config
        assert main_pid(am, SERVICE) == pid


def test_broken_config_fails_with_amtool_message_and_cluster_keeps_running(ams):
    pids = [main_pid(am, SERVICE) for am in ams]
    before = [am.file("/etc/prometheus/alertmanager.yml").sha256sum for am in ams]
    rc, out = converge("-e", json.dumps({"alertmanager_extra_routes": [{"receiver": "no-such-receiver"}]}))
    assert rc != 0
    assert "failed to validate" in out or "failed validation" in out, out
    assert 'undefined receiver "no-such-receiver"' in out, out
    for am, pid, sha in zip(ams, pids, before):
        assert am.file("/etc/prometheus/alertmanager.yml").sha256sum == sha
        assert main_pid(am, SERVICE) == pid
        cluster = am_get(am, "/api/v2/status")["cluster"]
        assert cluster["status"] == "ready" and len(cluster["peers"]) == 2


def test_webhook_url_never_in_task_output():
    url = webhook_url()
    rc, out = converge("-v", "--diff")
    assert rc == 0, out
    assert_unchanged(out, AM_HOSTS)
    token = url.rsplit("/", 1)[1]
    assert token not in out
    assert url not in out


def test_non_https_url_rejected_in_preflight(ams):
    before = [am.file("/etc/prometheus/alertmanager.yml").sha256sum for am in ams]
    bad = "http://slack-receiver:8443/services/T0/B0/plain-http-token-123"
    rc, out = converge(url=bad)
    assert rc != 0
    assert "alertmanager_slack_webhook_url" in out and "must be an https:// URL" in out
    assert "plain-http-token-123" not in out
    assert [am.file("/etc/prometheus/alertmanager.yml").sha256sum for am in ams] == before


def test_no_url_gives_warning_and_valid_config_without_slack(ams):
    try:
        rc, out = converge(url="")
        assert rc == 0, out
        assert "WARNING: no Slack webhook URL is configured" in out
        for am in ams:
            config = am_get(am, "/api/v2/status")["config"]["original"]
            assert "slack_configs" not in config
            assert re.search(r"receiver: blackhole", config)
            assert not am.file("/etc/prometheus/alertmanager_secrets/slack_webhook_url").exists
            assert metric(am, "alertmanager_config_last_reload_successful") == 1
    finally:
        rc, out = converge()
        assert rc == 0, out
    for am in ams:
        assert "slack_configs" in am_get(am, "/api/v2/status")["config"]["original"]


def test_check_diff_previews_change_without_touching_host(ams):
    """converge.yml --check --diff with a new VIP pattern: the diff shows it, neither peer gets it."""
    url = webhook_url()
    old_pattern = shared_vars()["aetherlink_vip_tenant_pattern"]
    before = [am.file(CONFIG_FILE).sha256sum for am in ams]
    pids = [main_pid(am, SERVICE) for am in ams]
    rc, out = converge("--check", "--diff", "-v", "-e", "aetherlink_vip_tenant_pattern=gold-.*")
    assert rc == 0, out
    assert any("gold-.*" in line for line in diff_added_lines(out, CONFIG_FILE)), out
    assert set(AM_HOSTS) <= set(changed_hosts(out)), out
    for am, sha, pid in zip(ams, before, pids):
        assert am.file(CONFIG_FILE).sha256sum == sha
        assert main_pid(am, SERVICE) == pid
        original = am_get(am, "/api/v2/status")["config"]["original"]
        assert "gold-" not in original
        assert old_pattern in original
        assert metric(am, "alertmanager_config_last_reload_successful") == 1
    assert url not in out
    assert url.rsplit("/", 1)[1] not in out
