"""The seed's checklist as a user sees it: the sandbox's UIs in headless Chromium.

Run by `make browser` (scripts/browser.sh), which deploys the sandbox (`make
up`) with the alert durations shortened (sandbox_vars.yml) and sets
AETHER_BROWSER=1. Without it, everything here is skipped with that reason: the
controller-side suite (`pytest tests`) must not touch a sandbox a person may be
using.

The pages are read in pages.py. Each check is also pointed at something the
page does not show (a rule name that does not exist, a wrong severity, a tenant
that was not degraded, ...) and must fail naming the page and what it missed.
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "molecule" / "shared"))
from conftest import ROOT, shared_vars  # noqa: E402
from testkit import run_playbook  # noqa: E402
from pages import (  # noqa: E402
    CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, active_rows, alertmanager_has_ui, check_alert_firing,
    check_alert_severities, check_alertmanager_group, check_login_prompt, check_rules, check_targets,
    grafana_login, prometheus_page, read_alertmanager_groups, read_alerts, read_grafana_dashboard,
    read_grafana_folder, read_rules, read_targets, screenshot, visit,
)

pytestmark = pytest.mark.skipif(
    not os.environ.get("AETHER_BROWSER"),
    reason="browser checks of a running sandbox: `make browser` (scripts/browser.sh) deploys it and runs them")

SETTINGS = shared_vars("local")
SECRETS = ROOT / ".cache" / "sandbox"
SCHEME = "https" if SETTINGS["aetherlink_web_tls_enabled"] else "http"
PROMETHEUS = "%s://127.0.0.1:%s" % (SCHEME, SETTINGS["aetherlink_prometheus_port"])
ALERTMANAGER = "%s://127.0.0.1:%s" % (SCHEME, SETTINGS["aetherlink_alertmanager_port"])
GRAFANA = "http://127.0.0.1:%s" % SETTINGS["aetherlink_grafana_port"]
RULES_TEMPLATE = ROOT / "roles" / "prometheus" / "templates" / "aetherlink.rules.yml.j2"
PROMETHEUS_VARS = ROOT / "roles" / "prometheus" / "vars" / "main.yml"
# The contract (../shared/DESIGN.md): the seed's recording rules and alerts.
SEED_RECORDS = [
    "aether:cache_hit_ratio:5m", "aether:rerank_utilization_pct:15m", "aether:lowconfidence_pct:15m",
    "aether:cache_hit_ratio:5m:all", "aether:rerank_utilization_pct:15m:all", "aether:lowconfidence_pct:15m:all",
]
SEED_ALERTS = {
    "CacheEffectivenessDrop": "warning", "LowConfidenceSpike": "warning",
    "LowConfidenceSpikeVIP": "critical", "CacheEffectivenessDropVIP": "critical",
}
VIP_TENANTS = [tenant["name"] for tenant in SETTINGS["aetherlink_tenants"] if tenant.get("vip")]
DEGRADED = VIP_TENANTS[0]       # its cache hit ratio goes to 0: CacheEffectivenessDropVIP
HEALTHY_VIP = VIP_TENANTS[1]    # a VIP tenant whose traffic stays healthy
# Degraded requests per tenant: enough to pull the 5m hit ratio under 20% even
# when the window still holds a few hundred healthy answers (~3 s to send).
DEGRADED_REQUESTS = 1000
# Seconds to wait for the alert to show firing after the degraded traffic:
# for 30s + evaluation 10s + scrape 5s (sandbox_vars.yml) is 45 s. Healthy
# traffic in the window that outweighs DEGRADED_REQUESTS delays it until that
# traffic leaves the 5m window, hence 5m + 1m.
FIRING_TIMEOUT = 360
# Seconds to wait for an alert left active by an earlier run to clear: the 5m
# window of aether:cache_hit_ratio:5m rolls over, then an evaluation or two.
CLEAR_TIMEOUT = 420


def secret(env, name):
    """A sandbox secret as the sandbox reads it: the controller's variable first."""
    return os.environ.get(env) or (SECRETS / name).read_text().strip()


def inventory_groups():
    """{group: [host, ...]} of inventories/local."""
    children = yaml.safe_load((ROOT / "inventories" / "local" / "hosts.yml").read_text())["all"]["children"]
    return {group: list((body or {}).get("hosts") or {}) for group, body in children.items()}


