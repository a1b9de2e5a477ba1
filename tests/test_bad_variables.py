"""Bad values of the roles' variables are refused before any host is touched.

Every case runs the preflight of the roles (tests/preflight/all_roles.yml: each
role's tasks/preflight.yml, with the shared checks of its aetherlink
dependency, on its group of the real staging inventory, facts not gathered)
with one bad value given as an extra var or, for the shared secrets, in the
environment variable the shared defaults read. The hosts of that inventory do
not exist: a check that needed one would show as UNREACHABLE. Each case must
fail with the message of the check that names the variable and the rule
(asserted on a stable part of the fail_msg of tasks/preflight.yml or of
roles/aetherlink/tasks/main.yml), from that file, never showing a secret.
One case without any override must pass, so that a preflight that always
failed would be caught.

The ansible-playbook runs (about 3 s of CPU each) are started together by a
module fixture, four at a time; the tests then read their results.
"""

import json
import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, TEST_SECRETS, run, tool

PLAYBOOK = "tests/preflight/all_roles.yml"
INVENTORY = "inventories/staging"
# The roles with a preflight, each applied to the inventory group of its name.
ROLES = ["prometheus", "alertmanager", "grafana", "aether_app"]
# staging refuses weak secrets (aetherlink_secrets_strict_environments): the
# cases of a role's own secret rule, which the strict check would refuse
# first, turn it off.
NOT_STRICT = {"aetherlink_secrets_strict_environments": []}
# The argument specification of the aetherlink role's main entry point refuses
# some values (a float that is no number) before its tasks run.
ARGSPEC = "argspec"


def token(length):
    """A random value of ``length`` characters of A-Z a-z 0-9 - _, new at every call."""
    return secrets.token_urlsafe(length)[:length]


# Secret values of the cases: random, so that finding one in the output can only mean it was shown.
SHORT_WEB_PASSWORD = token(10)
SPACED_METRICS_TOKEN = token(12) + " " + token(12)
HTTP_SLACK_URL = "http://hooks.slack.com/services/T0%s/B0%s/%s" % (token(8), token(8), token(24))
SHORT_ADMIN_KEY = token(12)
ORPHAN_TENANT_KEY = token(32)


class Case:
    """One bad value: the role whose check must refuse it, the override (extra
    vars), the secrets (environment variables) replacing the test ones, the
    parts of the message expected, and the values that must not be shown."""

    def __init__(self, role, overrides, expected, env=None, hidden=(), strict=True, checked_by=None):
        self.role = role
        self.overrides = overrides
        self.expected = expected
        self.env = env or {}
        self.hidden = list(hidden) + list(self.env.values())
        self.strict = strict
        # The file of the check expected to refuse the value.
        self.checked_by = checked_by or (
            "roles/aetherlink/tasks/main.yml" if role == "aetherlink" else "roles/%s/tasks/preflight.yml" % role)

    def argv(self):
        args = [tool("ansible-playbook"), PLAYBOOK, "-i", INVENTORY]
        if self.role in ROLES:
            # The role's play only, on the first host of its group: the shared
            # checks run there too (aetherlink dependency), then the role's own.
            # The shared settings' cases run every play: the first one stops.
            args += ["--limit", "%s[0]" % self.role]
        if self.overrides:
            args += ["-e", json.dumps(self.overrides)]
        if not self.strict:
            args += ["-e", json.dumps(NOT_STRICT)]
        return args


TENANTS = [{"name": "acme-corp", "vip": False}, {"name": "globex", "vip": False},
           {"name": "vip-initech", "vip": True}, {"name": "premium-umbrella", "vip": True}]


def tenants_with(index, **changes):
    tenants = [dict(t) for t in TENANTS]
    tenants[index].update(changes)
    return tenants


