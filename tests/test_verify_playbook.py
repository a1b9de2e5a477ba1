"""playbooks/verify.yml on the controller: it parses, lists its checks, and keeps its promises.

No host is contacted: `--syntax-check` and `--list-tasks` only load the
playbook (with the smoke play it imports), and the rest reads its YAML.
The runs against a live stack (healthy, and broken: the app stopped, a rule
file missing, a peer down) belong to the end-to-end Molecule scenario.
"""

import re

import pytest
import yaml

from conftest import ROOT, run, tool

PLAYBOOK = ROOT / "playbooks" / "verify.yml"
CHECK_PLAYS = {
    "aether_app": "Verify the AetherLink API",
    "alertmanager": "Verify Alertmanager",
    "grafana": "Verify Grafana",
    "prometheus": "Verify Prometheus",
}


def playbook():
    return yaml.safe_load(PLAYBOOK.read_text())


def tasks_of(tasks):
    """Every task, blocks opened (block, rescue, always)."""
    for task in tasks or []:
        if "block" in task:
            yield from tasks_of(task["block"])
            yield from tasks_of(task.get("rescue"))
            yield from tasks_of(task.get("always"))
        else:
            yield task


def ansible_playbook(*args):
    proc = run([tool("ansible-playbook"), str(PLAYBOOK.relative_to(ROOT)), *args])
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("env", ["staging", "production", "local"])
def test_syntax_check(env):
    rc, out = ansible_playbook("-i", "inventories/%s" % env, "--syntax-check")
    assert rc == 0, out


def test_list_tasks_names_the_checks():
    rc, out = ansible_playbook("-i", "inventories/staging", "--list-tasks")
    assert rc == 0, out
    for play in CHECK_PLAYS.values():
        assert "): %s" % play in out, play
    for task in [
        "API - GET /healthz",
        "Alertmanager - GET /-/ready",
        "Alertmanager - GET /metrics (reload status)",
        "Alertmanager - GET /api/v2/status (cluster)",
        "Grafana - is the package installed",
        "Grafana - GET /api/health",
        "Grafana - GET /api/search (the folder's dashboards)",
        "Grafana - GET the datasource's health",
        "Prometheus - GET /-/ready",
        "Prometheus - GET /metrics (reload status)",
        "Prometheus - read the rule files the role manages",
        "Prometheus - GET /api/v1/rules",
        "Prometheus - GET /api/v1/targets",
        "Prometheus - wait for the rules' evaluation after the traffic",
        "Prometheus - query the seed's per-tenant rules",
        "Print the table of the checks",
        "Fail naming every failed check",
    ]:
        assert task in out, task
    # The smoke play is imported (and runs only when traffic is asked for).
    assert "Tenant smoke traffic" in out
    # The report comes last, on the controller.
    assert out.rstrip().rsplit("play #", 1)[1].startswith("6 (localhost): Report")


def test_every_check_play_records_instead_of_stopping():
    plays = {p.get("hosts"): p for p in playbook() if "hosts" in p}
    assert set(CHECK_PLAYS) <= set(plays)
    for group, name in CHECK_PLAYS.items():
        play = plays[group]
        assert play["name"] == name
        # An unreachable host is a failed row, not the end of the run; only reads: --check verifies too.
        assert play["ignore_unreachable"] is True and play["check_mode"] is False
        first = play["tasks"][0]["ansible.builtin.include_role"]
        assert first == {"name": group, "tasks_from": "preflight", "public": True}
        block = play["tasks"][1]
        assert "block" in block and "rescue" in block, name
        for task in tasks_of(block["block"]):
            module = next(k for k in task if k.startswith("ansible.builtin."))
            if module in ("ansible.builtin.uri", "ansible.builtin.slurp", "ansible.builtin.command"):
                assert task.get("failed_when") is False, task["name"]
                if "until" in task:
                    # The bounded waits end on their last attempt without failing the host.
                    assert ".attempts" in task["until"] and "retries" in task, task["name"]
            if module == "ansible.builtin.uri":
                assert task[module]["url"].startswith("{{ %s_api_url }}" % group), task["name"]
        recorded = [t for t in tasks_of(block["block"]) if "_verify_results" in t.get("ansible.builtin.set_fact", {})]
        assert len(recorded) == 1, name
        rescued = [t for t in tasks_of(block["rescue"]) if "_verify_results" in t.get("ansible.builtin.set_fact", {})]
        assert len(rescued) == 1, name


def test_grafana_password_never_logged():
    plays = {p.get("hosts"): p for p in playbook() if "hosts" in p}
    for task in tasks_of(plays["grafana"]["tasks"]):
        uri = task.get("ansible.builtin.uri", {})
        if "url_password" in uri:
            assert uri["url_password"] == "{{ grafana_admin_password }}"
            assert task.get("no_log") is True, task["name"]


def test_traffic_only_on_request_and_only_to_healthy_api_hosts():
    imports = [p for p in playbook() if "ansible.builtin.import_playbook" in p]
    assert len(imports) == 1
    smoke = imports[0]
    assert smoke["ansible.builtin.import_playbook"] == "smoke.yml"
    assert "verify_generate_traffic | default(false) | bool" in smoke["when"]
    assert "_verify_app_ok | default(false) | bool" in smoke["when"]
    names = [p.get("name") for p in playbook()]
    # Traffic after the API checks, before Prometheus is read.
    assert names.index("Verify the AetherLink API") < names.index("Smoke traffic") < names.index("Verify Prometheus")


def test_header_documents_the_usage_and_every_check():
    text = PLAYBOOK.read_text()
    header = text.split("\n- name:", 1)[0]
    assert "ansible-playbook playbooks/verify.yml -i inventories/<env>" in header
    assert "-e verify_generate_traffic=true" in header
    for variable in (
        "verify_generate_traffic",
        "verify_require_data",
        "verify_grafana_required",
        "verify_settle_timeout",
        "verify_data_timeout",
    ):
        assert re.search(r"^#\s+%s: " % variable, header, re.M), variable
    for check in [
        "host reachable",
        "api healthz",
        "alertmanager ready",
        "alertmanager config reload",
        "alertmanager cluster",
        "grafana installed",
        "grafana health",
        "grafana dashboards",
        "grafana datasource",
        "prometheus ready",
        "prometheus config reload",
        "rule files deployed",
        "rules loaded",
        "rules healthy",
        "targets up",
        "rules evaluated after traffic",
        "data <record>",
    ]:
        assert re.search(r"^#[^\n]*\s%s - " % re.escape(check), header, re.M), check
