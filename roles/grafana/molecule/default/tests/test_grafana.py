"""Verify the grafana role, and every dashboard query on a live Prometheus fed by the app.

Where Grafana's package is not installed (its source is unreachable on the
project's machines), the role ran up to the install: its files are checked
here, and the tests that need the Grafana server are skipped with the reason
printed. Every panel and variable query of every dashboard is run against the
scenario's real Prometheus (published on 127.0.0.1:19090), which scrapes the
real AetherLink service after smoke traffic.
"""

import base64
import configparser
import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import testinfra
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO.parents[3] / "molecule" / "shared"))
from testkit import ROOT, assert_unchanged, load_yaml, main_pid, run_playbook, scenario_env, shared_vars  # noqa: E402

sys.path.insert(0, str(ROOT / "dashboards"))
import queries  # noqa: E402

ROLE = SCENARIO.parents[1]
RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_:]+\b")
ROLE_DEFAULTS = load_yaml(ROLE / "defaults" / "main.yml")
ROLE_VARS = load_yaml(ROLE / "vars" / "main.yml")
DASHBOARDS = sorted((ROLE / "files" / "dashboards").glob("*.json"))
PROMETHEUS = "http://127.0.0.1:19090"
GRAFANA_API = "http://127.0.0.1:3000"
CONVERGE = SCENARIO / "converge.yml"
DASHBOARDS_DIR = ROLE_DEFAULTS["grafana_dashboards_dir"]
PROVISIONING = ROLE_DEFAULTS["grafana_provisioning_dir"]
PASSWORD = scenario_env(SCENARIO, "GRAFANA_ADMIN_PASSWORD")
SECRETS = [PASSWORD, scenario_env(SCENARIO, "AETHER_ADMIN_KEY"), scenario_env(SCENARIO, "AETHER_TENANT_KEY_SEED")]


# The scenario has three hosts; the tests address them by name (no `host`
# fixture, which would run every test once per host).
@pytest.fixture(scope="module")
def grafana():
    return testinfra.get_host("ansible://grafana-1", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def installed(grafana):
    return grafana.package("grafana").is_installed


@pytest.fixture(scope="module")
def server(grafana, installed):
    if not installed:
        pytest.skip(
            "Grafana's package is not installed: no package source (apt.grafana.com or a mirror, or a .deb) "
            "is reachable from this machine, so the checks that need the Grafana server cannot run here; "
            "they run where AETHERLINK_GRAFANA_INSTALL=true or the repository answers"
        )
    return grafana


def shared():
    values = shared_vars()
    port = values["aetherlink_grafana_port"]
    values["aetherlink_grafana_url"] = values["aetherlink_grafana_url"].replace(
        "{{ aetherlink_grafana_port }}", str(port))
    return values


def prometheus(path, **params):
    """GET Prometheus' API from the controller, logged in as Grafana's datasource is (basic auth)."""
    url = PROMETHEUS + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
    login = "%s:%s" % (shared()["aetherlink_web_username"], scenario_env(SCENARIO, "AETHER_WEB_PASSWORD"))
    request = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(login.encode()).decode()})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def grafana_api(host, path, method="GET", user="admin", password=None):
    out = host.check_output(
        "curl -sS -u %s -X %s -w '\\n%%{http_code}' %s",
        "%s:%s" % (user, password or PASSWORD), method, GRAFANA_API + path)
    body, _, status = out.rpartition("\n")
    return int(status), (json.loads(body) if body.strip().startswith(("{", "[")) else body)


# --- Up to the package install (runs everywhere) -------------------------------