CASES = {
    # --- The shared settings (roles/aetherlink/tasks/main.yml) -------------------------------------
    "threshold-above-100": Case("aetherlink", {"aetherlink_alert_cache_hit_ratio_min": 150}, [
        'aetherlink_alert_cache_hit_ratio_min must be a number from 0 to 100 (a percentage), got "150"']),
    "threshold-not-a-number": Case("aetherlink", {"aetherlink_alert_lowconfidence_vip_max": "ten"}, [
        "Validation of arguments failed",
        "argument 'aetherlink_alert_lowconfidence_vip_max' is of type str and we were unable to convert to float"],
        checked_by=ARGSPEC),
    "alert-duration-with-a-space": Case("aetherlink", {"aetherlink_alert_lowconfidence_vip_for": "5 min"}, [
        'aetherlink_alert_lowconfidence_vip_for must be a Prometheus duration such as 30s, 5m, 1h or 1h30m, got "5 min"']),
    "vip-pattern-atomic-group": Case("aetherlink", {"aetherlink_vip_tenant_pattern": "(?>vip)-.*"}, [
        "aetherlink_vip_tenant_pattern uses look-around, a back-reference, an atomic group",
        "which Prometheus (RE2) does not support"]),
    "vip-pattern-unbalanced": Case("aetherlink", {"aetherlink_vip_tenant_pattern": "vip-(.*"}, [
        "aetherlink_vip_tenant_pattern is not a valid regular expression", '(got "vip-(.*")']),
    "tenant-names-duplicate": Case("aetherlink", {"aetherlink_tenants": TENANTS + [{"name": "globex", "vip": True}]}, [
        'aetherlink_tenants has duplicate names: ["globex"]']),
    "tenant-name-upper-case-and-space": Case("aetherlink", {"aetherlink_tenants": tenants_with(1, name="Globex Inc")}, [
        "aetherlink_tenants[1] must be a mapping whose 'name' is 2-63 lower-case letters, digits or '-'",
        '"Globex Inc"']),
    "port-out-of-range": Case("aetherlink", {"aetherlink_alertmanager_port": 70000}, [
        'aetherlink_alertmanager_port must be a port number from 1 to 65535, got "70000"']),
    "ports-equal": Case("aetherlink", {"aetherlink_grafana_port": 9090}, [
        "the shared ports must all differ", '"aetherlink_prometheus_port": 9090', '"aetherlink_grafana_port": 9090']),
    "app-port-privileged": Case("aetherlink", {"aetherlink_app_port": 80}, [
        "aetherlink_app_port must be from 1024 to 65535 (the AetherLink service runs without capabilities), got \"80\""]),
    "health-weights-all-0": Case("aetherlink", {
        "aetherlink_health_weights": {"cache": 0, "confidence": 0, "errors": 0, "latency": 0}}, [
        "aetherlink_health_weights must have a positive sum (all weights are 0)"]),
    "sla-objective-100": Case("aetherlink", {"aetherlink_sla_availability_objective_vip_pct": 100}, [
        "aetherlink_sla_availability_objective_vip_pct must be a number from 0 to below 100 "
        "(a percentage; 100 leaves no error budget)"]),
    "burn-windows-short-equal-to-long": Case("aetherlink", {"aetherlink_slo_slow_burn_short_window": "360m"}, [
        "aetherlink_slo_slow_burn_short_window must be shorter than aetherlink_slo_slow_burn_long_window",
        'got "360m" and "6h"']),
    "billing-price-negative": Case("aetherlink", {"aetherlink_billing_price_usd_per_reranked_answer": -0.006}, [
        'aetherlink_billing_price_usd_per_reranked_answer must be a number >= 0 (USD per answer), got "-0.006"']),
    "web-username-with-a-space": Case("aetherlink", {"aetherlink_web_username": "ops team"}, [
        "aetherlink_web_username 1-64 letters, digits, '.', '_' or '-' (got \"ops team\")"]),
    "web-password-too-short": Case("aetherlink", {}, [
        "aetherlink_web_password must be 16-72 printable ASCII characters (bcrypt reads 72 bytes at most), "
        "got 10 characters (the value is not shown)"], env={"AETHER_WEB_PASSWORD": SHORT_WEB_PASSWORD}),
    "metrics-token-with-a-space": Case("aetherlink", {}, [
        "aetherlink_app_metrics_token must be empty (an open /metrics) or 16-256 characters of A-Z a-z 0-9 . _ ~ + / = -, "
        "got 25 characters (the value is not shown)"], env={"AETHER_METRICS_TOKEN": SPACED_METRICS_TOKEN}),
    "tls-on-ca-file-missing": Case("aetherlink", {
        "aetherlink_web_tls_enabled": True, "aetherlink_web_tls_ca_file": "/nonexistent/aetherlink/ca.crt"}, [
        "aetherlink_web_tls_ca_file must name a readable PEM file on the controller when aetherlink_web_tls_enabled is true",
        '"/nonexistent/aetherlink/ca.crt"'], checked_by="roles/aetherlink/tasks/web_tls_files.yml"),
    # The CA exists (any readable file passes this check); the server's certificate does not.
    "tls-on-cert-file-missing": Case("prometheus", {
        "aetherlink_web_tls_enabled": True, "aetherlink_web_tls_ca_file": str(ROOT / "ansible.cfg"),
        "aetherlink_web_tls_cert_file": "/nonexistent/aetherlink/web.crt"}, [
        "aetherlink_web_tls_cert_file must name a readable PEM file on the controller when aetherlink_web_tls_enabled is true",
        '"/nonexistent/aetherlink/web.crt"'], checked_by="roles/aetherlink/tasks/web_tls_files.yml"),
    "environment-with-a-space": Case("aetherlink", {"aetherlink_environment": "staging 2"}, [
        "aetherlink_environment must be a non-empty name of letters, digits, '.', '_' or '-' (got \"staging 2\")"]),

    # --- prometheus ----------------------------------------------------------------------------------
    "prometheus-scrape-timeout-above-interval": Case("prometheus", {
        "prometheus_scrape_interval": "15s", "prometheus_scrape_timeout": "30s"}, [
        "prometheus_scrape_timeout must not be longer than prometheus_scrape_interval", 'got "30s" and "15s"']),
    "prometheus-slo-long-interval-over-lookback": Case("prometheus", {"prometheus_rules_slo_long_interval": "5m"}, [
        "prometheus_rules_slo_long_interval must be above 0 and below 5m", 'got "5m"']),
    "prometheus-hourly-interval-zero": Case("prometheus", {"prometheus_rules_hourly_interval": "0s"}, [
        "prometheus_rules_hourly_interval must be above 0 and at most 1h", 'got "0s"']),
    "prometheus-external-label-name": Case("prometheus", {"prometheus_external_labels": {"deploy env": "x"}}, [
        "prometheus_external_labels must map label names", '"deploy env"']),
    "prometheus-scrape-interval-with-a-space": Case("prometheus", {"prometheus_scrape_interval": "15 s"}, [
        'prometheus_scrape_interval must be a Prometheus duration such as 30s, 5m, 1h or 1h30m, got "15 s"']),
    "prometheus-hourly-interval-over-1h": Case("prometheus", {"prometheus_rules_hourly_interval": "90m"}, [
        "prometheus_rules_hourly_interval must be above 0 and at most 1h (its groups record hourly increases; "
        'a longer interval would miss hours', 'got "90m"']),
    "prometheus-listen-ip-with-a-port": Case("prometheus", {"prometheus_web_listen_ip": "0.0.0.0:9090"}, [
        "prometheus_web_listen_ip must be an address without a port", 'got "0.0.0.0:9090"']),
    "prometheus-flag-with-whitespace": Case("prometheus", {"prometheus_extra_flags": ["--query.timeout 1m"]}, [
        "prometheus_extra_flags and the path/URL variables must not contain whitespace", '["--query.timeout 1m"]']),

    # --- alertmanager --------------------------------------------------------------------------------
    "alertmanager-slack-url-http": Case("alertmanager", {}, [
        "alertmanager_slack_webhook_url (from aetherlink_slack_webhook_url, vault_slack_webhook_url or "
        "SLACK_WEBHOOK_URL) must be an https:// URL; the value given is not (it is not shown: it is a secret)"],
        env={"SLACK_WEBHOOK_URL": HTTP_SLACK_URL}, hidden=[HTTP_SLACK_URL.rsplit("/", 1)[1]]),
    "alertmanager-group-by-label-with-a-space": Case("alertmanager", {"alertmanager_group_by": ["alertname", "tenant id"]}, [
        'alertmanager_group_by must be a list of label names (got ["alertname", "tenant id"])']),
    "alertmanager-group-wait-spelled-out": Case("alertmanager", {"alertmanager_group_wait": "30 seconds"}, [
        'alertmanager_group_wait must be a duration such as 30s, 2m or 2h, got "30 seconds"']),
    "alertmanager-advertise-address-without-port": Case("alertmanager", {
        "alertmanager_cluster_advertise_address": "10.0.0.5"}, [
        'alertmanager_cluster_advertise_address empty or host:port (got "10.0.0.5")']),
    "alertmanager-cluster-listen-ip-with-a-port": Case("alertmanager", {"alertmanager_cluster_listen_ip": "0.0.0.0:9094"}, [
        "alertmanager_web_listen_ip and alertmanager_cluster_listen_ip must be addresses without a port",
        '"0.0.0.0:9094"']),

    # --- aether_app ----------------------------------------------------------------------------------
    "app-admin-key-too-short": Case("aether_app", {}, [
        "aether_app_admin_key must be 20-256 characters of A-Z a-z 0-9 . _ ~ + / = - (got 12 characters)"],
        env={"AETHER_ADMIN_KEY": SHORT_ADMIN_KEY}, strict=False),
    # The preflight entry point's argument spec refuses it (its type) before the preflight's own check.
    "app-prune-switch-maybe": Case("aether_app", {"aether_app_prune_tenants": "maybe"}, [
        "Validation of arguments failed",
        "argument 'aether_app_prune_tenants' is of type str and we were unable to convert to bool"],
        checked_by=ARGSPEC),
    "prometheus-ready-timeout-not-a-number": Case("prometheus", {"prometheus_ready_timeout": "soon"}, [
        "Validation of arguments failed",
        "argument 'prometheus_ready_timeout' is of type str and we were unable to convert to int"],
        checked_by=ARGSPEC),
    "app-tenant-lowconf-threshold-above-1": Case("aether_app", {
        "aetherlink_tenants": tenants_with(2, lowconf_threshold=1.5)}, [
        "aetherlink_tenants[2] (vip-initech): lowconf_threshold must be a number from 0 to 1",
        "got lowconf_threshold=1.5"]),
    "app-data-dir-relative": Case("aether_app", {"aether_app_data_dir": "var/lib/aetherlink"}, [
        "aether_app_data_dir and aether_app_db_path absolute paths", '"var/lib/aetherlink"']),
    "app-key-of-an-unknown-tenant": Case("aether_app", {"aether_app_tenant_api_keys": {"initech": ORPHAN_TENANT_KEY}}, [
        'aether_app_tenant_api_keys["initech"] must belong to a tenant of aetherlink_tenants',
        "(got 32 characters)"], hidden=[ORPHAN_TENANT_KEY]),

    # --- grafana (other than tests/test_grafana_files.py::test_bad_input_named_in_the_message) --------
    "grafana-admin-user-with-a-space": Case("grafana", {"grafana_admin_user": "grafana admin"}, [
        'grafana_admin_user must be 1-64 of A-Z a-z 0-9 . _ @ - (got "grafana admin")']),
    "grafana-plugin-not-an-id": Case("grafana", {"grafana_plugins": ["Grafana Clock Panel"]}, [
        'grafana_plugins must be a list of plugin ids such as grafana-clock-panel (got ["Grafana Clock Panel"])']),
    "grafana-ini-section-not-a-mapping": Case("grafana", {"grafana_ini": {"log": "debug"}}, [
        'grafana_ini must map section names to mappings of options (got {"log": "debug"})']),
    "grafana-dashboards-dir-relative": Case("grafana", {"grafana_dashboards_dir": "dashboards/aetherlink"}, [
        "grafana_config_dir, grafana_provisioning_dir, grafana_data_dir and grafana_dashboards_dir absolute paths "
        "without whitespace", '"dashboards/aetherlink"']),
}
PASSING = "no-override-passes"
# The passing run: every role's play, on the first host of its group like the cases.
PASSING_LIMIT = ":".join("%s[0]" % role for role in ROLES)


