#!/usr/bin/env python3
"""Throughput of the smoke sender (roles/aether_app/files/aetherlink_smoke.py), loopback only.

What playbooks/smoke.yml does on a host, without Ansible: starts the AetherLink service
(`python -m aetherlink`, one uvicorn worker, access log off) on 127.0.0.1 and a free port with
a temporary SQLite file; provisions --tenants tenants (the seed's four names) through the admin
API with the aether_app role's default documents; builds the plan with the aetherlink_smoke_plan
filter and the playbook's questions; then, for each scenario and concurrency, runs the sender as
the playbook does (a new `python3 -S` process, the JSON plan with the keys on stdin) and reads
its report. Each run uses fresh tenants (empty answer caches) and is bounded by the sender's
--timeout.

Scenarios:
  healthy   every tenant as the playbook's default run: repeated questions (cache hits after
            the first answers), rerank on every other request, off-topic every 10th;
  degraded  the alert drill: one tenant with smoke_degrade_cache (every question unique, every
            lookup misses), one with smoke_degrade_confidence, the others healthy.

Columns: requests/s as the sender reports it (sending only, first request to last answer),
and end to end (process start, reading and checking the plan, sending, report: what the
playbook's send task waits for, without Ansible's transfer of the plan).

    .venv/bin/python benchmarks/smoke_bench.py                          # 4 tenants x 1250 = 5,000 requests
    .venv/bin/python benchmarks/smoke_bench.py --requests-per-tenant 5000 --concurrency 8

Needs the aetherlink package (the project's .venv has it, editable) and ansible (the filter
module raises Ansible's errors) importable by this interpreter.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

# The service's start and stop are app_bench's (the same directory, on sys.path when run as a script).
from app_bench import HOST, free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parents[1]
SENDER = ROOT / "roles" / "aether_app" / "files" / "aetherlink_smoke.py"
TENANTS = ["acme-corp", "globex", "vip-initech", "premium-umbrella"]


def load_filters():
    path = ROOT / "roles" / "aetherlink" / "filter_plugins" / "aetherlink_data.py"
    spec = importlib.util.spec_from_file_location("aetherlink_filter_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def api(port: int, method: str, path: str, body: object, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=sys.executable, help="interpreter that has aetherlink installed")
    p.add_argument("--sender-python", default=shutil.which("python3") or sys.executable,
                   help="interpreter that runs the sender (the hosts' python3)")
    p.add_argument("--tenants", type=int, default=4, choices=range(1, len(TENANTS) + 1))
    p.add_argument("--requests-per-tenant", type=int, default=1250)
    p.add_argument("--concurrency", default="1,4,8,16")
    p.add_argument("--scenarios", default="healthy,degraded")
    p.add_argument("--timeout", type=float, default=300.0, help="the sender's overall timeout per run")
    p.add_argument("--server-cpu", type=int, default=None,
                   help="pin the service to this CPU (default: no pinning, as on a host)")
    p.add_argument("--json", help="also write the rows to this file")
    p.set_defaults(impl="auto")  # app_bench.start_server: the real entry point, python -m aetherlink
    args = p.parse_args()

    data = load_filters()
    smoke_vars = yaml.safe_load((ROOT / "playbooks" / "smoke.yml").read_text())[0]["vars"]
    documents = yaml.safe_load((ROOT / "roles" / "aether_app" / "defaults" / "main.yml").read_text())[
        "aether_app_documents"]
    levels = [int(c) for c in args.concurrency.split(",")]
    scenarios = args.scenarios.split(",")

    workdir = tempfile.mkdtemp(prefix="aether-smoke-bench-")
    port = free_port()
    admin_key = secrets.token_urlsafe(24)
    proc = start_server(args, port, os.path.join(workdir, "bench.db"), admin_key)
    rows = []
    try:
        version = subprocess.run([args.sender_python, "--version"], capture_output=True, text=True).stdout.strip()
        print(f"# service pid {proc.pid} (cpu {args.server_cpu if args.server_cpu is not None else 'any'}), "
              f"sender {args.sender_python} ({version}), {os.cpu_count()} cpus, "
              f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("| scenario | conc | tenants | requests | non-200 | cached | low conf | req/s (sender) | req/s (end to end) |")
        print("|---|---|---|---|---|---|---|---|---|")
        run = 0
        for scenario in scenarios:
            for concurrency in levels:
                run += 1
                # Fresh tenants: empty answer caches, the state of a first smoke run.
                names = [f"{name}-{run}" for name in TENANTS[: args.tenants]]
                keys = {}
                for name in names:
                    keys[name] = "alk_bench_" + secrets.token_hex(20)
                    api(port, "POST", "/v1/admin/tenants", {"name": name, "api_key": keys[name]}, admin_key)
                    api(port, "POST", f"/v1/admin/tenants/{name}/documents", {"documents": documents}, admin_key)
                cache = names[:1] if scenario == "degraded" else []
                confidence = names[-1:] if scenario == "degraded" and len(names) > 1 else []
                requests = data.smoke_plan(names, args.requests_per_tenant, cache, confidence,
                                           smoke_vars["smoke_questions"], smoke_vars["smoke_offtopic_questions"],
                                           int(time.time()) + run)
                document = json.dumps({"api_url": f"http://{HOST}:{port}", "requests": requests, "keys": keys,
                                       "concurrency": concurrency, "timeout": args.timeout}).encode()
                start = time.perf_counter()
                done = subprocess.run([args.sender_python, "-S", str(SENDER)], input=document,
                                      capture_output=True, timeout=args.timeout + 60)
                wall = time.perf_counter() - start
                if done.returncode != 0:
                    raise SystemExit(f"the sender failed (rc {done.returncode}): {done.stderr.decode()}")
                report = json.loads(done.stdout)
                totals = report["totals"]
                row = {
                    "scenario": scenario, "concurrency": concurrency, "tenants": len(names),
                    "requests": totals["sent"], "non_200": totals["sent"] - totals["codes"].get("200", 0),
                    "unsent": totals["planned"] - totals["sent"], "cached": totals["cached"],
                    "low_confidence": totals["low_confidence"],
                    "rps_sender": report["requests_per_second"], "rps_end_to_end": round(totals["sent"] / wall, 1),
                    "elapsed_seconds": report["elapsed_seconds"], "wall_seconds": round(wall, 3),
                }
                rows.append(row)
                print(f"| {scenario} | {concurrency} | {len(names)} | {row['requests']} | {row['non_200'] + row['unsent']} "
                      f"| {row['cached']} | {row['low_confidence']} | {row['rps_sender']:.0f} | {row['rps_end_to_end']:.0f} |",
                      flush=True)
        print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"python {platform.python_version()}")
    finally:
        stop_server(proc, workdir)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    failed = sum(row["non_200"] + row["unsent"] for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
