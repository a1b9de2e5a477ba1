#!/usr/bin/env python3
"""`GET /metrics` of the AetherLink service (app/) at scale: many tenants, loopback only.

For each tenant count: starts the service as app_bench does (`python -m aetherlink`, one uvicorn
worker, access log off, a temporary SQLite file, pinned to one CPU; app_bench's start/stop),
creates the tenants through the admin API (keep-alive connections), ingests a few documents
into one of them (the probe tenant), and sends every tenant some traffic (one answered query,
the same again from the cache, one refused body: 422), so that every tenant's series carry
values. Then it measures, with the load client pinned to another CPU:

  1. idle scrapes, one at a time: size of the body, client-observed latency (request sent to
     last body byte), and the server's own time per scrape, read from the service's histogram
     aether_request_duration_seconds{tenant="_unknown", route="metrics"} (sum / count over the
     phase); once without and once with `Accept-Encoding: gzip` (what Prometheus sends);
  2. a cached query of the probe tenant (app_bench's load client, one question repeated), first
     with no scraper, then while --scrapers clients scrape /metrics in a loop (a separate
     process on the client's CPU), without and with gzip.

Prints markdown tables; exits non-zero if any request failed.

    python benchmarks/metrics_bench.py                                   # 100, 1,000, 10,000 tenants
    python benchmarks/metrics_bench.py --tenants 1000 --seconds 5 --json out.json

Requires the aetherlink package importable by --python (default: this interpreter).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing
import os
import platform
import secrets
import sys
import tempfile
import time

# The service's start/stop and the load client are app_bench's (same directory, on sys.path when
# run as a script).
from app_bench import (
    HOST,
    Connection,
    Result,
    api,
    client_loop_name,
    free_port,
    pin,
    run_async,
    run_load,
    start_server,
    stop_server,
)

PROBE_DOCS = [
    {"id": f"probe-{i}", "text": f"Probe document {i}. The warranty of model {i} lasts {i + 1} years; "
     "the battery is replaced for free during that time."}
    for i in range(20)
]
QUESTION = {"question": "how long does the warranty last?"}
ENCODINGS = ("identity", "gzip")


def pin_here(cpu: int | None) -> None:
    """Pin this process to ``cpu`` (app_bench's pin, which is made for preexec_fn)."""
    (pin(cpu) or (lambda: None))()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def aim(conn: Connection, method: str, path: str, token: str, extra: str = "") -> Connection:
    """Point app_bench's keep-alive connection at another route (it sends ``prefix`` + body)."""
    conn.prefix = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{conn.port}\r\nAuthorization: Bearer {token}\r\n"
                   f"Content-Type: application/json\r\n{extra}").encode()
    return conn


def scrape_headers(encoding: str) -> str:
    return "Accept-Encoding: gzip\r\n" if encoding == "gzip" else ""


