#!/usr/bin/env python3
"""Idempotent rerun time of this repository's `prometheus` role next to
prometheus-community's (collection prometheus.prometheus), side by side.

Each role gets its own fresh systemd container (`cmpbench-ours`,
`cmpbench-community`; the base image and docker settings of
playbooks/tasks/containers.yml). Then, as whole `ansible-playbook` processes
(wall clock, time.monotonic):

1. first converge of each role (ours, then the community's);
2. --runs idempotent reruns, interleaved (ours, community, ours, ...) so that
   the machine's load hits both alike; each must end with changed=0 and
   failed=0 in the PLAY RECAP, or the script exits 1;
3. --changes runs of each kind of configuration change (--change), also
   interleaved, every run a real change (the value moves every run); systemd's
   MainPID of the `prometheus` unit before and after tells a reload (same PID)
   from a restart; after each kind, one run with the defaults restores the
   configuration (logged, not in the table):
   - rules: a rule file changes; ours: the shared threshold
     aetherlink_alert_cache_hit_ratio_min (the default 30 -> 35, 36, ...);
     community: the `for` of its InstanceDown alert (5m -> 6m, 7m, ...);
   - scrape: prometheus.yml's global scrape_interval (15s -> 16s, 17s, ...);
     ours: prometheus_scrape_interval; community: prometheus_global.

Both roles run with the repository's ansible.cfg (ANSIBLE_CONFIG, pipelining
on); ANSIBLE_ROLES_PATH points at roles/ and ANSIBLE_COLLECTIONS_PATH at
--collections (which must hold ansible_collections/prometheus/prometheus; the
ansible package of .venv provides community.general, ansible.posix and
community.docker).

Offline installation of the community role (no GitHub from here): the
Debian bookworm `prometheus` package (2.42) is fetched with `apt-get
download` and unpacked (dpkg-deb -x) into --bin-dir, which becomes the role's
prometheus_local_cache_path (prometheus, promtool, consoles/,
console_libraries/: what the role would have unpacked from the release
tarball), prometheus_version is set to 2.42.0 to match, and every run skips
the role's download block with `--skip-tags download` (the collection's
replacement for the removed prometheus_binary_local_dir /
prometheus_skip_install). Its tasks use `become: true`; the containers
have no sudo and ansible connects as root, so the community host uses
ansible_become_method=su (root to root, no password). Its play gathers facts
(the role reads ansible_facts); ours does not need them (gather_facts:
false, as in its Molecule scenario). The fact gathering is part of the
community role's time; --facts-runs times `ansible -m setup` alone on its
container, to tell how much.

    export PATH=$PWD/.venv/bin:$PATH
    python benchmarks/role_compare.py --runs 5 --changes 3
    python benchmarks/role_compare.py --runs 5 --keep     # leave the containers running

Prints a markdown table and writes --json (default <workdir>/role_compare.json);
logs of every run are in <workdir>/logs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)",
    re.M)
UNIT = "prometheus"  # both roles' systemd unit
COLLECTION = Path("ansible_collections/prometheus/prometheus")
DEFAULT_MIRROR = Path("/work/.mirror/prometheus-community+ansible/repo")
# Test values of the shared secrets, as in .config/molecule/config.yml (the environment's win).
SECRETS = {"AETHER_WEB_PASSWORD": "molecule-web-Qm7Tz2Lx9Rv4", "AETHER_METRICS_TOKEN": "molecule-metrics-Jw5Nc8Hp3Ks6"}
ROLES = ("ours", "community")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, text=True, capture_output=True, **kw)


# --- preparation --------------------------------------------------------------------------------

def ensure_collection(collections: Path, mirror: Path) -> str:
    """The collection's source under collections/, from the git dir of the mirror when missing."""
    dest = collections / COLLECTION
    if not (dest / "roles" / "prometheus").is_dir():
        if not mirror.is_dir():
            sys.exit(f"no collection at {dest} and no git dir at {mirror} (fetch github:prometheus-community/ansible)")
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "--git-dir", str(mirror), "archive", "HEAD"], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            sys.exit("git archive failed")
    galaxy = yaml.safe_load((dest / "galaxy.yml").read_text())
    return str(galaxy.get("version"))