def test_apt_source_signed_by_its_keyring(grafana):
    source = grafana.file("/etc/apt/sources.list.d/grafana.sources")
    assert source.mode == 0o644
    fields = dict(line.split(": ", 1) for line in source.content_string.splitlines() if ": " in line)
    assert fields["Types"] == "deb"
    assert fields["URIs"] == ROLE_DEFAULTS["grafana_apt_repository_url"]
    assert fields["Suites"] == ROLE_DEFAULTS["grafana_apt_suite"]
    assert fields["Components"] == " ".join(ROLE_DEFAULTS["grafana_apt_components"])
    assert fields["Signed-By"] == "/etc/apt/keyrings/grafana.asc"
    keyring = grafana.file("/etc/apt/keyrings/grafana.asc")
    assert keyring.user == "root" and keyring.mode == 0o644
    assert "-----BEGIN PGP PUBLIC KEY BLOCK-----" in keyring.content_string
    # No legacy apt-key trust: nothing of Grafana's in trusted.gpg(.d).
    assert grafana.run("ls /etc/apt/trusted.gpg.d | grep -i grafana").rc != 0


def test_grafana_ini_merged_with_anonymous_access_off(grafana):
    ini_file = grafana.file("/etc/grafana/grafana.ini")
    assert ini_file.user == "root" and ini_file.group == "grafana" and ini_file.mode == 0o640
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(ini_file.content_string)
    values = shared()
    assert ini["server"]["http_port"] == str(values["aetherlink_grafana_port"])
    assert ini["server"]["root_url"] == values["aetherlink_grafana_url"]
    assert ini["auth.anonymous"]["enabled"] == "false"
    assert ini["users"]["allow_sign_up"] == "false"
    assert ini["security"]["admin_user"] == ROLE_DEFAULTS["grafana_admin_user"]
    assert "admin_password" not in ini["security"]
    assert PASSWORD not in ini_file.content_string


def test_admin_password_only_in_the_secrets_file(grafana):
    secrets = grafana.file("/etc/grafana/aetherlink-secrets.env")
    assert secrets.user == "root" and secrets.group == "grafana" and secrets.mode == 0o640
    assert secrets.content_string.splitlines()[-1] == "GF_SECURITY_ADMIN_PASSWORD=%s" % PASSWORD
    dropin = grafana.file("/etc/systemd/system/grafana-server.service.d/aetherlink.conf").content_string
    assert "EnvironmentFile=-/etc/grafana/aetherlink-secrets.env" in dropin
    found = grafana.run("grep -rlsF -- %s /etc /var/lib/grafana /tmp", PASSWORD).stdout.split()
    assert found == ["/etc/grafana/aetherlink-secrets.env"]


def test_datasource_points_at_the_prometheus_group_with_the_fixed_uid(grafana):
    path = "%s/datasources/aetherlink.yml" % PROVISIONING
    f = grafana.file(path)
    assert f.group == "grafana" and f.mode == 0o640
    sources = yaml.safe_load(f.content_string)["datasources"]
    assert len(sources) == 1  # the scenario has one Prometheus
    source = sources[0]
    assert source["uid"] == ROLE_VARS["_grafana_datasource_uid"] == "aetherlink-prometheus"
    assert source["type"] == "prometheus" and source["isDefault"] is True and source["editable"] is False
    assert source["url"] == "http://grafana-prometheus-1:%s" % shared()["aetherlink_prometheus_port"]
    # It logs in to Prometheus as every client of the stack does (basic auth on by default).
    assert source["basicAuth"] is True and source["basicAuthUser"] == shared()["aetherlink_web_username"]
    assert source["secureJsonData"] == {"basicAuthPassword": scenario_env(SCENARIO, "AETHER_WEB_PASSWORD")}


def test_dashboard_provider_of_the_folder_aetherlink(grafana):
    provider = yaml.safe_load(grafana.file("%s/dashboards/aetherlink.yml" % PROVISIONING).content_string)["providers"][0]
    assert provider["folder"] == "AetherLink"
    assert provider["folderUid"] == "aetherlink"
    assert provider["allowUiUpdates"] is False
    assert provider["updateIntervalSeconds"] == ROLE_DEFAULTS["grafana_dashboards_update_interval"]
    assert provider["options"]["path"] == DASHBOARDS_DIR


def test_dashboards_placed_as_generated(grafana):
    assert DASHBOARDS, "no dashboards in roles/grafana/files/dashboards"
    placed = sorted(grafana.file(DASHBOARDS_DIR).listdir())
    assert placed == sorted(p.name for p in DASHBOARDS)
    for local in DASHBOARDS:
        remote = grafana.file("%s/%s" % (DASHBOARDS_DIR, local.name))
        assert remote.group == "grafana" and remote.mode == 0o640
        assert json.loads(remote.content_string) == json.loads(local.read_text()), local.name


