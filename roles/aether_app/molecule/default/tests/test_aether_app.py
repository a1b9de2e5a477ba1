"""Verify the aether_app role on a live systemd container, through the service's HTTP API.

The tenants come from the environment's shared variables (the same file the role consumed);
the secrets from the scenario's provisioner environment (molecule.yml), never repeated here.
Playbooks (smoke.yml, converge.yml) are run against this scenario's inventory, as an operator
would run them.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
ROOT = SCENARIO.parents[3]
SHARED_VARS = ROOT / "inventories" / "local" / "group_vars" / "all" / "aetherlink.yml"
ROLE_DEFAULTS = yaml.safe_load((SCENARIO.parents[1] / "defaults" / "main.yml").read_text())
API = "http://127.0.0.1:8000"
ENV_FILE = "/etc/aetherlink/aetherlink.env"
SMOKE_REQUESTS = 10


def scenario_env(name):
    value = os.environ.get(name)
    if not value:
        value = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["provisioner"]["env"][name]
    return value


ADMIN_KEY = scenario_env("AETHER_ADMIN_KEY")
SEED = scenario_env("AETHER_TENANT_KEY_SEED")


def tenant_key(name):
    """The role's documented derivation: "alk_" + sha256("<seed>:<tenant>")."""
    return "alk_" + hashlib.sha256(("%s:%s" % (SEED, name)).encode()).hexdigest()


@pytest.fixture(scope="module")
def tenants():
    return yaml.safe_load(SHARED_VARS.read_text())["aetherlink_tenants"]


def secrets(tenants):
    return [ADMIN_KEY, SEED] + [tenant_key(t["name"]) for t in tenants]