def rule_groups():
    """The AetherLink rule group names the prometheus role deploys: those of its
    recording rules template, then those of its alert groups (role vars)."""
    recording = re.findall(r"^\s*- name: (aetherlink_\w+)\s*$", RULES_TEMPLATE.read_text(), re.M)
    alerting = [group["name"] for group in yaml.safe_load(PROMETHEUS_VARS.read_text())["_prometheus_alert_groups"]]
    return recording + alerting


# --- Browser --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("%s is missing: Debian's chromium (`make setup` installs it)" % CHROMIUM)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def web_user():
    return {"username": SETTINGS["aetherlink_web_username"], "password": secret("AETHER_WEB_PASSWORD", "web_password")}


def new_page(browser, credentials=None):
    context = browser.new_context(http_credentials=credentials, ignore_https_errors=SCHEME == "https",
                                  viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


@pytest.fixture(scope="module")
def page(browser, web_user):
    """A browser tab logged in with the sandbox's web credentials."""
    tab = new_page(browser, web_user)
    yield tab
    tab.context.close()


# --- Login ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, url", [("prometheus", PROMETHEUS), ("alertmanager", ALERTMANAGER)],
                         ids=["prometheus", "alertmanager"])
def test_an_anonymous_browser_and_a_wrong_password_get_the_login_prompt(browser, web_user, name, url):
    for who, credentials in (("anonymous", None), ("wrong-password", dict(web_user, password=web_user["password"] + "x"))):
        tab = new_page(browser, credentials)
        response = visit(tab, url + "/")
        check_login_prompt(response, screenshot(tab, "%s-%s" % (name, who)), "%s home page, %s" % (name, who))
        tab.context.close()


@pytest.mark.parametrize("name, url", [("prometheus", PROMETHEUS), ("alertmanager", ALERTMANAGER)],
                         ids=["prometheus", "alertmanager"])
def test_the_sandbox_credentials_open_the_page(browser, web_user, name, url):
    tab = new_page(browser, web_user)
    response = visit(tab, url + "/")
    shot = screenshot(tab, "%s-home" % name)
    assert response.status == 200, "%s home page: answered %s with the sandbox's credentials (%s)" % (
        name, response.status, shot)
    # The login check fails on a page that let the browser in.
    with pytest.raises(AssertionError, match="expected the login prompt.*got 200"):
        check_login_prompt(response, shot, "%s home page" % name)
    tab.context.close()


# --- Prometheus -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def prometheus(page):
    """view(link): Prometheus' page behind a link of its navigation bar ("Rules",
    "Alerts", "Targets"), opened and read once: (what it shows, screenshot)."""
    readers = {"Rules": read_rules, "Alerts": read_alerts, "Targets": read_targets}
    seen = {}

    def view(link):
        if link not in seen:
            prometheus_page(page, PROMETHEUS, link)
            seen[link] = readers[link](page), screenshot(page, "prometheus-%s" % link.lower())
        return seen[link]
    return view


def test_the_rules_page_shows_every_aetherlink_group_the_seed_records_and_alerts(prometheus):
    groups, shot = prometheus("Rules")
    want_groups = rule_groups()
    assert len(want_groups) >= 10, "the rule group names were not found in %s and %s" % (
        RULES_TEMPLATE, PROMETHEUS_VARS)
    check_rules(groups, shot, want_groups=want_groups, records=SEED_RECORDS, alerts=list(SEED_ALERTS))
    shown = {rule["name"] for group in groups if group["name"] == "aetherlink_alerts" for rule in group["rules"]}
    assert set(SEED_ALERTS) <= shown, "Prometheus Rules page: group aetherlink_alerts shows %s (%s)" % (shown, shot)


def test_the_rules_check_fails_on_a_rule_name_that_does_not_exist(prometheus):
    groups, shot = prometheus("Rules")
    with pytest.raises(AssertionError, match=r"Rules page: no recording rule named aether:does_not_exist:5m"):
        check_rules(groups, shot, records=SEED_RECORDS + ["aether:does_not_exist:5m"])
    with pytest.raises(AssertionError, match=r"no alerting rule named CacheEffectivenessDropGold"):
        check_rules(groups, shot, alerts=["CacheEffectivenessDropGold"])
    with pytest.raises(AssertionError, match=r"no rule group aetherlink_nonexistent"):
        check_rules(groups, shot, want_groups=["aetherlink_nonexistent"])


