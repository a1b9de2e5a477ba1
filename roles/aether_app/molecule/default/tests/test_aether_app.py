"""Verify the aether_app role on a live systemd container, through the service's HTTP API.

The tenants come from the environment's shared variables (testkit.shared_vars(): what the
role consumed); the secrets from the scenario's provisioner environment (molecule.yml), never
repeated here.
Playbooks (smoke.yml, converge.yml) are run against this scenario's inventory, as an operator
would run them.
"""

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[5] / "molecule" / "shared"  # testkit: the scenarios' shared helpers
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

import testkit  # noqa: E402
from sandbox import assert_properties, exposure, mount_of, mount_table  # noqa: E402
from testkit import (  # noqa: E402
    ROOT, assert_unchanged, changed_hosts, diff_added_lines, load_yaml, main_pid, metric_sum, metrics_bearer,
    scenario_env, scrape, shared_vars, wait_until,
)

ROLE_DEFAULTS = load_yaml(SCENARIO.parents[1] / "defaults" / "main.yml")
APP_HOST = "app-test-1"
SERVICE = "aetherlink"
API = "http://127.0.0.1:8000"
# The admin key and the metrics token only (no_log, never in a diff) ...
ENV_FILE = "/etc/aetherlink/aetherlink.env"
# ... and every other setting of the service (shown by --diff).
SETTINGS_FILE = "/etc/aetherlink/settings.env"
SMOKE_REQUESTS = 10

ADMIN_KEY = scenario_env(SCENARIO, "AETHER_ADMIN_KEY")
SEED = scenario_env(SCENARIO, "AETHER_TENANT_KEY_SEED")
METRICS_TOKEN = scenario_env(SCENARIO, "AETHER_METRICS_TOKEN")


def tenant_key(name):
    """The role's documented derivation: "alk_" + sha256("<seed>:<tenant>")."""
    return "alk_" + hashlib.sha256(("%s:%s" % (SEED, name)).encode()).hexdigest()


@pytest.fixture(scope="module")
def tenants():
    return shared_vars()["aetherlink_tenants"]


def secrets(tenants):
    return [ADMIN_KEY, SEED, METRICS_TOKEN] + [tenant_key(t["name"]) for t in tenants]


def run_playbook(playbook, *extra_args, env=None):
    """testkit.run_playbook with the scenario's secrets in the environment (`env` may override them)."""
    secrets_env = {"AETHER_ADMIN_KEY": ADMIN_KEY, "AETHER_TENANT_KEY_SEED": SEED}
    return testkit.run_playbook(playbook, *extra_args, env=dict(secrets_env, **(env or {})))


def request(host, method, path, key=None, body=None):
    """One HTTP request from inside the container; return (status, parsed JSON or text)."""
    args = ["curl", "-sS", "-o", "/dev/stdout", "-w", "\n%{http_code}", "-X", method]
    if key is not None:
        args += ["-H", "Authorization: Bearer %s" % key]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    args.append(API + path)
    out = host.check_output(" ".join(["%s"] * len(args)), *args)
    text, _, status = out.rpartition("\n")
    try:
        return int(status), json.loads(text)
    except ValueError:
        return int(status), text


def metrics(host):
    """Samples of /metrics (with its bearer token): {(name, frozenset(labels)): value}."""
    return scrape(host, API + "/metrics", *metrics_bearer(SCENARIO))


def wait_healthy(host, timeout=60):
    def probe():
        result = host.run("curl -sSf %s", API + "/healthz")
        return json.loads(result.stdout) if result.rc == 0 else None

    body = wait_until(probe, timeout=timeout, interval=1)
    if not body:
        raise AssertionError("AetherLink did not answer /healthz within %ss" % timeout)
    return body


def live_setting(host, name):
    """NAME=value of one variable of the running service's environment (the others are not read out)."""
    return host.check_output("tr '\\0' '\\n' < /proc/%s/environ | grep -E -- %s", main_pid(host, SERVICE), "^%s=" % name)


def test_service_runs_unprivileged(host):
    service = host.service("aetherlink")
    assert service.is_running
    assert service.is_enabled
    pid = main_pid(host, SERVICE)
    assert pid != "0"
    status = host.file("/proc/%s/status" % pid).content_string
    uid = host.check_output("id -u aetherlink")
    assert re.search(r"^Uid:\s+%s\s+%s\s" % (uid, uid), status, re.M), status
    assert uid != "0"
    assert re.search(r"^CapEff:\s+0+$", status, re.M), "the service holds capabilities"
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert host.check_output("stat -c %%U /proc/%s", pid) == "aetherlink"


