"""Shared helpers of the controller-side tests (no containers needed)."""

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name):
    """Path of a command-line tool: the venv's first, then PATH."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else shutil.which(name)


@pytest.fixture(scope="session")
def promtool():
    path = tool("promtool")
    if not path:
        pytest.skip("promtool is not installed (Debian package 'prometheus'; `make setup` installs it)")
    return path


def shared_vars(env):
    """The AetherLink shared settings of an environment, as Ansible resolves them
    for plain values: the aetherlink role's defaults, overridden by the
    inventory's group_vars/all files."""
    values = yaml.safe_load((ROOT / "roles" / "aetherlink" / "defaults" / "main.yml").read_text())
    for path in sorted((ROOT / "inventories" / env / "group_vars" / "all").glob("*.yml")):
        values.update(yaml.safe_load(path.read_text()) or {})
    return values


# The secrets a deploy needs, for the controller-side runs of the roles'
# checks and templates (rendering staging or production without their Vault).
# Random per test session: never a value that could be mistaken for a real one.
TEST_SECRETS = {
    "AETHER_ADMIN_KEY": "unit-admin-" + secrets.token_urlsafe(18),
    "AETHER_TENANT_KEY_SEED": "unit-seed-" + secrets.token_urlsafe(18),
    "AETHER_WEB_PASSWORD": "unit-web-" + secrets.token_urlsafe(18),
    "AETHER_METRICS_TOKEN": "unit-metrics-" + secrets.token_urlsafe(18),
    "GRAFANA_ADMIN_PASSWORD": "unit-grafana-" + secrets.token_urlsafe(18),
}


def run(argv, env_extra=None, **kwargs):
    env = dict(TEST_SECRETS)
    env.update(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env.update(env_extra or {})
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture(scope="session")
def render_rules():
    """Render the prometheus role's rule templates into a directory."""

    def _render(out_dir, *args):
        proc = run([tool("ansible-playbook"), "tests/rules/render.yml", "-e", "out_dir=%s" % out_dir, *args])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return Path(out_dir)

    return _render
