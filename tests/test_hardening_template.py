"""The systemd sandbox drop-in (roles/aetherlink/templates/systemd-hardening.conf.j2), rendered
on the controller by Ansible with exactly what the prometheus and alertmanager roles pass to the
shared hardening step (the include at the end of their tasks/install.yml), and the wiring of
that include: its entry point, the handler it notifies.

The live side (drop-in loaded, settings in force, exposure score, the process confined) is
tested in each role's Molecule scenario (molecule/default/tests/test_hardening.py).
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, run, tool

TEMPLATE = ROOT / "roles" / "aetherlink" / "templates" / "systemd-hardening.conf.j2"
HARDENING_TASKS = ROOT / "roles" / "aetherlink" / "tasks" / "hardening.yml"
SPECS = ROOT / "roles" / "aetherlink" / "meta" / "argument_specs.yml"
ROLES = {
    # role: (unit, data directory variable, switch variable, restart topic)
    "prometheus": ("prometheus", "prometheus_storage_path", "prometheus_systemd_hardening", "prometheus restart"),
    "alertmanager": ("prometheus-alertmanager", "alertmanager_storage_path", "alertmanager_systemd_hardening",
                     "alertmanager restart"),
}
# Directives of systemd.exec(5) / systemd.resource-control(5) the drop-in may set.
KNOWN_DIRECTIVES = {
    "NoNewPrivileges", "UMask", "ProtectSystem", "ReadWritePaths", "ProtectHome", "PrivateTmp", "PrivateDevices",
    "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
    "ProtectHostname", "CapabilityBoundingSet", "AmbientCapabilities", "PrivateUsers", "RestrictSUIDSGID",
    "RemoveIPC", "LockPersonality", "MemoryDenyWriteExecute", "RestrictRealtime", "RestrictNamespaces",
    "RestrictAddressFamilies", "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
}
# List settings: an empty assignment resets them, the others add to them.
LIST_DIRECTIVES = {"ReadWritePaths", "RestrictAddressFamilies", "SystemCallFilter"}
REQUIRED = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "RestrictNamespaces": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0027",
}


def load(path):
    return yaml.safe_load(path.read_text())


def hardening_include(role):
    """The last task of the role's install.yml, which must be the include of the hardening step."""
    tasks = load(ROOT / "roles" / role / "tasks" / "install.yml")
    return tasks[-1]


INVENTORY = {
    "all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "children": {
            "prometheus": {"hosts": {"prometheus-1": {}}},
            "alertmanager": {"hosts": {"alertmanager-1": {}, "alertmanager-2": {}}},
        },
    },
}


def render(tmp_path, role, *extra):
    """The drop-in as the role's install step renders it for its first host, with `extra` -e args."""
    include = hardening_include(role)
    play = [{
        "name": "Render the hardening drop-in as the %s role passes it" % role,
        "hosts": "%s-1" % role,
        "gather_facts": False,
        "vars_files": [str(ROOT / "roles" / "aetherlink" / "defaults" / "main.yml"),
                       str(ROOT / "roles" / role / "defaults" / "main.yml"),
                       str(ROOT / "roles" / role / "vars" / "main.yml")],
        "vars": include["vars"],
        "tasks": [{
            "name": "Template the drop-in",
            "ansible.builtin.template": {"src": str(TEMPLATE), "dest": "{{ out_file }}", "mode": "0644"},
        }],
    }]
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    (tmp_path / "render.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    out = tmp_path / ("%s.conf" % role)
    proc = run([tool("ansible-playbook"), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "render.yml"),
                "-e", "out_file=%s" % out, "-e", "aetherlink_environment=unit", *extra])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out.read_text()


def parse(text):
    """{section: [(key, value), ...]}; fails on any line that is not a comment, a blank,
    a [Section] header or Key=value inside a section (what systemd's parser accepts)."""
    sections, current = {}, None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), [])
            continue
        assignment = re.fullmatch(r"([A-Z][A-Za-z]+)=(\S.*\S|\S)?", line)
        assert assignment and current is not None, "line %d is not Key=value inside a section: %r" % (number, line)
        current.append((assignment.group(1), assignment.group(2) or ""))
    return sections


def effective(assignments):
    """The value systemd ends up with for each key: the last one, or for a list setting the
    items assigned after its last empty assignment."""
    values = {}
    for key, value in assignments:
        if key in LIST_DIRECTIVES:
            values[key] = [] if value == "" else values.get(key, []) + value.split()
        else:
            values[key] = value
    return values


@pytest.fixture(scope="module", params=sorted(ROLES))
def role(request):
    return request.param


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """role -> its drop-in rendered with the defaults (each rendered once)."""
    cache = {}

    def _rendered(role):
        if role not in cache:
            cache[role] = render(tmp_path_factory.mktemp(role), role)
        return cache[role]

    return _rendered


def test_install_step_ends_with_the_hardening_include(role):
    unit, data_var, switch, topic = ROLES[role]
    include = hardening_include(role)
    assert include["ansible.builtin.include_role"] == {"name": "aetherlink", "tasks_from": "hardening"}
    settings = include["vars"]["aetherlink_hardening"]
    assert settings["unit"] == "{{ %s_service_name }}" % role
    assert settings["enabled"] == "{{ %s }}" % switch
    assert settings["read_write_paths"] == ["{{ %s }}" % data_var]
    assert settings["handler"] == topic
    # Only keys the entry point declares.
    spec = load(SPECS)["argument_specs"]["hardening"]["options"]["aetherlink_hardening"]["options"]
    assert set(settings) <= set(spec)
    assert {k for k, v in spec.items() if v.get("required")} <= set(settings)