def test_unit_is_hardened_and_sandbox_effective(host):
    data_dir = ROLE_DEFAULTS["aether_app_data_dir"]
    props = assert_properties(host, "aetherlink", {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "PrivateDevices": "yes",
        "User": "aetherlink",
        "CapabilityBoundingSet": "",
    }, also=["ReadWritePaths"])
    assert data_dir in props["ReadWritePaths"].split(), props["ReadWritePaths"]
    # The sandbox is really in place: in the service's mount namespace the root
    # and /opt are read-only, the data directory (a mount point of its own) writable.
    table = mount_table(host, main_pid(host, SERVICE))
    for path in ("/", "/opt/aetherlink"):
        assert "ro" in table[mount_of(table, path)].options, "%s is writable for the service" % path
    assert mount_of(table, data_dir) == data_dir
    assert "rw" in table[data_dir].options, "%s is read-only for the service" % data_dir
    assert host.run("systemd-analyze verify /etc/systemd/system/aetherlink.service").rc == 0
    level = exposure(host, "aetherlink.service")
    assert level.score <= 2.0, level.report


def test_env_file_protects_the_admin_key(host):
    env = host.file(ENV_FILE)
    assert env.user == "root"
    assert env.group == "aetherlink"
    assert env.mode == 0o640
    assert "API_ADMIN_KEY=%s\n" % ADMIN_KEY in env.content_string
    assert host.file("/etc/aetherlink").mode == 0o750
    # Not readable by another account, readable by the service's group.
    denied = host.run("runuser -u nobody -- cat %s", ENV_FILE)
    assert denied.rc != 0 and "Permission denied" in denied.stderr
    assert host.run("runuser -u aetherlink -- cat %s", ENV_FILE).rc == 0
    # The key is nowhere else: not in world-readable files, the unit, the command line or the log.
    found = host.run("grep -rlsF -- %s /etc /opt/aetherlink /var/lib/aetherlink /tmp", ADMIN_KEY).stdout.split()
    assert found == [ENV_FILE]
    assert ADMIN_KEY not in host.file("/proc/%s/cmdline" % main_pid(host, SERVICE)).content_string
    assert ADMIN_KEY not in host.check_output("journalctl -u aetherlink --no-pager")
    # The env file holds the key only; the other settings are in SETTINGS_FILE, as protected.
    assigned = [line.split("=", 1)[0] for line in env.content_string.splitlines() if line and not line.startswith("#")]
    assert assigned == ["API_ADMIN_KEY", "AETHER_METRICS_TOKEN"]
    assert "AETHER_METRICS_TOKEN=%s\n" % METRICS_TOKEN in env.content_string
    assert METRICS_TOKEN not in host.check_output("journalctl -u aetherlink --no-pager")
    settings = host.file(SETTINGS_FILE)
    assert settings.user == "root"
    assert settings.group == "aetherlink"
    assert settings.mode == 0o640


def test_healthz(host, tenants):
    status, body = request(host, "GET", "/healthz")
    assert status == 200
    assert body["status"] == "ok" and body["db"] == "ok"
    assert body["tenants"] == len(tenants)


def test_metrics_require_the_bearer_token(host):
    """/metrics answers 401 without the token, with a wrong one and with the
    admin key; with the token it serves the contract's series."""
    assert request(host, "GET", "/metrics")[0] == 401
    assert request(host, "GET", "/metrics", key=METRICS_TOKEN + "x")[0] == 401
    assert request(host, "GET", "/metrics", key=ADMIN_KEY)[0] == 401
    status, text = request(host, "GET", "/metrics", key=METRICS_TOKEN)
    assert status == 200 and "aether_cache_requests_total" in text
    # The refusals are counted, under the series created at start.
    assert metric_sum(metrics(host), "aether_http_requests_total", route="metrics", code="401") >= 3