def test_unmanaged_dashboard_removed_and_rerun_changes_nothing(grafana):
    grafana.check_output("echo '{}' > %s/stale.json", DASHBOARDS_DIR)
    rc, out = run_playbook(CONVERGE, "--limit", "grafana-1")
    assert rc == 0, out
    assert not grafana.file("%s/stale.json" % DASHBOARDS_DIR).exists
    rc, out = run_playbook(CONVERGE, "--limit", "grafana-1", "-v", "--diff")
    assert rc == 0, out
    assert_unchanged(out, ["grafana-1"])
    for secret in SECRETS:
        assert secret not in out


def test_install_stops_with_a_clear_message_where_no_source_is_reachable(grafana, installed):
    if installed:
        pytest.skip("Grafana is installed here: its package source was reachable")
    before = grafana.file("/etc/grafana/grafana.ini").sha256sum
    rc, out = run_playbook(CONVERGE, "--limit", "grafana-1", env={"AETHERLINK_GRAFANA_INSTALL": "true"})
    assert rc != 0
    assert "Grafana's package cannot be installed on grafana-1" in out, out
    for variable in ("grafana_apt_repository_url", "grafana_apt_key_url", "grafana_deb", "grafana_install_package"):
        assert variable in out
    assert grafana.file("/etc/grafana/grafana.ini").sha256sum == before


def test_bad_input_rejected_before_touching_host(grafana):
    before = grafana.file("/etc/grafana/grafana.ini").sha256sum
    rc, out = run_playbook(CONVERGE, "--limit", "grafana-1", env={"GRAFANA_ADMIN_PASSWORD": "Shrt-pw9x"})
    assert rc != 0
    assert "grafana_admin_password a secret of at least 12 characters" in out and "got 9 characters" in out
    assert "Shrt-pw9x" not in out  # the value is never printed
    rc, out = run_playbook(CONVERGE, "--limit", "grafana-1", "-e", "grafana_datasource_hosts=some")
    assert rc != 0
    # Refused by the argument spec (choices) or the preflight, each naming the variable.
    assert re.search(r"grafana_datasource_hosts\s+must\s+be\s+(all\s+or\s+one|one\s+of:\s+all,\s+one)", out), out
    rc, out = run_playbook(CONVERGE, "--limit", "grafana-1", "-e", "grafana_listen_ip=0.0.0.0:3000")
    assert rc != 0
    assert "grafana_listen_ip must be an address without a port" in out
    assert grafana.file("/etc/grafana/grafana.ini").sha256sum == before


# --- Every dashboard query on the live Prometheus ----------------------------------


@pytest.fixture(scope="module")
def fed_prometheus():
    """Smoke traffic through the real service, then wait until every recorded series has data."""
    rc, out = run_playbook(ROOT / "playbooks" / "smoke.yml", "-e", "smoke_requests_per_tenant=40")
    assert rc == 0, out
    recorded = sorted({name for path in DASHBOARDS
                       for _, _, expr, _ in queries.panel_queries(json.loads(path.read_text()))
                       for name in RECORDED.findall(expr)})
    deadline = time.time() + 240
    missing = recorded
    while time.time() < deadline:
        missing = [name for name in recorded
                   if not prometheus("/api/v1/query", query="count(%s)" % name)["data"]["result"]]
        if not missing:
            break
        time.sleep(5)
    assert not missing, "recorded series without data after smoke traffic: %s" % missing
    return shared()["aetherlink_tenants"][0]["name"]


