"""Helpers shared by the testinfra tests of every Molecule scenario.

A plain module, not a conftest: each scenario's test file puts this directory
on sys.path (computed from its own __file__) and imports what it needs, and
the controller-side unit tests (tests/test_testkit.py) import it the same way.
Nothing here needs a container or MOLECULE_INVENTORY_FILE at import time.

    ROOT                      the repository root
    shared_vars()             the environment's shared AetherLink variables
    load_yaml(path)           a YAML mapping ({} for an empty file)
    scenario_env(dir, name)   a variable of the controller's environment, else
                              of the scenario's molecule.yml provisioner env
    run_playbook(...)         ansible-playbook against the scenario inventory
    recap(), changed_hosts(), assert_unchanged()
                              the PLAY RECAP, per host
    diff_added_lines()        the '+' lines of the --diff output
    main_pid(host, service)   systemd's MainPID of a unit
    scrape(host, url), parse_metrics(text), metric_sum(samples, name, **labels)
                              Prometheus text exposition
    curl(host, url, *args), http_status(...), http_json(...)
                              one request by curl inside the container: the
                              body, the status code, the body parsed as JSON
    web_login(dir), metrics_bearer(dir)
                              curl options with the stack's credentials
    wait_until(predicate)     poll until a predicate holds
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MOLECULE_CONFIG = ROOT / ".config" / "molecule" / "config.yml"
COMMON_DEFAULTS = ROOT / "roles" / "aetherlink" / "defaults" / "main.yml"
PLAYBOOK_TIMEOUT = 900

RECAP_COUNTERS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RECAP_LINE = re.compile(r"^(\S+)\s*:\s*((?:[a-z]+=\d+\s*)+)$")


# --- Variables -----------------------------------------------------------------

def load_yaml(path):
    """A YAML file's mapping; {} when the file only holds comments."""
    data = yaml.safe_load(Path(path).read_text())
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("%s does not hold a mapping" % path)
    return data


def shared_vars():
    """The shared AetherLink variables as the scenarios' roles see them.

    roles/aetherlink/defaults/main.yml under the group_vars that the shared
    Molecule config (.config/molecule/config.yml) gives every scenario's
    inventory: inventory group_vars win over role defaults, as in Ansible.
    Values are the raw YAML (Jinja expressions, such as the secrets' lookups,
    are not rendered).
    """
    merged = dict(load_yaml(COMMON_DEFAULTS))
    config = load_yaml(MOLECULE_CONFIG)
    merged.update(config.get("provisioner", {}).get("inventory", {}).get("group_vars", {}).get("all", {}))
    return merged


def scenario_env(scenario_dir, name):
    """os.environ[name] when set and not empty, else the provisioner env of the
    scenario's molecule.yml, else that of the shared base config (molecule
    merges the two, the scenario's winning)."""
    value = os.environ.get(name)
    if not value:
        env = dict(load_yaml(MOLECULE_CONFIG).get("provisioner", {}).get("env", {}))
        env.update(load_yaml(Path(scenario_dir) / "molecule.yml").get("provisioner", {}).get("env", {}))
        if name not in env:
            raise KeyError("%s is neither in the environment nor in %s/molecule.yml nor in %s"
                           % (name, scenario_dir, MOLECULE_CONFIG))
        value = env[name]
    return value


def web_login(scenario_dir, cacert=None):
    """curl arguments that log in to Prometheus and Alertmanager as the roles
    do: the shared aetherlink_web_username with AETHER_WEB_PASSWORD (the
    scenarios' source of aetherlink_web_password), and the CA to trust."""
    user = shared_vars().get("aetherlink_web_username", "aetherlink")
    args = ["-u", "%s:%s" % (user, scenario_env(scenario_dir, "AETHER_WEB_PASSWORD"))]
    return args + (["--cacert", cacert] if cacert else [])


def metrics_bearer(scenario_dir):
    """curl arguments with the bearer token of the AetherLink API's /metrics."""
    return ["-H", "Authorization: Bearer %s" % scenario_env(scenario_dir, "AETHER_METRICS_TOKEN")]


# --- Playbooks -------------------------------------------------------------------