def test_tenants_provisioned_from_inventory(host, tenants):
    status, body = request(host, "GET", "/v1/admin/tenants", key=ADMIN_KEY)
    assert status == 200
    live = {t["name"]: t for t in body["tenants"]}
    assert set(live) == {t["name"] for t in tenants}
    defaults = ROLE_DEFAULTS["aether_app_tenant_defaults"]
    for t in tenants:
        assert live[t["name"]]["vip"] == t["vip"]
        assert live[t["name"]]["lowconf_threshold"] == t.get("lowconf_threshold", defaults["lowconf_threshold"])
        assert live[t["name"]]["rerank_default"] == t.get("rerank_default", defaults["rerank_default"])
        assert live[t["name"]]["documents"] == len(ROLE_DEFAULTS["aether_app_documents"])
    # Keys are stored as digests only: no tenant key in the data directory.
    for t in tenants:
        assert host.run("grep -rlsF -- %s /var/lib/aetherlink /etc /opt/aetherlink", tenant_key(t["name"])).stdout == ""


def test_keys_are_checked(host, tenants):
    name = tenants[0]["name"]
    question = {"question": "What does the router warranty cover?"}
    assert request(host, "POST", "/v1/query", key=tenant_key(name), body=question)[0] == 200
    status, body = request(host, "POST", "/v1/query", key=tenant_key(name) + "x", body=question)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert request(host, "POST", "/v1/query", body=question)[0] == 401
    # A tenant key is not an admin key, nor is a wrong admin key.
    assert request(host, "GET", "/v1/admin/tenants", key=tenant_key(name))[0] == 401
    assert request(host, "GET", "/v1/admin/tenants", key=ADMIN_KEY[:-1] + "#")[0] == 401


def test_smoke_traffic_fills_the_contract_series(host, tenants):
    before = metrics(host)
    rc, out = run_playbook(ROOT / "playbooks" / "smoke.yml", "-e", "smoke_requests_per_tenant=%d" % SMOKE_REQUESTS)
    assert rc == 0, out
    assert_unchanged(out, [APP_HOST])
    after = metrics(host)
    for t in (t["name"] for t in tenants):
        def delta(name, **labels):
            return metric_sum(after, name, tenant=t, **labels) - metric_sum(before, name, tenant=t, **labels)
        assert delta("aether_cache_requests_total") == SMOKE_REQUESTS, t
        # Repeated questions hit the cache (misses: see the degraded run below).
        hits = delta("aether_cache_hits_total")
        assert hits / SMOKE_REQUESTS >= 0.3, (t, hits)
        assert delta("aether_rag_answers_total", rerank="true") > 0, t
        assert delta("aether_rag_answers_total", rerank="false") > 0, t
        low = delta("aether_rag_lowconfidence_total")
        assert 0 < low / SMOKE_REQUESTS < 0.15, (t, low)
        assert delta("aether_http_requests_total", route="query", code="200") == SMOKE_REQUESTS, t
        assert delta("aether_request_duration_seconds_count", route="query") == SMOKE_REQUESTS, t
        assert delta("aether_request_duration_seconds_bucket", route="query", le="+Inf") == SMOKE_REQUESTS, t
        # Non-zero values in absolute terms, as Prometheus sees them.
        for series in ("aether_cache_requests_total", "aether_cache_hits_total", "aether_rag_lowconfidence_total"):
            assert metric_sum(after, series, tenant=t) > 0, (t, series)
        assert metric_sum(after, "aether_rag_answers_total", tenant=t, rerank="true") > 0
        assert metric_sum(after, "aether_rag_answers_total", tenant=t, rerank="false") > 0
    assert "Summarise the traffic per tenant" in out
    for secret in secrets(tenants):
        assert secret not in out


def test_smoke_degrades_the_chosen_tenants(host, tenants):
    names = [t["name"] for t in tenants]
    cache_bad, confidence_bad = names[0], names[-1]
    before = metrics(host)
    rc, out = run_playbook(ROOT / "playbooks" / "smoke.yml", "-e", json.dumps({
        "smoke_requests_per_tenant": SMOKE_REQUESTS,
        "smoke_degrade_cache": [cache_bad],
        "smoke_degrade_confidence": confidence_bad,  # a comma-separated string works too
    }))
    assert rc == 0, out
    after = metrics(host)
    for t in names:
        def delta(name, **labels):
            return metric_sum(after, name, tenant=t, **labels) - metric_sum(before, name, tenant=t, **labels)
        hit_ratio = delta("aether_cache_hits_total") / delta("aether_cache_requests_total")
        low_ratio = delta("aether_rag_lowconfidence_total") / delta("aether_rag_answers_total")
        if t == cache_bad:
            assert hit_ratio == 0, t  # unique questions, across runs too
        else:
            assert hit_ratio >= 0.3, (t, hit_ratio)
        if t == confidence_bad:
            assert low_ratio == 1, t
        else:
            assert low_ratio < 0.15, (t, low_ratio)