def test_the_alerts_page_lists_the_seed_alerts_with_their_severity(prometheus):
    alerts, shot = prometheus("Alerts")
    check_alert_severities(alerts, shot, SEED_ALERTS)
    with pytest.raises(AssertionError, match="alert CacheEffectivenessDrop shows severity warning, not info"):
        check_alert_severities(alerts, shot, dict(SEED_ALERTS, CacheEffectivenessDrop="info"))
    with pytest.raises(AssertionError, match="no alert CacheEffectivenessDropGold"):
        check_alert_severities(alerts, shot, {"CacheEffectivenessDropGold": "critical"})


def test_the_targets_page_shows_every_target_up(prometheus):
    pools, shot = prometheus("Targets")
    groups = inventory_groups()
    want = {"prometheus": groups["prometheus"], "alertmanager": groups["alertmanager"],
            "aether_app": groups["aether_app"]}
    check_targets(pools, shot, want)
    with pytest.raises(AssertionError, match="no scrape pool grafana"):
        check_targets(pools, shot, dict(want, grafana=groups["grafana"]))
    with pytest.raises(AssertionError, match="pool alertmanager shows instances"):
        check_targets(pools, shot, dict(want, alertmanager=groups["alertmanager"][:1]))


# --- A degraded VIP tenant ---------------------------------------------------------------

def smoke(requests, degrade_cache=()):
    """Smoke traffic through the smoke playbook, as an operator sends it."""
    rc, out = run_playbook(ROOT / "playbooks" / "smoke.yml", "-e", json.dumps(
        {"smoke_requests_per_tenant": requests, "smoke_degrade_cache": list(degrade_cache)}),
        inventory=ROOT / "inventories" / "local")
    assert rc == 0, "the smoke playbook failed:\n%s" % out[-6000:]


def vip_alert_rows(page):
    """The Alerts page's active CacheEffectivenessDropVIP rows of the tenant to degrade."""
    prometheus_page(page, PROMETHEUS, "Alerts")
    return active_rows(read_alerts(page), "CacheEffectivenessDropVIP", DEGRADED)


@pytest.fixture(scope="module")
def degraded(page):
    """The first VIP tenant's cache degraded (every question unique: hit ratio
    0%): (when the degraded traffic began, when it ended).

    An alert that an earlier run left active would pass for this one, and
    healthy traffic cannot clear it quickly without outweighing the next
    degraded traffic in the same 5m window. So the fixture waits for the
    window to roll over, up to CLEAR_TIMEOUT (only on a sandbox used just before)."""
    if vip_alert_rows(page):
        print("\nCacheEffectivenessDropVIP is still active for %s from an earlier run: waiting for it to clear" % DEGRADED)
        deadline = time.time() + CLEAR_TIMEOUT
        while vip_alert_rows(page):
            shot = screenshot(page, "prometheus-alerts-clearing")
            assert time.time() < deadline, "Prometheus Alerts page: CacheEffectivenessDropVIP still active for %s " \
                "after %d s without traffic (%s)" % (DEGRADED, CLEAR_TIMEOUT, shot)
            page.wait_for_timeout(10000)
    began = time.time()
    smoke(DEGRADED_REQUESTS, [DEGRADED])
    return began, time.time()


@pytest.fixture(scope="module")
def firing_page(page, degraded):
    """The Alerts page, reloaded until it shows CacheEffectivenessDropVIP firing
    for the degraded tenant (or FIRING_TIMEOUT passes): (alerts, screenshot)."""
    began, ended = degraded
    prometheus_page(page, PROMETHEUS, "Alerts")
    while True:
        alerts = read_alerts(page)
        shot = screenshot(page, "prometheus-alerts-firing")
        try:
            check_alert_firing(alerts, shot, "CacheEffectivenessDropVIP", DEGRADED, since=began)
            break
        except AssertionError:
            if time.time() - ended > FIRING_TIMEOUT:
                break
            page.wait_for_timeout(5000)
            page.reload()
    print("\nCacheEffectivenessDropVIP shown firing %.0f s after the degraded traffic" % (time.time() - ended))
    return alerts, shot


