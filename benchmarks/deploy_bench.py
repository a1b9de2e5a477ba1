#!/usr/bin/env python3
"""Deploy timings of the whole stack on the local sandbox (`make up`).

Times, as whole `ansible-playbook` processes (wall clock, median of --runs):

- idempotent: `site.yml` on the running sandbox; every host must report changed=0;
- rules: a rules-only change through `playbooks/rules.yml` (a threshold moved
  and moved back: every run is a real change); Prometheus' and both
  Alertmanagers' MainPIDs must not change (0 restarts);
- cold (--cold): `make down` then `make up` (containers created, the whole
  stack deployed, smoke traffic, verify), the base image kept;

each with Ansible's pipelining on (the repository's setting) and off
(ANSIBLE_PIPELINING=false), and optionally from a second checkout
(--baseline DIR, e.g. a `git worktree` of an older commit) run in turn with
this one, so that both see the same machine load.

    make up && .venv/bin/python benchmarks/deploy_bench.py --runs 3
    git worktree add /tmp/base e60f077 && .venv/bin/python benchmarks/deploy_bench.py --baseline /tmp/base

The sandbox's secrets (.cache/sandbox) are shared with a baseline checkout
through a symbolic link made by this script when it has none.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
SERVICES = {  # sandbox container -> unit whose MainPID must survive a rules-only change
    "aether-prometheus-1": "prometheus",
    "aether-alertmanager-1": "prometheus-alertmanager",
    "aether-alertmanager-2": "prometheus-alertmanager",
}
THRESHOLD = "aetherlink_alert_cache_hit_ratio_min"


def main_pids() -> dict[str, str]:
    pids = {}
    for container, unit in SERVICES.items():
        out = subprocess.run(["docker", "exec", container, "systemctl", "show", "--property", "MainPID",
                              "--value", unit], capture_output=True, text=True, check=True)
        pids[container] = out.stdout.strip()
    return pids


def playbook(checkout: Path, args: list[str], pipelining: bool) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_PIPELINING="true" if pipelining else "false",
               PATH="%s:%s" % (ROOT / ".venv" / "bin", os.environ.get("PATH", "")))
    start = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", "inventories/local", *args], cwd=checkout, env=env,
                          capture_output=True, text=True)
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit("ansible-playbook %s failed in %s (rc %d):\n%s" % (" ".join(args), checkout, proc.returncode,
                                                                   proc.stdout[-3000:] + proc.stderr[-2000:]))
    return took, proc.stdout


def recap(out: str) -> dict[str, int]:
    hosts = {host: int(changed) for host, changed, unreachable, failed in RECAP.findall(out)}
    if not hosts:
        sys.exit("no PLAY RECAP in the output")
    return hosts


def idempotent(checkout: Path, pipelining: bool) -> float:
    took, out = playbook(checkout, ["site.yml"], pipelining)
    changed = {h: c for h, c in recap(out).items() if c}
    if changed:
        sys.exit("site.yml changed something on a rerun in %s (%s): not idempotent" % (checkout, changed))
    return took


def rules_change(checkout: Path, pipelining: bool, value: str) -> float:
    before = main_pids()
    took, out = playbook(checkout, ["playbooks/rules.yml", "-e", "%s=%s" % (THRESHOLD, value)], pipelining)
    if not any(recap(out).values()):
        sys.exit("playbooks/rules.yml with %s=%s changed nothing" % (THRESHOLD, value))
    after = main_pids()
    if after != before:
        sys.exit("a service restarted during the rules-only change: %s -> %s" % (before, after))
    return took


def cold(checkout: Path) -> float:
    subprocess.run(["make", "down"], cwd=checkout, check=True, capture_output=True)
    start = time.monotonic()
    proc = subprocess.run(["make", "up"], cwd=checkout, capture_output=True, text=True)
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit("make up failed:\n" + proc.stdout[-3000:])
    return took


def default_threshold(checkout: Path) -> str:
    """The threshold's value in the sandbox: the local inventory's, else the shared default."""
    for path in (checkout / "inventories/local/group_vars/all/aetherlink.yml",
                 checkout / "roles/aetherlink/defaults/main.yml"):
        value = (yaml.safe_load(path.read_text()) or {}).get(THRESHOLD)
        if value is not None:
            return str(value)
    sys.exit("%s is set neither in the local inventory nor in the aetherlink defaults" % THRESHOLD)


def share_secrets(checkout: Path) -> None:
    secrets = checkout / ".cache" / "sandbox"
    if checkout != ROOT and not secrets.exists():
        secrets.parent.mkdir(parents=True, exist_ok=True)
        secrets.symlink_to(ROOT / ".cache" / "sandbox")


def stats(values: list[float]) -> str:
    return "%.1f | %.1f | %.1f" % (statistics.median(values), min(values), max(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a second checkout, run in turn with this one")
    parser.add_argument("--no-pipelining-variant", action="store_true", help="skip the pipelining-off rows")
    parser.add_argument("--cold", action="store_true", help="also time make down + make up (minutes)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    checkouts = {"this": ROOT}
    if args.baseline:
        checkouts["baseline"] = args.baseline.resolve()
        share_secrets(checkouts["baseline"])
    variants = [True] if args.no_pipelining_variant else [True, False]
    original = default_threshold(ROOT)
    moved = "%g" % (float(original) + 5 if float(original) <= 90 else float(original) - 5)
    for checkout in checkouts.values():  # warm-up, not counted: a checkout builds its wheelhouse once
        playbook(checkout, ["site.yml"], True)
    load_before = os.getloadavg()
    times: dict[tuple[str, str, bool], list[float]] = {}

    def record(key: tuple[str, str, bool], took: float) -> None:
        times.setdefault(key, []).append(took)
        print("%s, %s, pipelining %s: %.1f s" % (key[0], key[1], "on" if key[2] else "off", took), flush=True)

    for _ in range(args.runs):
        for pipelining in variants:
            for name, checkout in checkouts.items():
                record(("idempotent site.yml", name, pipelining), idempotent(checkout, pipelining))
                for value in (moved, original):
                    record(("rules-only change", name, pipelining), rules_change(checkout, pipelining, value))
    if args.cold:
        for name, checkout in checkouts.items():
            record(("cold make up (image kept)", name, True), cold(checkout))
    load_after = os.getloadavg()

    print("load average %.2f before, %.2f after; %d runs (rules-only: 2 changes per run)"
          % (load_before[0], load_after[0], args.runs))
    print("\n| what | checkout | pipelining | runs | median s | min s | max s |\n|---|---|---|---|---|---|---|")
    for (what, name, pipelining), values in times.items():
        print("| %s | %s | %s | %d | %s |" % (what, name, "on" if pipelining else "off", len(values), stats(values)))
    if args.json:
        args.json.write_text(json.dumps([{"what": w, "checkout": n, "pipelining": p, "seconds": v}
                                         for (w, n, p), v in times.items()], indent=1))


if __name__ == "__main__":
    main()