def ensure_binaries(bin_dir: Path) -> str:
    """prometheus, promtool and the console directories of Debian's package, as the role's local cache."""
    wanted = [bin_dir / "prometheus", bin_dir / "promtool", bin_dir / "consoles", bin_dir / "console_libraries"]
    if not all(p.exists() for p in wanted):
        work = bin_dir.parent / "deb"
        work.mkdir(parents=True, exist_ok=True)
        debs = sorted(work.glob("prometheus_*.deb"))
        if not debs:
            out = run(["apt-get", "download", "prometheus"], cwd=work)
            debs = sorted(work.glob("prometheus_*.deb"))
            if not debs:
                sys.exit("apt-get download prometheus failed: " + out.stderr)
        tree = work / "tree"
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tree)], check=True)
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name in ("prometheus", "promtool"):
            shutil.copy2(tree / "usr/bin" / name, bin_dir / name)
        for name in ("consoles", "console_libraries"):
            shutil.rmtree(bin_dir / name, ignore_errors=True)
            shutil.copytree(tree / "etc/prometheus" / name, bin_dir / name)
    out = run([str(bin_dir / "prometheus"), "--version"])
    m = re.search(r"version (\d+\.\d+\.\d+)", out.stdout + out.stderr)
    if not m:
        sys.exit(f"cannot read the version of {bin_dir / 'prometheus'}")
    return m.group(1)