def test_smoke_rejects_unknown_tenants():
    rc, out = run_playbook(ROOT / "playbooks" / "smoke.yml", "-e", "smoke_degrade_cache=no-such-tenant")
    assert rc != 0
    assert "smoke_degrade_cache and smoke_degrade_confidence must name tenants" in out
    rc, out = run_playbook(ROOT / "playbooks" / "smoke.yml", "-e", "smoke_requests_per_tenant=100000")
    assert rc != 0
    assert "smoke_requests_per_tenant must be an integer from 1 to 20000" in out


def test_restart_keeps_tenants_keys_and_documents(host, tenants):
    pid = main_pid(host, SERVICE)
    host.check_output("systemctl restart aetherlink")
    wait_healthy(host)
    assert main_pid(host, SERVICE) != pid
    status, body = request(host, "GET", "/v1/admin/tenants", key=ADMIN_KEY)
    assert status == 200
    assert {t["name"] for t in body["tenants"]} == {t["name"] for t in tenants}
    for t in tenants:
        status, answer = request(host, "POST", "/v1/query", key=tenant_key(t["name"]),
                                 body={"question": "How do I do a factory reset?", "rerank": True})
        assert status == 200, answer
        assert answer["sources"][0] == "factory-reset"
        assert not answer["low_confidence"]


