#!/usr/bin/env python3
"""Latency/throughput benchmark of the AetherLink service (app/), loopback only.

Starts the service as a uvicorn subprocess on 127.0.0.1 (a free port, a temporary SQLite file),
pinned to one CPU core; creates a tenant with generated documents; then measures cached queries
(one question repeated), uncached queries (every question distinct, so every lookup misses) and
uncached queries with the rerank step, at several concurrency levels. Each run is bounded by a
request count and a time limit. The load generator is a small keep-alive HTTP/1.1 client on
asyncio streams (stdlib only), pinned to another core when there is one.

    python benchmarks/app_bench.py                       # defaults: 1000 docs, c = 1, 4, 16
    python benchmarks/app_bench.py --requests 500 --json results.json

Requires the aetherlink package importable by --python (default: this interpreter).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

HOST = "127.0.0.1"
TENANT = "bench-co"

# --------------------------------------------------------------------------- corpus generation

_SYLLABLES = ("ka ri to mu sen lo va pe dri nox tal bri quo zen fa lu mor gi ast el on ur "
              "vik sa pel dor tem bax cy ru hal").split()


def make_vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def zipf_weights(n: int, s: float = 1.05) -> list[float]:
    return [1.0 / (rank ** s) for rank in range(1, n + 1)]


def make_documents(rng: random.Random, vocab: list[str], count: int) -> list[dict]:
    weights = zipf_weights(len(vocab))
    fillers = ["the", "a", "of", "and", "is", "for", "with", "to", "in"]
    docs = []
    for i in range(count):
        sentences = []
        for _ in range(rng.randint(5, 9)):
            words = rng.choices(vocab, weights=weights, k=rng.randint(8, 15))
            for j in range(1, len(words), 4):
                words.insert(j, rng.choice(fillers))
            sentences.append(" ".join(words).capitalize() + ".")
        docs.append({"id": f"doc-{i:05d}", "text": " ".join(sentences)})
    return docs


def make_questions(rng: random.Random, vocab: list[str], count: int) -> list[str]:
    """Distinct questions of 3-5 terms, drawn from the mid-frequency part of the vocabulary."""
    pool = vocab[20:1500]
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        q = "what about " + " ".join(rng.sample(pool, rng.randint(3, 5))) + "?"
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


# --------------------------------------------------------------------------- server control

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pin(cpu: int | None):
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def start_server(args, port: int, db_path: str, admin_key: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.update({
        "API_ADMIN_KEY": admin_key,
        "AETHER_LISTEN_HOST": HOST,
        "AETHER_PORT": str(port),
        "AETHER_DB_PATH": db_path,
        "AETHER_LOG_LEVEL": "warning",
    })
    if os.environ.get("AETHER_BENCH_SERVER_SCRIPT"):  # development aid: e.g. a profiling wrapper
        cmd = [args.python, os.environ["AETHER_BENCH_SERVER_SCRIPT"]]
    elif args.impl == "auto":  # the real entry point: uvicorn picks httptools/uvloop when installed
        cmd = [args.python, "-m", "aetherlink", "--no-access-log"]
    else:  # pure-Python stack, for comparison
        cmd = [args.python, "-c",
               "import uvicorn; from aetherlink.app import create_app; "
               f"uvicorn.run(create_app(), host={HOST!r}, port={port}, http='h11', loop='asyncio', "
               "access_log=False, log_level='warning', server_header=False)"]
    log = open(os.path.join(os.path.dirname(db_path), "server.log"), "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=pin(args.server_cpu))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early (rc={proc.returncode}); see {log.name}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("server did not become healthy within 20 s")


def stop_server(proc: subprocess.Popen, workdir: str) -> None:
    """Stop the service (killed if it does not stop within 10 s) and remove its working directory."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(workdir, ignore_errors=True)