def _ansible_playbook():
    """The ansible-playbook next to this interpreter (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).parent / "ansible-playbook"
    return str(candidate) if candidate.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")


def run_playbook(playbook, *extra_args, env=None, inventory=None):
    """Run a playbook as an operator would; return (rc, stdout + stderr).

    The inventory is the scenario's (the directory of MOLECULE_INVENTORY_FILE,
    so that its group_vars/host_vars links count) unless given. Roles come from
    ROOT/roles; colours are off so that the output can be parsed. `env` adds
    to (and overrides) the controller's environment.
    """
    if inventory is None:
        inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    full_env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    full_env.update(env or {})
    proc = subprocess.run(
        [_ansible_playbook(), "-i", str(inventory), str(playbook), *map(str, extra_args)],
        env=full_env, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT, check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def strip_ansi(text):
    return _ANSI.sub("", text)


def recap(output):
    """The last PLAY RECAP of a run: {host: {"ok": n, "changed": n, ...}}.

    Every counter of RECAP_COUNTERS is present (0 when the line lacks it).
    Colour codes are ignored. {} when the output has no recap.
    """
    lines = strip_ansi(output).splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("PLAY RECAP")]
    if not starts:
        return {}
    hosts = {}
    for line in lines[starts[-1] + 1:]:
        match = _RECAP_LINE.match(line.strip())
        if not match:
            if hosts or line.strip():
                break
            continue
        counters = dict.fromkeys(RECAP_COUNTERS, 0)
        counters.update({k: int(v) for k, v in re.findall(r"([a-z]+)=(\d+)", match.group(2))})
        hosts[match.group(1)] = counters
    return hosts


def changed_hosts(output):
    """Sorted names of the hosts whose recap counts changed tasks."""
    return sorted(host for host, counters in recap(output).items() if counters["changed"])


def assert_unchanged(output, hosts):
    """Fail unless every host in `hosts` is in the recap with changed=0.

    The message names each host that changed, is missing from the recap, or
    failed / was unreachable (such a host proves nothing about idempotence).
    """
    counters = recap(output)
    problems = []
    for host in hosts:
        if host not in counters:
            problems.append("%s: missing from the PLAY RECAP" % host)
            continue
        c = counters[host]
        if c["changed"]:
            problems.append("%s: changed=%d" % (host, c["changed"]))
        if c["failed"] or c["unreachable"]:
            problems.append("%s: failed=%d unreachable=%d" % (host, c["failed"], c["unreachable"]))
    assert not problems, "not idempotent: %s\n\n%s" % ("; ".join(problems), output)


def diff_added_lines(output, path=None):
    """The lines a --diff run shows as added ('+', without the '+++' headers).

    With `path`, only those of the diffs whose "--- before: <file>" header
    names a file ending with `path`.
    """
    added = []
    current = None
    for line in strip_ansi(output).splitlines():
        if line.startswith("--- before"):
            current = line.split(":", 1)[1].strip() if ":" in line else ""
        elif line.startswith("+++"):
            continue
        elif line.startswith("+") and (path is None or (current is not None and current.endswith(path))):
            added.append(line)
    return added


# --- Hosts -----------------------------------------------------------------------

def main_pid(host, service):
    """systemd's MainPID of a unit, as a string ("0" when it does not run)."""
    return host.check_output("systemctl show --property MainPID --value %s", service)


def curl(host, url, *args, method="GET"):
    """The body of one request from inside the container (curl); `args` are
    curl options such as web_login(...) or metrics_bearer(...)."""
    argv = ["curl", "-sS", "-X", method, *args, url]
    return host.check_output(" ".join(["%s"] * len(argv)), *argv)


def http_status(host, url, *args, method="GET"):
    """The HTTP status code of one request from inside the container (curl)."""
    return int(curl(host, url, "-o", "/dev/null", "-w", "%{http_code}", *args, method=method))


def http_json(host, url, *args, method="GET"):
    """One request from inside the container (curl); the body parsed as JSON."""
    return json.loads(curl(host, url, *args, method=method))


def wait_until(predicate, timeout=60, interval=1):
    """Call predicate() until it returns something true; return that.

    After `timeout` seconds return the last (false) result: the caller asserts
    on it, or re-reads the state it checks.
    """
    deadline = time.time() + timeout
    while True:
        result = predicate()
        if result or time.time() >= deadline:
            return result
        time.sleep(interval)


# --- Metrics ---------------------------------------------------------------------

_LABEL = r'[a-zA-Z_]\w*\s*=\s*"(?:[^"\\]|\\.)*"'
_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][\w:]*)"
    r"(?:\{\s*(?P<labels>(?:%s\s*,\s*)*(?:%s)?\s*,?)\s*\})?" % (_LABEL, _LABEL)
    + r"\s+(?P<value>\S+)(?:\s+-?\d+)?\s*$"
)
_LABEL_PAIR = re.compile(r'([a-zA-Z_]\w*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value):
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)


def parse_metrics(text):
    """Samples of a Prometheus text exposition: {(name, frozenset({(label, value)})): float}.

    Label values are unescaped (\\\\, \\" and \\n); a sample's timestamp is
    ignored. A line that is not a comment, blank or a sample raises ValueError.
    """
    samples = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise ValueError("not a metrics sample: %r" % line)
        labels = frozenset((k, _unescape(v)) for k, v in _LABEL_PAIR.findall(match.group("labels") or ""))
        samples[(match.group("name"), labels)] = float(match.group("value"))
    return samples


def scrape(host, url, *args):
    """Samples of a /metrics endpoint, fetched from inside the container (see
    parse_metrics); `args` are curl options (credentials)."""
    return parse_metrics(curl(host, url, *args))


def metric_sum(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))