def write_files(work: Path, names: dict[str, str], prom_version: str, bin_dir: Path) -> dict[str, dict]:
    """Inventories and playbooks of both roles; returns, per role, what a run needs."""
    work.mkdir(parents=True, exist_ok=True)
    # Ours: a `prometheus` group of one container; the scrape targets of the other groups are
    # inventory hosts without containers (never contacted: the play targets `prometheus` only),
    # as the Molecule scenario's converge adds them with add_host.
    ours_inv = {"all": {
        "vars": {"aetherlink_environment": "molecule"},
        "children": {
            "prometheus": {"hosts": {names["ours"]: {
                "ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3"}}},
            "alertmanager": {"hosts": {"alertmanager-test": {}}},
            "aether_app": {"hosts": {"aether-app-test": {}}},
        }}}
    community_inv = {"all": {"children": {"prometheus": {"hosts": {names["community"]: {
        "ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3",
        # no sudo in the image; root to root through su needs no password
        "ansible_become_method": "su"}}}}}}
    ours_play = [{"name": "Converge (this repository's prometheus role)", "hosts": "prometheus",
                  "gather_facts": False, "roles": [{"role": "prometheus"}]}]
    community_play = [{"name": "Converge (prometheus.prometheus.prometheus)", "hosts": "prometheus",
                       "gather_facts": True, "roles": [{"role": "prometheus.prometheus.prometheus"}]}]
    community_vars = {
        "prometheus_version": prom_version,           # the Debian binary's version (consoles, flags)
        "prometheus_local_cache_path": str(bin_dir),  # where the role takes prometheus/promtool from
    }
    files = {}
    for role, inv, play in (("ours", ours_inv, ours_play), ("community", community_inv, community_play)):
        (work / f"inventory-{role}.yml").write_text(yaml.safe_dump(inv, sort_keys=False))
        (work / f"converge-{role}.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (work / "vars-community.json").write_text(json.dumps(community_vars, indent=2))
    files["ours"] = {"inventory": work / "inventory-ours.yml", "playbook": work / "converge-ours.yml",
                     "args": []}
    files["community"] = {"inventory": work / "inventory-community.yml", "playbook": work / "converge-community.yml",
                          "args": ["-e", "@" + str(work / "vars-community.json"), "--skip-tags", "download"]}
    return files


def change_vars(role: str, kind: str, step: int, collection_dir: Path) -> dict:
    """Extra vars of the step-th change (1, 2, ...) of a kind: a new value every step."""
    if kind == "scrape":
        interval = f"{15 + step}s"
        if role == "ours":
            return {"prometheus_scrape_interval": interval}
        defaults = yaml.safe_load((collection_dir / "roles/prometheus/defaults/main.yml").read_text())
        return {"prometheus_global": dict(defaults["prometheus_global"], scrape_interval=interval)}
    if kind == "rules":
        if role == "ours":
            return {"aetherlink_alert_cache_hit_ratio_min": 34 + step}
        defaults = yaml.safe_load((collection_dir / "roles/prometheus/defaults/main.yml").read_text())
        rules = copy.deepcopy(defaults["prometheus_alert_rules"])
        target = next(r for r in rules if r.get("alert") == "InstanceDown")
        target["for"] = f"{5 + step}m"
        return {"prometheus_alert_rules": rules}
    raise ValueError(kind)


# --- containers -----------------------------------------------------------------------------------

def harness() -> dict:
    """The settings of playbooks/tasks/containers.yml, with the same environment overrides."""
    env = os.environ.get
    return {
        "image": env("AETHERLINK_BASE_IMAGE", "aetherlink/debian-systemd:bookworm"),
        "privileged": env("MOLECULE_PRIVILEGED", "false").lower() in ("1", "true", "yes", "on"),
        "cgroupns": env("MOLECULE_CGROUPNS_MODE", "host"),
        "cgroup_mount": env("MOLECULE_CGROUP_MOUNT", "/sys/fs/cgroup:/sys/fs/cgroup:rw"),
        "caps": [c for c in env("MOLECULE_CAPABILITIES", "SYS_ADMIN").split(",") if c],
        "secopts": [s for s in env("MOLECULE_SECURITY_OPTS", "seccomp=unconfined").split(",") if s],
        "tmpfs": ["/run", "/run/lock", "/tmp"],
        "command": "/lib/systemd/systemd",
    }


def remove_container(name: str) -> None:
    run(["docker", "rm", "-f", "-v", name])


def start_container(name: str) -> None:
    h = harness()
    remove_container(name)
    argv = ["docker", "run", "--detach", "--name", name, "--hostname", name,
            "--label", "owner=cmpbench", "--env", "container=docker", "--cgroupns", h["cgroupns"]]
    if h["privileged"]:
        argv.append("--privileged")
    for cap in h["caps"]:
        argv += ["--cap-add", cap]
    for opt in h["secopts"]:
        argv += ["--security-opt", opt]
    if h["cgroup_mount"] != "none":
        argv += ["--volume", h["cgroup_mount"]]
    for path in h["tmpfs"]:
        argv += ["--tmpfs", path]
    argv += [h["image"], h["command"]]
    out = run(argv)
    if out.returncode != 0:
        sys.exit(f"docker run {name} failed: {out.stderr.strip()}")
    deadline = time.monotonic() + 120
    while True:  # systemctl answers nothing until systemd has set up its bus: retry
        state = run(["docker", "exec", name, "systemctl", "is-system-running", "--wait"]).stdout.strip()
        if state in ("running", "degraded") or time.monotonic() > deadline:
            break
        time.sleep(1)
    if state not in ("running", "degraded"):
        sys.exit(f"systemd in {name} is {state!r}")


def main_pid(name: str) -> str:
    return run(["docker", "exec", name, "systemctl", "show", "-p", "MainPID", "--value", UNIT]).stdout.strip()


# --- runs -----------------------------------------------------------------------------------------

def ansible_env(collections: Path) -> dict:
    env = dict(os.environ)
    for key, value in SECRETS.items():
        env.setdefault(key, value)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "PATH": "%s:%s" % (ROOT / ".venv" / "bin", env.get("PATH", "")),
    })
    return env


def tool(name: str) -> str:
    venv = ROOT / ".venv" / "bin" / name
    return str(venv) if venv.exists() else (shutil.which(name) or name)