async def exchange_all(port: int, requests: list[tuple[str, str, str, bytes]], concurrency: int) -> dict:
    """Send (method, path, token, body) requests over ``concurrency`` keep-alive connections;
    {status: count} plus the JSON bodies of admin tenant creations."""
    conns = [Connection(port, "-") for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    codes: dict[int, int] = {}
    todo = iter(requests)

    async def worker(conn: Connection) -> None:
        for method, path, token, body in todo:
            status, _ = await aim(conn, method, path, token).query(body)
            codes[status] = codes.get(status, 0) + 1

    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return codes


def prepare(port: int, admin_key: str, tenants: int) -> tuple[str, dict, float]:
    """Create the tenants and their traffic; (probe tenant key, {phase: status counts}, seconds)."""
    names = [f"tenant-{i:05d}" for i in range(tenants)]
    keys = {name: f"bench-key-{i:05d}-{secrets.token_hex(8)}" for i, name in enumerate(names)}
    t0 = time.perf_counter()
    create = [("POST", "/v1/admin/tenants", admin_key, json.dumps({"name": n, "api_key": keys[n]}).encode())
              for n in names]
    created = run_async(exchange_all(port, create, 4))
    api(port, "POST", f"/v1/admin/tenants/{names[0]}/documents", {"documents": PROBE_DOCS},
        {"Authorization": f"Bearer {admin_key}"})
    answered = json.dumps(QUESTION).encode()
    traffic = [("POST", "/v1/query", keys[n], body) for n in names for body in (answered, answered, b"{}")]
    sent = run_async(exchange_all(port, traffic, 4))
    return keys[names[0]], {"create": created, "traffic": sent}, time.perf_counter() - t0


async def reopen(conn: Connection) -> None:
    await conn.close()
    await conn.open()


async def scrape_loop(port: int, token: str, encoding: str, until, concurrency: int = 1) -> tuple[Result, int, bool]:
    """Scrape /metrics in a loop on ``concurrency`` connections until ``until()`` is true;
    (latencies, size of the last body, whether it was gzip-encoded)."""
    result = Result(f"scrape-{encoding}", concurrency)
    conns = [aim(Connection(port, "-"), "GET", "/metrics", token, scrape_headers(encoding))
             for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    size, gzipped = 0, False

    async def worker(conn: Connection) -> None:
        nonlocal size, gzipped
        while not until():
            t0 = time.perf_counter_ns()
            try:
                status, payload = await conn.query(b"")
            except (asyncio.IncompleteReadError, ConnectionError):  # e.g. closed by the server
                result.errors += 1
                await reopen(conn)
                continue
            result.latencies_ns.append(time.perf_counter_ns() - t0)
            if status != 200:
                result.errors += 1
            size = len(payload)
            gzipped = payload[:2] == b"\x1f\x8b"

    t_start = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        result.wall_s = time.perf_counter() - t_start
        await asyncio.gather(*(c.close() for c in conns))
    return result, size, gzipped


async def run_paced(port: int, api_key: str, body: bytes, rate: float, seconds: float,
                    pool: int = 32) -> tuple[Result, int]:
    """Open loop: one query every 1/rate s whatever the answers do (users do not wait for each
    other), on a pool of keep-alive connections. A query's latency counts from the moment the
    client wakes up to send it, so a wait for a free connection (all busy: the server is stuck)
    counts. Queries still unanswered ``seconds`` after the last send are given up and counted
    with the time they had waited by then; (result, how many were given up)."""
    result = Result(f"paced {rate:.0f}/s", pool)
    conns = [Connection(port, api_key) for _ in range(pool)]
    await asyncio.gather(*(c.open() for c in conns))
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    started: dict[int, int] = {}

    async def one(i: int) -> None:
        started[i] = time.perf_counter_ns()
        conn = await free.get()
        try:
            status, _ = await conn.query(body)
        except (asyncio.IncompleteReadError, ConnectionError):  # e.g. closed by the server
            status = 0
            await reopen(conn)
        free.put_nowait(conn)
        result.latencies_ns.append(time.perf_counter_ns() - started.pop(i))
        if status != 200:
            result.errors += 1

    tasks = []
    start = time.perf_counter_ns()
    try:
        for i in range(int(rate * seconds)):
            delay = (start + i * 1e9 / rate - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.wait(tasks, timeout=seconds)
    finally:
        result.wall_s = (time.perf_counter_ns() - start) / 1e9
        now = time.perf_counter_ns()
        result.latencies_ns += [now - t for t in started.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in conns))
    return result, len(started)


def scraper_process(port: int, token: str, encoding: str, stop, concurrency: int, cpu, queue) -> None:
    """Body of the background scraper process (on the client's CPU): scrapes until ``stop`` is set."""
    pin_here(cpu)
    try:
        result, _, _ = run_async(scrape_loop(port, token, encoding, stop.is_set, concurrency))
    except Exception as exc:  # reported as a failed run, never a parent waiting forever
        result = Result(f"scrape-{encoding}: {exc!r}", concurrency, errors=1)
    queue.put(result.row())


def metrics_text(port: int, token: str) -> str:
    with_gzip = run_async(fetch_one(port, token))
    return (gzip.decompress(with_gzip) if with_gzip[:2] == b"\x1f\x8b" else with_gzip).decode()


async def fetch_one(port: int, token: str) -> bytes:
    conn = aim(Connection(port, "-"), "GET", "/metrics", token, scrape_headers("gzip"))
    await conn.open()
    try:
        status, payload = await conn.query(b"")
    finally:
        await conn.close()
    if status != 200:
        raise SystemExit(f"/metrics answered {status}")
    return payload


def server_scrape_time(text: str) -> tuple[float, float]:
    """(sum, count) of the service's own latency histogram for route="metrics"."""
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("aether_request_duration_seconds_") and 'route="metrics"' in line \
                and 'tenant="_unknown"' in line:
            name, value = line.partition("{")[0], line.rsplit(" ", 1)[1]
            if name.endswith("_sum"):
                total = float(value)
            elif name.endswith("_count"):
                count = float(value)
    return total, count


def measure(args, tenants: int) -> tuple[list[dict], list[dict], dict]:
    workdir = tempfile.mkdtemp(prefix="aether-metrics-bench-")
    port = free_port()
    admin_key = secrets.token_urlsafe(24)
    token = "-"  # no AETHER_METRICS_TOKEN: /metrics is open, the header is ignored
    proc = start_server(args, port, os.path.join(workdir, "bench.db"), admin_key)
    scrape_rows: list[dict] = []
    query_rows: list[dict] = []
    try:
        probe_key, codes, prep_s = prepare(port, admin_key, tenants)
        info = {"tenants": tenants, "prepare_seconds": round(prep_s, 2), "codes": codes,
                "load_before": load_average()}
        print(f"# {tenants} tenants: created and traffic sent in {prep_s:.1f} s "
              f"(status counts {codes}); load average {info['load_before']}", flush=True)
        for encoding in ENCODINGS:
            before = server_scrape_time(metrics_text(port, token))
            deadline = time.monotonic() + args.seconds
            done = iter(range(args.scrapes, -1, -1))  # at most --scrapes scrapes
            result, size, gzipped = run_async(scrape_loop(
                port, token, encoding, lambda: time.monotonic() > deadline or next(done) == 0))
            after = server_scrape_time(metrics_text(port, token))
            # the second stats read is itself a (gzip) scrape, counted in the server's figures
            server_ms = 1000 * (after[0] - before[0]) / max(1.0, after[1] - before[1])
            row = result.row() | {"tenants": tenants, "encoding": encoding, "bytes": size,
                                  "gzip_response": gzipped, "server_mean_ms": server_ms}
            scrape_rows.append(row)
        body = json.dumps(QUESTION).encode()
        ctx = multiprocessing.get_context("fork")
        for scrapers, encoding in [(0, "-")] + [(args.scrapers, e) for e in ENCODINGS]:
            # warm-up before the scrapers start (connections, code paths, the cache entry)
            run_async(run_load(port, probe_key, "warmup", [body], 1, 1, args.seconds, args.warmup))
            queue, stop, bg = ctx.Queue(), ctx.Event(), None
            if scrapers:
                bg = ctx.Process(target=scraper_process,
                                 args=(port, token, encoding, stop, scrapers, args.client_cpu, queue))
                bg.start()
                time.sleep(1.0)  # the scrapers are busy before the measurement starts
            try:
                try:
                    closed = run_async(run_load(port, probe_key, "closed", [body], args.concurrency, 10**9,
                                                args.seconds, 0)).row()
                except (asyncio.IncompleteReadError, ConnectionError) as exc:  # closed by the server
                    print(f"# closed-loop run failed: {exc!r}", flush=True)
                    closed = Result("closed", args.concurrency, errors=1).row()
                paced, given_up = run_async(run_paced(port, probe_key, body, args.rate, args.seconds))
                paced = paced.row() | {"given_up": given_up}
            finally:
                stop.set()
            bg_row = None
            if bg is not None:
                bg_row = queue.get(timeout=600)
                bg.join()
            for q in (closed, paced):
                query_rows.append(q | {"tenants": tenants, "scrapers": scrapers, "encoding": encoding,
                                       "scrape": bg_row})
        info["load_after"] = load_average()
    finally:
        stop_server(proc, workdir)
    failed = sum(c for phase in codes.values() for s, c in phase.items() if s not in (200, 201, 422))
    expected_422 = codes["traffic"].get(422, 0) == tenants
    info["failed_preparation"] = failed + (0 if expected_422 else 1)
    return scrape_rows, query_rows, info


def scrape_table(rows: list[dict]) -> str:
    header = ("tenants", "Accept-Encoding", "scrapes", "errors", "body bytes", "p50 ms", "p99 ms", "max ms",
              "server ms/scrape")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        enc = r["encoding"] + ("" if r["gzip_response"] or r["encoding"] == "identity" else " (ignored)")
        lines.append(f"| {r['tenants']:,} | {enc} | {r['requests']} | {r['errors']} | {r['bytes']:,} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['server_mean_ms']:.1f} |")
    return "\n".join(lines)


def query_table(rows: list[dict]) -> str:
    header = ("tenants", "scrapers", "scrape encoding", "load", "queries", "errors", "q/s", "p50 ms", "p99 ms",
              "max ms", "scrapes done", "scrape p50 ms", "scrape p99 ms")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        s = r["scrape"]
        scr = (f"{s['requests']} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f}" if s else "- | - | -")
        load = "closed, c=%d" % r["concurrency"] if r["scenario"] == "closed" else r["scenario"]
        gave_up = f" ({r['given_up']} unanswered)" if r.get("given_up") else ""
        lines.append(f"| {r['tenants']:,} | {r['scrapers']} | {r['encoding']} | {load} | {r['requests']}{gave_up} | "
                     f"{r['errors']} | "
                     f"{r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} | {scr} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=sys.executable, help="interpreter that has aetherlink installed")
    p.add_argument("--tenants", default="100,1000,10000", help="tenant counts, one service start each")
    p.add_argument("--scrapers", type=int, default=4, help="concurrent scraping clients during the query runs")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase")
    p.add_argument("--scrapes", type=int, default=50, help="max idle scrapes per encoding")
    p.add_argument("--concurrency", type=int, default=1, help="concurrent query clients (closed loop)")
    p.add_argument("--rate", type=float, default=200.0, help="queries per second of the open-loop run")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--json", help="also write the results to this file")
    p.set_defaults(impl="auto")  # app_bench.start_server: the real entry point, python -m aetherlink
    args = p.parse_args()

    # as app_bench: CPUs that do not exist here are not pinned; the client never shares the server's
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    args.server_cpu = args.server_cpu if args.server_cpu in usable else None
    args.client_cpu = args.client_cpu if args.client_cpu in usable - {args.server_cpu} else None
    pin_here(args.client_cpu)
    print(f"# server on cpu {args.server_cpu}, client on cpu {args.client_cpu}, client loop={client_loop_name()}, "
          f"python {platform.python_version()}, {os.cpu_count()} cpus; load average before: {load_average()}",
          flush=True)

    scrape_rows: list[dict] = []
    query_rows: list[dict] = []
    infos: list[dict] = []
    for tenants in (int(t) for t in args.tenants.split(",")):
        s, q, info = measure(args, tenants)
        scrape_rows += s
        query_rows += q
        infos.append(info)
        print(scrape_table(s) + "\n\n" + query_table(q) + "\n", flush=True)

    print(f"# load average after: {load_average()}\n")
    tables = scrape_table(scrape_rows) + "\n\n" + query_table(query_rows)
    print(tables)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": infos, "scrapes": scrape_rows, "queries": query_rows,
                       "tables": tables}, f, indent=2)
    failed = (sum(r["errors"] for r in scrape_rows + query_rows)
              + sum(r["scrape"]["errors"] for r in query_rows if r["scrape"])
              + sum(i["failed_preparation"] for i in infos))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