def test_the_alerts_page_shows_the_degraded_vip_tenant_firing(firing_page, degraded):
    alerts, shot = firing_page
    check_alert_firing(alerts, shot, "CacheEffectivenessDropVIP", DEGRADED, since=degraded[0])
    # The other VIP tenant's traffic stayed healthy: the same check fails for it.
    with pytest.raises(AssertionError, match="CacheEffectivenessDropVIP is not firing for tenant %s" % HEALTHY_VIP):
        check_alert_firing(alerts, shot, "CacheEffectivenessDropVIP", HEALTHY_VIP)
    # An alert active before the degraded traffic would not count.
    with pytest.raises(AssertionError, match="is active since .*, before "):
        check_alert_firing(alerts, shot, "CacheEffectivenessDropVIP", DEGRADED, since=degraded[1] + 3600)


# --- Alertmanager ---------------------------------------------------------------------------

def test_alertmanager_groups_the_firing_alert_and_hides_its_inhibited_twin(page, firing_page):
    page.goto(ALERTMANAGER + "/")
    shot = screenshot(page, "alertmanager-home")
    if not alertmanager_has_ui(page):
        pytest.skip("Alertmanager serves no web UI: Debian's prometheus-alertmanager package leaves the Elm UI "
                    "out, and building it needs Elm packages from package.elm-lang.org, which this machine cannot "
                    "reach (page seen: %s)" % shot)
    page.goto(ALERTMANAGER + "/#/alerts")
    groups = read_alertmanager_groups(page)
    shot = screenshot(page, "alertmanager-alerts")
    check_alertmanager_group(groups, shot, "CacheEffectivenessDropVIP", DEGRADED)
    # Its warning twin is inhibited: not in the active list, listed once
    # inhibited alerts are shown.
    check_alertmanager_group(groups, shot, "CacheEffectivenessDrop", DEGRADED, present=False)
    with_inhibited = read_alertmanager_groups(page, inhibited=True)
    shot = screenshot(page, "alertmanager-alerts-inhibited")
    check_alertmanager_group(with_inhibited, shot, "CacheEffectivenessDrop", DEGRADED)
    with pytest.raises(AssertionError, match="is missing"):
        check_alertmanager_group(groups, shot, "CacheEffectivenessDropVIP", HEALTHY_VIP)


# --- Grafana -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def grafana(browser):
    """A tab logged in to Grafana, or a skip with the reason it is not there."""
    import urllib.error
    import urllib.request
    try:
        urllib.request.urlopen(GRAFANA + "/api/health", timeout=5).read()
    except (OSError, urllib.error.URLError) as error:
        pytest.skip("Grafana does not answer at %s (%s): in this sandbox it is not installed, since its package "
                    "source (Grafana's APT repository) is not reachable from this machine" % (GRAFANA, error))
    tab = new_page(browser)
    grafana_login(tab, GRAFANA, "admin", secret("GRAFANA_ADMIN_PASSWORD", "grafana_admin_password"))
    yield tab
    tab.context.close()


def dashboards():
    return {json.loads(path.read_text())["uid"]: json.loads(path.read_text())["title"]
            for path in sorted((ROOT / "roles" / "grafana" / "files" / "dashboards").glob("*.json"))}


def test_grafana_folder_lists_the_aetherlink_dashboards(grafana):
    titles = read_grafana_folder(grafana, GRAFANA, "AetherLink")
    shot = screenshot(grafana, "grafana-folder")
    missing = sorted(set(dashboards().values()) - set(titles))
    assert not missing, "Grafana folder AetherLink: dashboards %s not listed (listed: %s; %s)" % (missing, titles, shot)


@pytest.mark.parametrize("tenant", ["All", DEGRADED])
def test_grafana_enhanced_dashboard_renders_every_panel(grafana, tenant):
    problems = read_grafana_dashboard(grafana, GRAFANA, "aetherlink_rag_tenant_metrics_enhanced", tenant)
    shot = screenshot(grafana, "grafana-enhanced-%s" % tenant)
    assert not problems, "Grafana enhanced dashboard, tenant %s: panels %s (%s)" % (tenant, problems, shot)
