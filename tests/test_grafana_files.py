"""The grafana role's rendered files and the dashboards, checked together (no server needed).

The files are rendered from the role's templates for every environment, as
the role renders them; the dashboards are the committed JSON the role
provisions. Together they must agree: every datasource reference of every
dashboard resolves to the datasource the role provisions, the folder is
"AetherLink" with its fixed uid, anonymous access is off.
"""

import configparser
import json
import re

import pytest
import yaml

from conftest import ROOT, TEST_SECRETS, run, shared_vars, tool

ROLE = ROOT / "roles" / "grafana"
ROLE_VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
DASHBOARDS = sorted((ROLE / "files" / "dashboards").glob("*.json"))
SEED_UID = "aetherlink_rag_tenant_metrics_enhanced"
PASSWORD = "unit-test-grafana-pw-4821"


def render(out_dir, env, *extra):
    proc = run([tool("ansible-playbook"), "tests/grafana/render.yml", "-i", str(ROOT / "inventories" / env),
                "-e", "out_dir=%s" % out_dir, *extra],
               env_extra={"GRAFANA_ADMIN_PASSWORD": PASSWORD})
    return proc


def datasource_refs(node):
    """Every {"type": ..., "uid": ...} datasource reference in a dashboard."""
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from datasource_refs(value)