def run_case(name):
    if name == PASSING:
        return run([tool("ansible-playbook"), PLAYBOOK, "-i", INVENTORY, "--limit", PASSING_LIMIT])
    case = CASES[name]
    return run(case.argv(), env_extra=case.env)


@pytest.fixture(scope="module")
def outcomes():
    # The passing run (every play) is the longest: started first.
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_case, name) for name in [PASSING, *CASES]}
        return {name: future.result() for name, future in futures.items()}


def error_of(out):
    """The failure Ansible reports: the message after [ERROR]: and the file of the failed task."""
    match = re.search(r"^\[ERROR\]: (.*?)^Origin: (\S+)", out, re.M | re.S)
    return (match.group(1), match.group(2)) if match else (None, None)


def shown(value, out):
    """Whether ``value`` is in the output, also where the output wraps it onto several lines."""
    return bool(value) and (value in out or re.sub(r"\s+", "", value) in re.sub(r"\s+", "", out))


def assert_no_secret_shown(values, out):
    assert not [v for v in values if shown(v, out)], "a secret is shown"


def test_the_cases_cover_every_role_with_30_distinct_bad_values():
    values = {(c.role, json.dumps(c.overrides, sort_keys=True), json.dumps(c.env, sort_keys=True)) for c in CASES.values()}
    assert len(values) == len(CASES) >= 30
    assert {c.role for c in CASES.values()} == {"aetherlink", *ROLES}


def test_the_preflight_passes_without_a_bad_value(outcomes):
    proc = outcomes[PASSING]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "UNREACHABLE" not in out
    for role in ["aetherlink", *ROLES]:
        assert "TASK [%s : " % role in out, "the checks of %s did not run" % role
    assert_no_secret_shown(TEST_SECRETS.values(), out)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_value_refused_before_any_host_is_touched(outcomes, name):
    case = CASES[name]
    proc = outcomes[name]
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "UNREACHABLE" not in out, out
    message, origin = error_of(out)
    assert message, out
    for part in case.expected:
        assert part in message, "%r not in the failure:\n%s" % (part, out)
    if case.checked_by == ARGSPEC:
        assert origin == "<unknown>" and "validate_argument_spec" in out, out
    else:
        assert origin.split(":")[0].endswith(case.checked_by), out
    assert_no_secret_shown(TEST_SECRETS.values(), out)
    assert_no_secret_shown(case.hidden, out)
