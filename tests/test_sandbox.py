"""The local sandbox's pieces that need no Docker: its filters and playbooks' syntax."""

import importlib.util

import pytest
from ansible.errors import AnsibleFilterError

from conftest import ROOT, run, tool

SPEC = importlib.util.spec_from_file_location(
    "aetherlink_sandbox", ROOT / "roles" / "aetherlink" / "filter_plugins" / "aetherlink_sandbox.py")
sandbox = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(sandbox)


def test_platforms_publish_only_the_chosen_hosts_on_loopback():
    platforms = sandbox.sandbox_platforms(["p-1", "a-1", "a-2"], {"p-1": 9090, "a-1": "9093"}, "net")
    assert platforms == [
        {"name": "p-1", "networks": [{"name": "net"}], "published_ports": ["127.0.0.1:9090:9090"]},
        {"name": "a-1", "networks": [{"name": "net"}], "published_ports": ["127.0.0.1:9093:9093"]},
        {"name": "a-2", "networks": [{"name": "net"}]},
    ]


@pytest.mark.parametrize("hosts, published, message", [
    ("p-1", {}, "hosts must be a list"),
    (["p-1", ""], {}, "hosts must be a list"),
    (["p-1"], ["p-1"], "published must map"),
    (["p-1"], {"x-1": 1}, "not in hosts: ['x-1']"),
])
def test_platforms_refuse_bad_input(hosts, published, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sandbox.sandbox_platforms(hosts, published, "net")


def test_port_holders_names_the_processes():
    line = 'LISTEN 0 4096 127.0.0.1:9090 0.0.0.0:* users:(("docker-proxy",pid=812,fd=4),("docker-proxy",pid=812,fd=7))'
    assert sandbox.port_holders(line) == "docker-proxy (pid 812)"
    two = line + '\nLISTEN 0 5 127.0.0.1:9090 0.0.0.0:* users:(("python3",pid=99,fd=3))'
    assert sandbox.port_holders(two) == "docker-proxy (pid 812), python3 (pid 99)"
    assert sandbox.port_holders("LISTEN 0 5 127.0.0.1:9090 0.0.0.0:*").startswith("an unknown process")
    assert sandbox.port_holders("").startswith("an unknown process")


@pytest.mark.parametrize("playbook", ["sandbox_up.yml", "sandbox_down.yml"])
def test_sandbox_playbooks_parse(playbook):
    proc = run([tool("ansible-playbook"), "--syntax-check", "-i", str(ROOT / "inventories" / "local"),
                str(ROOT / "playbooks" / playbook)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