def test_source_change_reinstalls_and_runs_never_show_secrets(host, tenants, tmp_path):
    """A new wheel is installed and the service restarted; back to the original the same way.

    Both runs are verbose with --diff and change the settings file: no secret may appear.
    """
    source = tmp_path / "app"
    shutil.copytree(ROOT / "app", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    init = source / "src" / "aetherlink" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', '__version__ = "0.1.0+molecule"'))
    assert "0.1.0+molecule" in init.read_text()
    pid = main_pid(host, SERVICE)
    converge = SCENARIO / "converge.yml"
    try:
        rc, out = run_playbook(converge, "-v", "--diff", "-e", json.dumps({
            "aether_app_source_dir": str(source),
            "aether_app_wheelhouse_cache_dir": str(tmp_path / "wheelhouse"),
            "aether_app_log_level": "debug",
        }))
        assert rc == 0, out
        assert "Install AetherLink into the virtualenv" in out
        for secret in secrets(tenants):
            assert secret not in out
        assert wait_healthy(host)["version"] == "0.1.0+molecule"
        assert main_pid(host, SERVICE) != pid
        assert "AETHER_LOG_LEVEL=debug" in host.file(SETTINGS_FILE).content_string
        assert [f for f in host.file("/opt/aetherlink/wheelhouse").listdir() if f.startswith("aetherlink-")] == [
            "aetherlink-0.1.0+molecule-py3-none-any.whl"]
    finally:
        rc, out = run_playbook(converge, "-v", "--diff")
    assert rc == 0, out
    assert APP_HOST in changed_hosts(out), out
    for secret in secrets(tenants):
        assert secret not in out
    assert wait_healthy(host)["version"] == "0.1.0"
    assert "AETHER_LOG_LEVEL=info" in host.file(SETTINGS_FILE).content_string
    assert not any(f.startswith("aetherlink-0.1.0+") for f in host.file("/opt/aetherlink/wheelhouse").listdir())


def test_check_mode_reports_no_change(host, tenants):
    pid = main_pid(host, SERVICE)
    rc, out = run_playbook(SCENARIO / "converge.yml", "--check", "--diff", "-v")
    assert rc == 0, out
    assert_unchanged(out, [APP_HOST])
    for secret in secrets(tenants):
        assert secret not in out
    assert main_pid(host, SERVICE) == pid


def test_check_diff_previews_change_without_touching_host(host, tenants):
    """converge.yml --check --diff with a new cache TTL: the diff shows it, the service keeps the old one."""
    old = int(ROLE_DEFAULTS["aether_app_cache_ttl_seconds"])
    new = old + 60
    checksums = {path: host.file(path).sha256sum for path in (SETTINGS_FILE, ENV_FILE)}
    pid = main_pid(host, SERVICE)
    rc, out = run_playbook(SCENARIO / "converge.yml", "--check", "--diff", "-v",
                           "-e", json.dumps({"aether_app_cache_ttl_seconds": new}))
    assert rc == 0, out
    assert "+AETHER_CACHE_TTL_SECONDS=%d" % new in [line.rstrip() for line in diff_added_lines(out, SETTINGS_FILE)], out
    assert diff_added_lines(out, ENV_FILE) == [], "the admin key file's diff is shown"
    assert APP_HOST in changed_hosts(out), out
    for secret in secrets(tenants):
        assert secret not in out
    # Nothing reached the host: same files, same process, which still runs with the old TTL.
    assert {path: host.file(path).sha256sum for path in checksums} == checksums
    assert "AETHER_CACHE_TTL_SECONDS=%d\n" % old in host.file(SETTINGS_FILE).content_string
    assert main_pid(host, SERVICE) == pid
    assert live_setting(host, "AETHER_CACHE_TTL_SECONDS") == "AETHER_CACHE_TTL_SECONDS=%d" % old


def test_unlisted_tenants_are_kept_with_a_warning_or_pruned_on_request(host, tenants):
    """A tenant that the inventory no longer lists stays (the run names it)
    unless aether_app_prune_tenants is true: then it is deleted with its key,
    and a second run changes nothing."""
    converge = SCENARIO / "converge.yml"
    extra = {"name": "retired-tenant", "vip": False}
    rc, out = run_playbook(converge, "-e", json.dumps({"aetherlink_tenants": tenants + [extra]}))
    assert rc == 0, out
    question = {"question": "How do I do a factory reset?"}
    assert request(host, "POST", "/v1/query", key=tenant_key("retired-tenant"), body=question)[0] == 200

    rc, out = run_playbook(converge)
    assert rc == 0, out
    assert "retired-tenant" in out and "aether_app_prune_tenants" in out
    status, body = request(host, "GET", "/v1/admin/tenants", key=ADMIN_KEY)
    assert "retired-tenant" in {t["name"] for t in body["tenants"]}

    rc, out = run_playbook(converge, "-e", "aether_app_prune_tenants=true")
    assert rc == 0, out
    assert changed_hosts(out) == [APP_HOST]
    status, body = request(host, "GET", "/v1/admin/tenants", key=ADMIN_KEY)
    assert {t["name"] for t in body["tenants"]} == {t["name"] for t in tenants}
    assert request(host, "POST", "/v1/query", key=tenant_key("retired-tenant"), body=question)[0] == 401
    assert not [k for k in metrics(host) if ("tenant", "retired-tenant") in k[1]], "its series are still exported"
    rc, out = run_playbook(converge, "-e", "aether_app_prune_tenants=true")
    assert rc == 0 and changed_hosts(out) == [], out
    for secret in secrets(tenants) + [tenant_key("retired-tenant")]:
        assert secret not in out


def test_bad_input_rejected_before_touching_host(host):
    pid = main_pid(host, SERVICE)
    converge = SCENARIO / "converge.yml"
    rc, out = run_playbook(converge, env={"AETHER_ADMIN_KEY": "short-key"})
    assert rc != 0
    assert "aether_app_admin_key must be 20-256 characters" in out
    assert "got 9 characters" in out and "short-key" not in out
    rc, out = run_playbook(converge, "-e", "aetherlink_app_port=80")
    assert rc != 0
    assert "aetherlink_app_port must be from 1024 to 65535" in out
    tenants = shared_vars()["aetherlink_tenants"]
    bad = [dict(tenants[0], lowconf_threshold=1.5)] + tenants[1:]
    rc, out = run_playbook(converge, "-e", json.dumps({"aetherlink_tenants": bad}))
    assert rc != 0
    assert "lowconf_threshold must be a number from 0 to 1" in out
    rc, out = run_playbook(converge, env={"AETHER_TENANT_KEY_SEED": ""})
    assert rc != 0
    assert "aether_app_tenant_key_seed must be a secret of at least 16 characters" in out
    rc, out = run_playbook(converge, env={"AETHER_METRICS_TOKEN": "token with spaces!"})
    assert rc != 0
    assert "aetherlink_app_metrics_token must be empty (an open /metrics) or 16-256 characters" in out
    assert "token with spaces!" not in out
    rc, out = run_playbook(converge, "-e", "aether_app_prune_tenants=maybe")
    assert rc != 0
    # Refused by the role's argument spec (its type), before the preflight's own check.
    assert "argument 'aether_app_prune_tenants' is of type str and we were unable to convert to bool" in out
    # Nothing reached the host: same process, same configuration.
    assert main_pid(host, SERVICE) == pid
    assert "AETHER_PORT=8000" in host.file(SETTINGS_FILE).content_string