def test_the_notified_handler_daemon_reloads_and_restarts(role):
    topic = ROLES[role][3]
    handlers = load(ROOT / "roles" / role / "handlers" / "main.yml")
    listening = [h for h in handlers if topic == h.get("name") or topic in ([h["listen"]] if isinstance(
        h.get("listen"), str) else h.get("listen") or [])]
    restart = [h for h in listening if str(h.get("ansible.builtin.include_tasks", "")).endswith("/restart.yml")]
    assert restart, "no handler of %s listening to %r includes the shared restart.yml" % (role, topic)
    steps = load(ROOT / "roles" / "aetherlink" / "tasks" / "restart.yml")
    systemd = [t["ansible.builtin.systemd_service"] for t in steps if "ansible.builtin.systemd_service" in t]
    assert systemd and systemd[0]["state"] == "restarted" and systemd[0]["daemon_reload"] is True


def test_switch_is_on_by_default(role):
    switch = ROLES[role][2]
    assert load(ROOT / "roles" / role / "defaults" / "main.yml")[switch] is True


def test_rendered_dropin_is_valid_and_sandboxes(role, rendered):
    unit, data_var, _, _ = ROLES[role]
    text = rendered(role)
    sections = parse(text)
    assert set(sections) == {"Service"}, "a drop-in of a service sets [Service] only"
    keys = [key for key, _ in sections["Service"]]
    assert set(keys) <= KNOWN_DIRECTIVES, "unknown directives: %s" % sorted(set(keys) - KNOWN_DIRECTIVES)
    repeated = {k for k in keys if keys.count(k) > 1 and k not in LIST_DIRECTIVES}
    assert not repeated, "set more than once: %s" % sorted(repeated)
    values = effective(sections["Service"])
    for key, value in REQUIRED.items():
        assert values.get(key) == value, "%s=%r, expected %r" % (key, values.get(key), value)
    default_data_dir = load(ROOT / "roles" / role / "defaults" / "main.yml")[data_var]
    assert values["ReadWritePaths"] == [default_data_dir]
    assert values["SystemCallFilter"] == ["@system-service", "~@privileged"]
    assert "systemd-analyze security %s.service" % unit in text


def test_writable_path_follows_the_role_variable(role, tmp_path):
    data_var = ROLES[role][1]
    values = effective(parse(render(tmp_path, role, "-e", "%s=/srv/aether/%s-data" % (data_var, role)))["Service"])
    assert values["ReadWritePaths"] == ["/srv/aether/%s-data" % role]


def test_address_families(rendered):
    """Internet and local sockets; Alertmanager also netlink: its cluster listener (on in the
    package's default flags too) reads the host's addresses to pick the one it announces."""
    def families(text):
        return set(effective(parse(text)["Service"])["RestrictAddressFamilies"])

    assert families(rendered("prometheus")) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert families(rendered("alertmanager")) == {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}


def test_systemd_accepts_every_line(role, rendered, tmp_path):
    """systemd-analyze verify of a unit with the rendered drop-in (as the hardening step's
    validate does on the host): systemd only warns about a line it rejects, so no line of its
    output may name the drop-in."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (Debian package 'systemd')")
    unit = ROLES[role][0] + ".service"
    text = rendered(role)
    units = tmp_path / "units"
    (units / (unit + ".d")).mkdir(parents=True)
    (units / unit).write_text("[Unit]\nDescription=stand-in for the package's unit\n\n"
                              "[Service]\nUser=nobody\nExecStart=/bin/true\n")
    (units / (unit + ".d") / "aetherlink-hardening.conf").write_text(text)
    proc = subprocess.run([analyze, "verify", "--man=no", str(units / unit)], capture_output=True, text=True,
                          env=dict(os.environ, SYSTEMD_UNIT_PATH="%s:" % units), check=False)
    output = proc.stdout + proc.stderr
    assert "aetherlink-hardening.conf" not in output, output
    # The drop-in was read: a broken line in it is reported (the check above proves something).
    (units / (unit + ".d") / "aetherlink-hardening.conf").write_text(text + "ProtectSystem=sometimes\n")
    proc = subprocess.run([analyze, "verify", "--man=no", str(units / unit)], capture_output=True, text=True,
                          env=dict(os.environ, SYSTEMD_UNIT_PATH="%s:" % units), check=False)
    assert "aetherlink-hardening.conf" in proc.stdout + proc.stderr


def test_validate_command_runs_systemd_analyze_verify_on_a_copy():
    """The hardening step validates the drop-in before it goes live (a copy of the unit and the
    new drop-in in a directory of their own), failing on any line that names it."""
    tasks = load(HARDENING_TASKS)
    block = tasks[0]
    template = [t for t in block["block"] if "ansible.builtin.template" in t][0]
    assert template["ansible.builtin.template"]["validate"] == "{{ _aetherlink_hardening_verify }}"
    command = block["vars"]["_aetherlink_hardening_verify"]
    assert "systemd-analyze verify --man=no" in command and "SYSTEMD_UNIT_PATH" in command
    assert "grep -F aetherlink-hardening.conf" in command
    assert command.rstrip().endswith("%s")
    assert command.count("%") == 1, "validate is %-formatted: a literal % must be doubled"
    assert template["notify"] == "{{ aetherlink_hardening.handler }}"