class Bench:
    def __init__(self, args, files, names, env, collection_dir):
        self.args, self.files, self.names, self.env = args, files, names, env
        self.collection_dir = collection_dir
        self.logs = args.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, dict[str, list]] = {r: {} for r in ROLES}
        self.failures: list[str] = []

    def playbook(self, role: str, phase: str, index: int, extra: dict | None = None) -> dict:
        f = self.files[role]
        argv = [tool("ansible-playbook"), "-i", str(f["inventory"]), *f["args"]]
        if extra:
            path = self.args.workdir / f"change-{role}.json"
            path.write_text(json.dumps(extra))
            argv += ["-e", "@" + str(path)]
        argv.append(str(f["playbook"]))
        name = self.names[role]
        pid_before = main_pid(name)
        start = time.monotonic()
        out = subprocess.run(argv, env=self.env, text=True, capture_output=True, cwd=str(ROOT))
        seconds = time.monotonic() - start
        pid_after = main_pid(name)
        (self.logs / f"{role}-{phase}-{index}.log").write_text(out.stdout + "\n--- stderr ---\n" + out.stderr)
        recap = {m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
                 for m in RECAP.finditer(out.stdout)}.get(name)
        row = {"seconds": round(seconds, 3), "rc": out.returncode, "recap": recap,
               "pid_before": pid_before, "pid_after": pid_after}
        self.results[role].setdefault(phase, []).append(row)
        ok = out.returncode == 0 and recap is not None and recap["failed"] == 0 and recap["unreachable"] == 0
        summary = (f"ok={recap['ok']} changed={recap['changed']} skipped={recap['skipped']}" if recap else "no recap")
        log(f"  {role:9} {phase:10} #{index}: {seconds:6.2f}s rc={out.returncode} {summary} "
            f"MainPID {pid_before}->{pid_after}")
        if not ok:
            self.failures.append(f"{role} {phase} #{index} failed (rc={out.returncode}, see {self.logs})")
        elif phase == "rerun" and recap["changed"] != 0:
            self.failures.append(f"{role} rerun #{index} not idempotent: changed={recap['changed']}")
        elif phase.startswith("change-") and recap["changed"] == 0:
            self.failures.append(f"{role} {phase} #{index} changed nothing")
        return row

    def facts(self, runs: int) -> list[float]:
        f = self.files["community"]
        times = []
        for _ in range(runs):
            start = time.monotonic()
            out = subprocess.run([tool("ansible"), "-i", str(f["inventory"]), "prometheus", "-m", "ansible.builtin.setup"],
                                 env=self.env, text=True, capture_output=True, cwd=str(ROOT))
            times.append(time.monotonic() - start)
            if out.returncode != 0:
                self.failures.append("ansible -m setup failed on the community container")
                break
        return times


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fmt(x: float) -> str:
    return f"{x:.2f}"