def _values(result):
    data = result["data"]
    if data["resultType"] == "scalar":
        return [data["result"][1]]
    return [sample["value"][1] for sample in data["result"]]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_answers_with_data(fed_prometheus, path, capsys):
    dashboard = json.loads(path.read_text())
    panel_queries = queries.panel_queries(dashboard)
    assert panel_queries, path.name
    with_data = 0
    problems = []
    for tenant in (fed_prometheus, queries.ALL_VALUE):
        for title, ref, expr, may_be_empty in panel_queries:
            query = queries.substitute(expr, tenant)
            answer = prometheus("/api/v1/query", query=query)
            where = "%s / %s [%s] tenant=%s: %s" % (path.stem, title, ref, tenant, query)
            if answer.get("status") != "success":
                problems.append("%s -> %s" % (where, answer))
                continue
            values = _values(answer)
            if not values:
                if not may_be_empty:
                    problems.append("%s -> no data" % where)
                continue
            if any(v.lower() == "nan" for v in values):
                problems.append("%s -> NaN in %s" % (where, values))
                continue
            with_data += 1
    assert not problems, "\n".join(problems)
    with capsys.disabled():
        print("\n%s: %d panel queries x 2 tenant values, %d answered with data" % (path.stem, len(panel_queries), with_data))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_variable_query_lists_the_tenants(fed_prometheus, path):
    dashboard = json.loads(path.read_text())
    tenants = {t["name"] for t in shared()["aetherlink_tenants"]}
    variables = queries.variable_queries(dashboard)
    assert variables, path.name
    for variable in variables:
        api_path, params = queries.label_values_request(variable.query)
        values = set(prometheus(api_path, **params)["data"])
        if variable.regex:  # Grafana's /regex/ filter of the values
            keep = re.compile(variable.regex.strip("/"))
            values = {v for v in values if keep.search(v)}
        assert values, (path.stem, variable.name)
        if variable.name == "tenant":
            assert values == tenants, (path.stem, values)


# --- The Grafana server (where its package is installed) ------------------------------


def test_server_healthy_with_the_dashboards_in_their_folder(server):
    status, health = grafana_api(server, "/api/health")
    assert status == 200 and health["database"] == "ok"
    status, found = grafana_api(server, "/api/search?folderUIDs=aetherlink&type=dash-db")
    assert status == 200
    assert {d["uid"] for d in found} == {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    assert {d["folderTitle"] for d in found} == {"AetherLink"}
    status, check = grafana_api(server, "/api/datasources/uid/aetherlink-prometheus/health")
    assert status == 200 and check["status"] == "OK", check


def test_anonymous_access_refused(server):
    result = server.run("curl -sS -o /dev/null -w '%%{http_code}' %s", GRAFANA_API + "/api/search")
    assert result.stdout == "401"


def test_changed_admin_password_applied_after_first_start(server):
    new = PASSWORD + "-rotated"
    try:
        rc, out = run_playbook(CONVERGE, "--limit", "grafana-1", env={"GRAFANA_ADMIN_PASSWORD": new})
        assert rc == 0, out
        assert new not in out
        assert grafana_api(server, "/api/user", password=new)[0] == 200
        assert grafana_api(server, "/api/user", password=PASSWORD)[0] == 401
    finally:
        rc, out = run_playbook(CONVERGE, "--limit", "grafana-1")
        assert rc == 0, out
    assert grafana_api(server, "/api/user")[0] == 200


def test_dashboard_file_edit_shows_without_restart(server):
    pid = main_pid(server, "grafana-server")
    path = "%s/%s" % (DASHBOARDS_DIR, DASHBOARDS[0].name)
    uid = json.loads(DASHBOARDS[0].read_text())["uid"]
    try:
        server.check_output("sed -i 's/\"title\": \"AetherLink/\"title\": \"Edited AetherLink/' %s", path)
        deadline = time.time() + ROLE_DEFAULTS["grafana_dashboards_update_interval"] + 30
        title = ""
        while time.time() < deadline:
            title = grafana_api(server, "/api/dashboards/uid/%s" % uid)[1]["dashboard"]["title"]
            if title.startswith("Edited "):
                break
            time.sleep(2)
        assert title.startswith("Edited "), title
        assert main_pid(server, "grafana-server") == pid
    finally:
        rc, out = run_playbook(CONVERGE, "--limit", "grafana-1")
        assert rc == 0, out