def api(port: int, method: str, path: str, body: object, headers: dict[str, str]) -> dict:
    req = urllib.request.Request(
        f"http://{HOST}:{port}{path}", method=method, data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


# --------------------------------------------------------------------------- load generator

@dataclass
class Result:
    name: str
    concurrency: int
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    cached_seen: int = 0

    def row(self) -> dict:
        lat = sorted(self.latencies_ns)
        n = len(lat)

        def pct(p: float) -> float:
            if not n:
                return float("nan")
            return lat[min(n - 1, max(0, int(round(p / 100 * n + 0.5)) - 1))] / 1e6

        return {
            "scenario": self.name,
            "concurrency": self.concurrency,
            "requests": n,
            "errors": self.errors,
            "rps": n / self.wall_s if self.wall_s else 0.0,
            "p50_ms": pct(50),
            "p90_ms": pct(90),
            "p99_ms": pct(99),
            "max_ms": lat[-1] / 1e6 if n else float("nan"),
            "mean_ms": statistics.fmean(lat) / 1e6 if n else float("nan"),
            "cached_fraction": self.cached_seen / n if n else 0.0,
        }


class Connection:
    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.prefix = (
            f"POST /v1/query HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {api_key}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except ConnectionError:
                pass

    async def query(self, body: bytes) -> tuple[int, bytes]:
        assert self.reader and self.writer
        self.writer.write(self.prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self.reader.readexactly(length)
        return status, payload


async def run_load(port: int, api_key: str, name: str, bodies: list[bytes], concurrency: int,
                   max_requests: int, max_seconds: float, warmup: int) -> Result:
    result = Result(name, concurrency)
    conns = [Connection(port, api_key) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    try:
        # warm-up: not measured (connections, code paths, and, for "cached", the cache entry)
        for i in range(warmup):
            await conns[i % concurrency].query(bodies[i % len(bodies)])
        next_index = warmup
        issued = 0
        deadline = time.monotonic() + max_seconds

        async def worker(conn: Connection) -> None:
            nonlocal next_index, issued
            while issued < max_requests and time.monotonic() < deadline:
                issued += 1
                body = bodies[next_index % len(bodies)]
                next_index += 1
                t0 = time.perf_counter_ns()
                status, payload = await conn.query(body)
                result.latencies_ns.append(time.perf_counter_ns() - t0)
                if status != 200:
                    result.errors += 1
                elif b'"cached":true' in payload:
                    result.cached_seen += 1

        # the client's own GC pauses must not show up as server latency
        gc.collect()
        gc.disable()
        t_start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        result.wall_s = time.perf_counter() - t_start
    finally:
        gc.enable()
        await asyncio.gather(*(c.close() for c in conns))
    return result


def run_async(coro):
    """Run the load generator on uvloop when it is installed (less client overhead per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def client_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
        return "uvloop"
    except ImportError:
        return "asyncio"


# --------------------------------------------------------------------------- main

def print_table(rows: list[dict]) -> str:
    header = ("scenario", "conc", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
              "cached")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} | "
            f"{100 * r['cached_fraction']:.0f}% |"
        )
    text = "\n".join(lines)
    print(text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=sys.executable, help="interpreter that has aetherlink installed")
    p.add_argument("--docs", type=int, default=1000)
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--requests", type=int, default=3000, help="max measured requests per run")
    p.add_argument("--seconds", type=float, default=15.0, help="max measured seconds per run")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--impl", choices=("auto", "h11"), default="auto",
                   help="auto: the aetherlink entry point (httptools/uvloop if installed); "
                        "h11: pure-Python h11 + asyncio")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.server_cpu not in cpus:
        args.server_cpu = None
    if args.client_cpu not in cpus or args.client_cpu == args.server_cpu:
        args.client_cpu = None
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})
    levels = [int(c) for c in args.concurrency.split(",")]

    rng = random.Random(args.seed)
    vocab = make_vocabulary(rng, 3000)
    docs = make_documents(rng, vocab, args.docs)
    total_needed = args.requests + args.warmup
    questions = make_questions(rng, vocab, total_needed * len(levels) * 2 + 10)

    workdir = tempfile.mkdtemp(prefix="aether-bench-")
    port = free_port()
    admin_key = secrets.token_urlsafe(24)
    proc = start_server(args, port, os.path.join(workdir, "bench.db"), admin_key)
    rows: list[dict] = []
    try:
        admin = {"Authorization": f"Bearer {admin_key}"}
        created = api(port, "POST", "/v1/admin/tenants", {"name": TENANT}, admin)
        key = created["api_key"]
        t0 = time.perf_counter()
        for i in range(0, len(docs), 50):
            api(port, "POST", f"/v1/admin/tenants/{TENANT}/documents", {"documents": docs[i:i + 50]}, admin)
        ingest_s = time.perf_counter() - t0
        print(f"# server pid {proc.pid} on cpu {args.server_cpu}, client on cpu {args.client_cpu}, "
              f"impl={args.impl}, client loop={client_loop_name()}, "
              f"python {platform.python_version()}, {os.cpu_count()} cpus")
        print(f"# ingested {len(docs)} documents in {ingest_s:.2f} s; "
              f"load average before runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

        cached_body = [json.dumps({"question": questions[0]}).encode()]
        q_iter = iter(questions[1:])

        def distinct(n: int, rerank: bool) -> list[bytes]:
            return [json.dumps({"question": next(q_iter), "rerank": rerank}).encode() for _ in range(n)]

        for c in levels:
            rows.append(run_async(run_load(port, key, "cached", cached_body, c, args.requests,
                                             args.seconds, args.warmup)).row())
        for c in levels:
            rows.append(run_async(run_load(port, key, "uncached", distinct(total_needed, False), c,
                                             args.requests, args.seconds, args.warmup)).row())
        for c in levels:
            rows.append(run_async(run_load(port, key, "uncached+rerank", distinct(total_needed, True), c,
                                             args.requests, args.seconds, args.warmup)).row())
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
            metrics_text = r.read().decode()
    finally:
        stop_server(proc, workdir)

    print(f"# load average after runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    table = print_table(rows)
    for line in metrics_text.splitlines():
        if line.startswith(("aether_cache_requests_total", "aether_cache_hits_total")) and TENANT in line:
            print("# " + line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "table": table}, f, indent=2)
    failed = sum(r["errors"] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