@pytest.fixture(scope="module", params=["local", "staging", "production"])
def rendered(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    proc = render(out, request.param)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hosts = sorted(p for p in out.iterdir() if p.is_dir())
    assert hosts, "nothing rendered"
    return request.param, hosts


def test_datasources_point_at_the_prometheus_group_with_the_fixed_default_uid(rendered):
    env, hosts = rendered
    inventory = yaml.safe_load((ROOT / "inventories" / env / "hosts.yml").read_text())
    prometheus_hosts = list(inventory["all"]["children"]["prometheus"]["hosts"])
    port = shared_vars(env)["aetherlink_prometheus_port"]
    for host in hosts:
        sources = yaml.safe_load((host / "datasources.yml").read_text())["datasources"]
        assert [s["url"] for s in sources] == ["http://%s:%s" % (h, port) for h in prometheus_hosts]
        assert sources[0]["uid"] == ROLE_VARS["_grafana_datasource_uid"]
        assert [s["isDefault"] for s in sources] == [True] + [False] * (len(sources) - 1)
        uids = [s["uid"] for s in sources]
        assert len(set(uids)) == len(uids) and all(len(u) <= 40 for u in uids)
        assert {s["type"] for s in sources} == {"prometheus"}
        assert {s["editable"] for s in sources} == {False}


def test_datasources_log_in_to_prometheus(rendered):
    """Basic auth is on by default everywhere: every datasource sends the
    stack's web login; without TLS there is no CA."""
    env, hosts = rendered
    user = shared_vars(env)["aetherlink_web_username"]
    for host in hosts:
        for source in yaml.safe_load((host / "datasources.yml").read_text())["datasources"]:
            assert source["basicAuth"] is True and source["basicAuthUser"] == user
            assert source["secureJsonData"] == {"basicAuthPassword": TEST_SECRETS["AETHER_WEB_PASSWORD"]}
            assert "tlsAuthWithCACert" not in source["jsonData"]


def test_datasources_with_tls_trust_the_stacks_ca(tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    for name in ("ca.crt", "server.crt", "server.key"):
        (pki / name).write_text("-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % name)
    out = tmp_path / "out"
    out.mkdir()
    proc = render(out, "staging", "-e", "aetherlink_web_tls_enabled=true",
                  "-e", "aetherlink_web_tls_ca_file=%s" % (pki / "ca.crt"),
                  "-e", "aetherlink_web_tls_cert_file=%s" % (pki / "server.crt"),
                  "-e", "aetherlink_web_tls_key_file=%s" % (pki / "server.key"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in (p for p in out.iterdir() if p.is_dir()):
        for source in yaml.safe_load((host / "datasources.yml").read_text())["datasources"]:
            assert source["url"].startswith("https://")
            assert source["jsonData"]["tlsAuthWithCACert"] is True
            assert source["secureJsonData"]["tlsCACert"] == (pki / "ca.crt").read_text().rstrip("\n")


def test_missing_tls_file_named_before_anything_is_rendered(tmp_path):
    proc = render(tmp_path, "staging", "-e", "aetherlink_web_tls_enabled=true",
                  "-e", "aetherlink_web_tls_ca_file=%s" % (tmp_path / "no-such-ca.crt"))
    assert proc.returncode != 0
    assert "aetherlink_web_tls_ca_file must name a readable PEM file on the controller" in proc.stdout + proc.stderr
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


def test_dashboard_provider_folder_aetherlink(rendered):
    _, hosts = rendered
    for host in hosts:
        provider = yaml.safe_load((host / "dashboards.yml").read_text())["providers"][0]
        assert provider["folder"] == "AetherLink" == ROLE_VARS["_grafana_folder_title"]
        assert provider["folderUid"] == ROLE_VARS["_grafana_folder_uid"]
        assert provider["allowUiUpdates"] is False
        assert provider["updateIntervalSeconds"] > 0


def test_grafana_ini_anonymous_off_and_linked_to_the_shared_settings(rendered):
    env, hosts = rendered
    shared = shared_vars(env)
    for host in hosts:
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string((host / "grafana.ini").read_text())
        assert ini["auth.anonymous"]["enabled"] == "false"
        assert ini["server"]["http_port"] == str(shared["aetherlink_grafana_port"])
        if "{{" not in shared["aetherlink_grafana_url"]:
            assert ini["server"]["root_url"] == shared["aetherlink_grafana_url"]
        assert PASSWORD not in (host / "grafana.ini").read_text()


def test_grafana_ini_overrides_merge_into_the_defaults(tmp_path):
    proc = render(tmp_path, "staging", "-e", json.dumps({"grafana_ini": {"log": {"level": "debug"}, "users": {"default_theme": "light"}}}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in (p for p in tmp_path.iterdir() if p.is_dir()):
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string((host / "grafana.ini").read_text())
        assert ini["log"]["level"] == "debug" and ini["log"]["mode"] == "console"
        assert ini["users"]["default_theme"] == "light" and ini["users"]["allow_sign_up"] == "false"


def test_one_datasource_when_asked(tmp_path):
    proc = render(tmp_path, "production", "-e", "grafana_datasource_hosts=one",
                  "-e", "grafana_prometheus_host=prom-2.prod.aetherlink.example")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    host = next(p for p in tmp_path.iterdir() if p.is_dir())
    sources = yaml.safe_load((host / "datasources.yml").read_text())["datasources"]
    assert [(s["uid"], s["url"]) for s in sources] == [
        (ROLE_VARS["_grafana_datasource_uid"], "http://prom-2.prod.aetherlink.example:9090")]


@pytest.mark.parametrize("override, message", [
    # the argument spec of the preflight entry point, before the role's own check
    ("grafana_datasource_hosts=every", "value of grafana_datasource_hosts must be one of: all, one, got: every"),
    ("grafana_prometheus_host=nowhere", "grafana_prometheus_host empty or one of the group's hosts"),
    ("grafana_apt_repository_url=ftp://mirror", "grafana_apt_repository_url and grafana_apt_key_url must be http(s) URLs"),
    ("grafana_deb=/no/such/grafana.deb", "grafana_deb empty, an http(s) URL of a .deb or a .deb file on the controller"),
    ("grafana_listen_ip=0.0.0.0:3000", "grafana_listen_ip must be an address without a port"),
])
def test_bad_input_named_in_the_message(tmp_path, override, message):
    proc = render(tmp_path, "staging", "-e", override)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_short_admin_password_refused_without_showing_it(tmp_path):
    # The grafana role's own rule: staging's stricter secret check (aetherlink
    # dependency, tests/test_secret_checks.py) would refuse it first, so it is off here.
    proc = run([tool("ansible-playbook"), "tests/grafana/render.yml", "-i", str(ROOT / "inventories" / "staging"),
                "-e", "out_dir=%s" % tmp_path, "-e", '{"aetherlink_secrets_strict_environments": []}'],
               env_extra={"GRAFANA_ADMIN_PASSWORD": "Tiny-pw-77"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "grafana_admin_password a secret of at least 12 characters" in out and "got 10 characters" in out
    assert "Tiny-pw-77" not in out


def test_every_dashboard_reference_resolves_to_the_provisioned_datasource():
    assert DASHBOARDS
    for path in DASHBOARDS:
        refs = list(datasource_refs(json.loads(path.read_text())))
        assert refs, path.name
        assert {(r.get("type"), r.get("uid")) for r in refs} == {("prometheus", ROLE_VARS["_grafana_datasource_uid"])}, path.name


def test_the_alerts_link_to_provisioned_dashboards(render_rules, tmp_path):
    """Every alert's dashboard annotation, as the prometheus role renders it, opens a provisioned dashboard."""
    uids = {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    rendered = render_rules(tmp_path, "-i", str(ROOT / "inventories" / "staging"))
    groups = yaml.safe_load((rendered / "aetherlink.alerts.yml").read_text())["groups"]
    links = {rule["alert"]: rule["annotations"]["dashboard"] for group in groups for rule in group["rules"]}
    targets = {name: re.search(r"/d/([^?]+)\?var-tenant=", link).group(1) for name, link in links.items()}
    assert targets["CacheEffectivenessDrop"] == SEED_UID
    assert targets["SLOAvailabilityFastBurn"] == "aetherlink_sla"
    assert set(targets.values()) <= uids, targets