def table(bench: Bench, changes: list[str]) -> str:
    head = ["", "first converge (s)", "rerun median (s)", "rerun min / max (s)", "rerun changed"]
    head += [f"{k} change median (s)" for k in changes]
    head += [f"{k} change: service" for k in changes]
    head += ["tasks per rerun (ok+skipped)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    labels = {"ours": "this repository (`roles/prometheus`)",
              "community": "prometheus.prometheus.prometheus"}
    for role in ROLES:
        res = bench.results[role]
        first = res.get("first", [{}])[0].get("seconds")
        reruns = [r["seconds"] for r in res.get("rerun", [])]
        changed = sorted({r["recap"]["changed"] if r["recap"] else "?" for r in res.get("rerun", [])}, key=str)
        tasks = sorted({r["recap"]["ok"] + r["recap"]["skipped"] for r in res.get("rerun", []) if r["recap"]})
        cells = [labels[role], fmt(first) if first is not None else "-",
                 fmt(statistics.median(reruns)) if reruns else "-",
                 f"{fmt(min(reruns))} / {fmt(max(reruns))}" if reruns else "-",
                 ",".join(map(str, changed)) or "-"]
        medians, services = [], []
        for kind in changes:
            rows = res.get(f"change-{kind}", [])
            medians.append(fmt(statistics.median(r["seconds"] for r in rows)) if rows else "-")
            restarts = sum(1 for r in rows if r["pid_before"] != r["pid_after"])
            services.append(("reload" if restarts == 0 else f"restart ({restarts}/{len(rows)})") if rows else "-")
        cells += medians + services + [" / ".join(map(str, tasks)) or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="idempotent reruns per role (default 5)")
    p.add_argument("--changes", type=int, default=3, help="configuration-change runs per role and kind (default 3)")
    p.add_argument("--change", default="rules,scrape", help="kinds of change, comma-separated: rules, scrape")
    p.add_argument("--facts-runs", type=int, default=3, help="`ansible -m setup` timings on the community container")
    p.add_argument("--keep", action="store_true", help="leave the containers running")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/cmpbench"))
    p.add_argument("--collections", type=Path, help="collections dir (default <workdir>/collections)")
    p.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="git dir of prometheus-community/ansible")
    p.add_argument("--bin-dir", type=Path, help="Debian prometheus binaries (default <workdir>/bin)")
    p.add_argument("--json", type=Path, help="results file (default <workdir>/role_compare.json)")
    args = p.parse_args()
    args.workdir = args.workdir.resolve()
    collections = (args.collections or args.workdir / "collections").resolve()
    bin_dir = (args.bin_dir or args.workdir / "bin").resolve()
    changes = [c for c in args.change.split(",") if c]
    for c in changes:
        if c not in ("rules", "scrape"):
            p.error(f"unknown change kind {c!r}")

    coll_version = ensure_collection(collections, args.mirror)
    prom_version = ensure_binaries(bin_dir)
    names = {"ours": "cmpbench-ours", "community": "cmpbench-community"}
    files = write_files(args.workdir, names, prom_version, bin_dir)
    bench = Bench(args, files, names, ansible_env(collections), collections / COLLECTION)
    versions = run([tool("ansible-playbook"), "--version"]).stdout.splitlines()[0]
    log(f"{versions}; prometheus.prometheus {coll_version}; community binary {prom_version}")

    load_before = loadavg()
    log(f"load average before: {load_before}")
    try:
        for role in ROLES:
            log(f"starting {names[role]}")
            start_container(names[role])
        for role in ROLES:
            bench.playbook(role, "first", 1)
        if bench.failures:
            raise RuntimeError("first converge failed")
        for i in range(1, args.runs + 1):
            for role in ROLES:
                bench.playbook(role, "rerun", i)
        for kind in changes:
            for i in range(1, args.changes + 1):
                for role in ROLES:
                    bench.playbook(role, f"change-{kind}", i, change_vars(role, kind, i, collections / COLLECTION))
            for role in ROLES:  # back to the defaults (untimed in the table), so the next kind changes only itself
                bench.playbook(role, f"restore-{kind}", 1)
        facts = bench.facts(args.facts_runs) if args.facts_runs else []
    except RuntimeError as exc:
        log(str(exc))
        facts = []
    finally:
        if not args.keep:
            for role in ROLES:
                remove_container(names[role])
    load_after = loadavg()

    print(table(bench, changes))
    print()
    print(f"- {versions}; prometheus.prometheus {coll_version} (community role on Debian's prometheus {prom_version},"
          f" --skip-tags download); ANSIBLE_CONFIG={ROOT / 'ansible.cfg'} (pipelining on)")
    print(f"- load average (1/5/15 min) before: {load_before}; after: {load_after}; {os.cpu_count()} CPUs")
    pairs = list(zip((r["seconds"] for r in bench.results["ours"].get("rerun", [])),
                     (r["seconds"] for r in bench.results["community"].get("rerun", []))))
    if pairs:
        ratios = sorted(c / o for o, c in pairs)
        print(f"- reruns paired in order (ours, community): community/ours median {statistics.median(ratios):.2f},"
              f" range {ratios[0]:.2f}-{ratios[-1]:.2f}; ours faster in {sum(c > o for o, c in pairs)} of {len(pairs)}")
    if facts:
        print(f"- `ansible -m setup` alone on the community container: median {fmt(statistics.median(facts))} s"
              f" of {len(facts)} (included in its times; ours gathers no facts)")
    for f in bench.failures:
        print(f"- FAILED: {f}")
    out = args.json or args.workdir / "role_compare.json"
    out.write_text(json.dumps({"versions": versions, "collection": coll_version, "prometheus": prom_version,
                               "load_before": load_before, "load_after": load_after, "facts_seconds": facts,
                               "results": bench.results, "failures": bench.failures}, indent=2))
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