def run_playbook(playbook, *extra_args, env=None):
    """Run a playbook against this scenario's inventory; return (rc, output)."""
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    full_env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1",
                    ANSIBLE_FORCE_COLOR="0", AETHER_ADMIN_KEY=ADMIN_KEY, AETHER_TENANT_KEY_SEED=SEED)
    full_env.update(env or {})
    proc = subprocess.run(
        ["ansible-playbook", "-i", inventory, str(playbook), *extra_args],
        env=full_env, capture_output=True, text=True, timeout=900, check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def recap_changed(output):
    return int(re.search(r"aether-app-1\s*:\s*ok=\d+\s+changed=(\d+)", output).group(1))


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
    """Samples of /metrics: {(name, frozenset(labels)): value}."""
    samples = {}
    for line in host.check_output("curl -sS %s", API + "/metrics").splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def main_pid(host):
    return host.check_output("systemctl show --property MainPID --value aetherlink")


def wait_healthy(host, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        probe = host.run("curl -sSf %s", API + "/healthz")
        if probe.rc == 0:
            return json.loads(probe.stdout)
        time.sleep(1)
    raise AssertionError("AetherLink did not answer /healthz within %ss" % timeout)


def test_service_runs_unprivileged(host):
    service = host.service("aetherlink")
    assert service.is_running
    assert service.is_enabled
    pid = main_pid(host)
    assert pid != "0"
    status = host.file("/proc/%s/status" % pid).content_string
    uid = host.check_output("id -u aetherlink")
    assert re.search(r"^Uid:\s+%s\s+%s\s" % (uid, uid), status, re.M), status
    assert uid != "0"
    assert re.search(r"^CapEff:\s+0+$", status, re.M), "the service holds capabilities"
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert host.check_output("stat -c %%U /proc/%s", pid) == "aetherlink"


def test_unit_is_hardened_and_sandbox_effective(host):
    unit = host.check_output(
        "systemctl show aetherlink -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p ProtectHome "
        "-p PrivateDevices -p ReadWritePaths -p CapabilityBoundingSet -p User")
    props = dict(line.split("=", 1) for line in unit.splitlines())
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateTmp"] == "yes"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateDevices"] == "yes"
    assert props["User"] == "aetherlink"
    assert "/var/lib/aetherlink" in props["ReadWritePaths"].split()
    assert props["CapabilityBoundingSet"] == ""
    # The sandbox is really in place: in the service's mount namespace the root
    # and /opt are read-only, the data directory writable.
    mounts = host.file("/proc/%s/mountinfo" % main_pid(host)).content_string
    def options(mountpoint):
        opts = ""
        for line in mounts.splitlines():
            fields = line.split()
            if fields[4] == mountpoint:
                opts = fields[5]
        return opts.split(",")
    assert "ro" in options("/")
    assert "rw" in options("/var/lib/aetherlink")
    assert host.run("systemd-analyze verify /etc/systemd/system/aetherlink.service").rc == 0
    exposure = host.check_output("systemd-analyze security aetherlink --no-pager | tail -1")
    assert float(re.search(r"exposure level for aetherlink.service: (\d+\.\d+)", exposure).group(1)) <= 2.0, exposure


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
    assert ADMIN_KEY not in host.file("/proc/%s/cmdline" % main_pid(host)).content_string
    assert ADMIN_KEY not in host.check_output("journalctl -u aetherlink --no-pager")


def test_healthz(host, tenants):
    status, body = request(host, "GET", "/healthz")
    assert status == 200
    assert body["status"] == "ok" and body["db"] == "ok"
    assert body["tenants"] == len(tenants)


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
    assert recap_changed(out) == 0
    after = metrics(host)
    for t in (t["name"] for t in tenants):
        def delta(name, **labels):
            return value(after, name, tenant=t, **labels) - value(before, name, tenant=t, **labels)
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
            assert value(after, series, tenant=t) > 0, (t, series)
        assert value(after, "aether_rag_answers_total", tenant=t, rerank="true") > 0
        assert value(after, "aether_rag_answers_total", tenant=t, rerank="false") > 0
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
            return value(after, name, tenant=t, **labels) - value(before, name, tenant=t, **labels)
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
    assert "smoke_requests_per_tenant must be an integer from 1 to 500" in out


def test_restart_keeps_tenants_keys_and_documents(host, tenants):
    pid = main_pid(host)
    host.check_output("systemctl restart aetherlink")
    wait_healthy(host)
    assert main_pid(host) != pid
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

    Both runs are verbose with --diff and change the env file: no secret may appear.
    """
    source = tmp_path / "app"
    shutil.copytree(ROOT / "app", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    init = source / "src" / "aetherlink" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', '__version__ = "0.1.0+molecule"'))
    assert "0.1.0+molecule" in init.read_text()
    pid = main_pid(host)
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
        assert main_pid(host) != pid
        assert "AETHER_LOG_LEVEL=debug" in host.file(ENV_FILE).content_string
        assert [f for f in host.file("/opt/aetherlink/wheelhouse").listdir() if f.startswith("aetherlink-")] == [
            "aetherlink-0.1.0+molecule-py3-none-any.whl"]
    finally:
        rc, out = run_playbook(converge, "-v", "--diff")
    assert rc == 0, out
    assert recap_changed(out) > 0
    for secret in secrets(tenants):
        assert secret not in out
    assert wait_healthy(host)["version"] == "0.1.0"
    assert "AETHER_LOG_LEVEL=info" in host.file(ENV_FILE).content_string
    assert not any(f.startswith("aetherlink-0.1.0+") for f in host.file("/opt/aetherlink/wheelhouse").listdir())


def test_check_mode_reports_no_change(host, tenants):
    pid = main_pid(host)
    rc, out = run_playbook(SCENARIO / "converge.yml", "--check", "--diff", "-v")
    assert rc == 0, out
    assert recap_changed(out) == 0, out
    for secret in secrets(tenants):
        assert secret not in out
    assert main_pid(host) == pid


def test_bad_input_rejected_before_touching_host(host):
    pid = main_pid(host)
    converge = SCENARIO / "converge.yml"
    rc, out = run_playbook(converge, env={"AETHER_ADMIN_KEY": "short-key"})
    assert rc != 0
    assert "aether_app_admin_key must be 20-256 characters" in out
    assert "got 9 characters" in out and "short-key" not in out
    rc, out = run_playbook(converge, "-e", "aether_app_port=80")
    assert rc != 0
    assert "aether_app_port must be an integer from 1024 to 65535" in out
    tenants = yaml.safe_load(SHARED_VARS.read_text())["aetherlink_tenants"]
    bad = [dict(tenants[0], lowconf_threshold=1.5)] + tenants[1:]
    rc, out = run_playbook(converge, "-e", json.dumps({"aetherlink_tenants": bad}))
    assert rc != 0
    assert "lowconf_threshold must be a number from 0 to 1" in out
    rc, out = run_playbook(converge, env={"AETHER_TENANT_KEY_SEED": ""})
    assert rc != 0
    assert "aether_app_tenant_key_seed must be a secret of at least 16 characters" in out
    # Nothing reached the host: same process, same configuration.
    assert main_pid(host) == pid
    assert "AETHER_PORT=8000" in host.file(ENV_FILE).content_string
