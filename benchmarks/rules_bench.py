#!/usr/bin/env python3
"""Rule evaluation cost of the AetherLink rules: recorded vs raw (issue 11).

Generates a TSDB of the app's metric families for N tenants x M instances
(OpenMetrics text in time chunks -> `promtool tsdb create-blocks-from
openmetrics`), then runs real Prometheus servers side by side on (hardlinked)
copies of it, one rule set each, and reads `prometheus_rule_group_last_duration_seconds`
per group over several evaluation cycles. Also: the enhanced dashboard's panel
queries (recorded vs raw, one refresh = every panel's query_range) and the
30-day billing rule vs a raw [30d] range. See benchmarks/README.md,
"Rule evaluation cost".

    .venv/bin/python benchmarks/rules_bench.py --tenants 100,1000
    .venv/bin/python benchmarks/rules_bench.py --tenants 10000 --parts rules
    .venv/bin/python benchmarks/rules_bench.py --ref HEAD   # also the rules of a git revision

Standard library + pyyaml. The prometheus binary is Debian bookworm's (2.42),
unpacked by `scripts/setup.sh --bench` into .cache/bench/bin.
"""

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
PROMETHEUS = CACHE / "bin" / "prometheus"
PROMTOOL = ROOT / ".venv" / "bin" / "promtool"
ANSIBLE_PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
GEN_VERSION = 3  # bump when the generated data changes shape
PORTS = range(19101, 19200)

# app/src/aetherlink/metrics.py DURATION_BUCKETS, plus +Inf
BUCKETS = ("0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0",
           "2.5", "5.0", "+Inf")
# Share of queries at or under each bound: healthy (cached ~5 ms, fresh ~50 ms,
# 0.1 % over 1 s) and degraded (20 % over 1 s: both latency burn-rate alerts fire).
CDF_OK = (0.0, 0.01, 0.1, 0.5, 0.55, 0.6, 0.8, 0.95, 0.98, 0.99, 0.999, 0.9995, 0.9999, 1.0)
CDF_BAD = (0.0, 0.005, 0.05, 0.1, 0.12, 0.15, 0.3, 0.45, 0.55, 0.65, 0.8, 0.9, 0.97, 1.0)
# Codes pre-created for a tenant on route query (docs/metrics.md), share of queries.
TENANT_CODES = (("200", None), ("400", 0.002), ("413", 0.0002), ("415", 0.0002), ("422", 0.003), ("500", None))
# _unknown: route -> codes pre-created (docs/metrics.md); some traffic on healthz/metrics.
UNKNOWN_CODES = {
    "query": ("400", "401", "405", "413", "415", "422", "500"),
    "admin_tenants": ("200", "201", "400", "401", "405", "409", "413", "415", "422", "503"),
    "admin_tenant": ("200", "400", "401", "404", "405", "503"),
    "admin_documents": ("200", "400", "401", "404", "405", "413", "415", "422", "503"),
    "admin_document": ("200", "400", "401", "404", "405", "503"),
    "healthz": ("200", "405", "503"),
    "metrics": ("200", "401", "405"),
    "unmatched": ("404",),
}
UNKNOWN_RATES = {("healthz", "200"): 0.1, ("metrics", "200"): 1 / 15, ("query", "401"): 0.01, ("unmatched", "404"): 0.005}


def log(*args):
    print("[%s]" % time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def parse_duration(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total = 0.0
    for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w)", str(text)):
        total += int(n) * units[u]
    if total <= 0:
        raise ValueError("not a duration: %r" % text)
    return total


def fmt_duration(seconds):
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


# --------------------------------------------------------------------------------------------
# Tools and rules
# --------------------------------------------------------------------------------------------

def ensure_prometheus():
    if not PROMETHEUS.exists() or not PROMTOOL.exists():
        log("unpacking prometheus from Debian's package: scripts/setup.sh --bench")
        subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--bench"], check=True)
    out = subprocess.run([str(PROMETHEUS), "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


def shared_defaults():
    return yaml.safe_load((ROOT / "roles" / "aetherlink" / "defaults" / "main.yml").read_text())


def render_rules(out_dir, tree=ROOT):
    """Render the prometheus role's rule templates with the default variables
    (as tests/rules/render.yml does, no fixture overrides)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(ANSIBLE_PLAYBOOK), "tests/rules/render.yml", "-e", "out_dir=%s" % out_dir,
           "-e", "aetherlink_environment=bench", "-e", "aetherlink_web_auth_enabled=false"]
    env = dict(os.environ, ANSIBLE_CONFIG=str(tree / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit("rendering the rules failed:\n" + proc.stdout[-3000:] + proc.stderr[-2000:])
    return [out_dir / "aetherlink.rules.yml", out_dir / "aetherlink.alerts.yml"]


def render_ref(ref, out_dir):
    """The rules of a git revision: its tree exported to a temporary directory."""
    tmp = Path(tempfile.mkdtemp(prefix="ref.", dir=CACHE))
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    try:
        return [Path(shutil.copy(p, out_dir / p.name)) for p in render_rules(tmp / "_out", tree=tmp)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_groups(files):
    groups = []
    for f in files:
        groups.extend(yaml.safe_load(Path(f).read_text())["groups"])
    return groups


def raw_alert_groups(defaults, deployed_alert_groups, interval):
    """The seed's four alerts and the SLO burn-rate alerts written on raw series,
    with the same thresholds, `for`, labels and annotations as deployed."""
    d = defaults
    vip = d["aetherlink_vip_tenant_pattern"]
    deployed = {r["alert"]: r for g in deployed_alert_groups for r in g["rules"]}

    def sel(extra=""):
        return "{%s}" % extra if extra else ""

    def cache_ratio(m=""):
        return ("100 * sum by (tenant) (rate(aether_cache_hits_total%s[5m]))\n"
                "  / (sum by (tenant) (rate(aether_cache_requests_total%s[5m])) > 0)" % (sel(m), sel(m)))

    def lowconf(m=""):
        return ("100 * sum by (tenant) (rate(aether_rag_lowconfidence_total%s[15m]))\n"
                "  / (sum by (tenant) (rate(aether_rag_answers_total%s[15m])) > 0)" % (sel(m), sel(m)))

    vipm = 'tenant=~"%s"' % vip
    seed = [
        ("CacheEffectivenessDrop", "%s < %s" % (cache_ratio(), d["aetherlink_alert_cache_hit_ratio_min"])),
        ("LowConfidenceSpike", "%s > %s" % (lowconf(), d["aetherlink_alert_lowconfidence_max"])),
        ("LowConfidenceSpikeVIP", "%s > %s" % (lowconf(vipm), d["aetherlink_alert_lowconfidence_vip_max"])),
        ("CacheEffectivenessDropVIP", "%s < %s" % (cache_ratio(vipm), d["aetherlink_alert_cache_hit_ratio_vip_min"])),
    ]
    le = "1[.]0|1"
    thr = float(d["aetherlink_sla_latency_threshold_seconds"])
    if thr != 1.0:
        le = re.escape(repr(thr))

    def avail(window, m):
        return ('(sum by (tenant) (rate(aether_http_requests_total{tenant!="_unknown", code=~"5..", %s}[%s]))\n'
                '  / (sum by (tenant) (rate(aether_http_requests_total{tenant!="_unknown", %s}[%s])) > 0))'
                % (m, window, m, window))

    def latency(window, m):
        return ('(1 - sum by (tenant) (rate(aether_request_duration_seconds_bucket{tenant!="_unknown", route="query", le=~"%s", %s}[%s]))\n'
                '  / (sum by (tenant) (rate(aether_request_duration_seconds_count{tenant!="_unknown", route="query", %s}[%s])) > 0))'
                % (le, m, window, m, window))

    def burn(ratio, objective, objective_vip, factor, long_w, short_w):
        parts = []
        for m, obj in (('tenant!~"%s"' % vip, objective), ('tenant=~"%s"' % vip, objective_vip)):
            budget = round(1 - float(obj) / 100, 10)
            parts.append("(%s / %s > %s\n and on (tenant)\n %s / %s > %s)"
                         % (ratio(long_w, m), budget, factor, ratio(short_w, m), budget, factor))
        return "\n or\n".join(parts)

    slo = []
    for name, ratio, obj, obj_vip in (
            ("Availability", avail, d["aetherlink_sla_availability_objective_pct"],
             d["aetherlink_sla_availability_objective_vip_pct"]),
            ("Latency", latency, d["aetherlink_sla_latency_objective_pct"], d["aetherlink_sla_latency_objective_vip_pct"])):
        slo.append(("SLO%sFastBurn" % name, burn(ratio, obj, obj_vip, d["aetherlink_slo_fast_burn_factor"],
                                                   d["aetherlink_slo_fast_burn_long_window"],
                                                   d["aetherlink_slo_fast_burn_short_window"])))
        slo.append(("SLO%sSlowBurn" % name, burn(ratio, obj, obj_vip, d["aetherlink_slo_slow_burn_factor"],
                                                   d["aetherlink_slo_slow_burn_long_window"],
                                                   d["aetherlink_slo_slow_burn_short_window"])))

    def rules(pairs):
        out = []
        for name, expr in pairs:
            rule = {"alert": name, "expr": expr}
            for key in ("for", "labels", "annotations"):
                if key in deployed[name]:
                    rule[key] = deployed[name][key]
            out.append(rule)
        return out

    return [{"name": "raw_alerts", "interval": interval, "rules": rules(seed)},
            {"name": "raw_slo_alerts", "interval": interval, "rules": rules(slo)}]


# --------------------------------------------------------------------------------------------
# Data generation
# --------------------------------------------------------------------------------------------

class Tenant:
    __slots__ = ("name", "rate", "hit", "rerank", "lowconf", "err", "cdf", "degraded", "vip")


def make_tenants(n, seed=11):
    """n tenants: ~1 % VIP (vip-*/premium-*), ~2 % degraded (one VIP among
    them), ~3 % idle (series at 0); query rates log-normal, 0.01-5/s per instance."""
    rnd = random.Random(seed)
    n_vip = max(2, n // 100)
    n_bad = max(1, n // 50)
    n_idle = max(1, (n * 3) // 100)
    tenants = []
    for i in range(n):
        t = Tenant()
        if i < n_vip:
            t.name = ("vip-tenant-%05d" if i % 2 == 0 else "premium-tenant-%05d") % i
            t.vip = True
        else:
            t.name = "tenant-%05d" % i
            t.vip = False
        # degraded: the first VIP and the n_bad-1 tenants after the VIPs
        t.degraded = i == 0 or n_vip <= i < n_vip + n_bad - 1
        idle = n - n_idle <= i
        t.rate = 0.0 if idle else min(5.0, max(0.01, math.exp(rnd.gauss(-1.5, 1.0))))
        t.rerank = rnd.uniform(0.1, 0.6)
        if t.degraded:
            t.hit, t.lowconf, t.err, t.cdf = rnd.uniform(0.05, 0.2), rnd.uniform(0.25, 0.45), 0.1, CDF_BAD
            t.rate = max(t.rate, 0.2)
        else:
            t.hit, t.lowconf, t.err, t.cdf = rnd.uniform(0.45, 0.9), rnd.uniform(0.01, 0.08), 0.0005, CDF_OK
        tenants.append(t)
    return tenants


def series_specs(tenants, instances, epoch):
    """[(family, type, [(line prefix, rate per second, offset, is_float)])]: every
    series of the exposition; value(t) = offset + rate * (t - epoch)."""
    fam = {k: [] for k in ("aether_cache_requests", "aether_cache_hits", "aether_rag_answers",
                           "aether_rag_lowconfidence", "aether_http_requests", "aether_request_duration_seconds")}
    rnd = random.Random(7)
    for i in range(instances):
        inst = 'job="aether_app",instance="app-%d:8000"' % (i + 1)
        for t in tenants:
            tl = '%s,tenant="%s"' % (inst, t.name)
            r = t.rate * rnd.uniform(0.8, 1.2)
            ph = lambda: rnd.random()  # noqa: E731 - a phase, so floors differ between series
            fam["aether_cache_requests"].append(("aether_cache_requests_total{%s} " % tl, r, ph(), False))
            fam["aether_cache_hits"].append(("aether_cache_hits_total{%s} " % tl, r * t.hit, ph(), False))
            fam["aether_rag_answers"].append(('aether_rag_answers_total{%s,rerank="true"} ' % tl, r * t.rerank, ph(), False))
            fam["aether_rag_answers"].append(('aether_rag_answers_total{%s,rerank="false"} ' % tl, r * (1 - t.rerank), ph(), False))
            fam["aether_rag_lowconfidence"].append(("aether_rag_lowconfidence_total{%s} " % tl, r * t.lowconf, ph(), False))
            total = r
            for code, share in TENANT_CODES:
                if code == "200":
                    cr = r
                elif code == "500":
                    cr = r * t.err / (1 - t.err)
                else:
                    cr = r * share
                total += cr if code != "200" else 0
                fam["aether_http_requests"].append(
                    ('aether_http_requests_total{%s,route="query",code="%s"} ' % (tl, code), cr, ph(), False))
            hl = '%s,route="query"' % tl
            for le, share in zip(BUCKETS, t.cdf):
                fam["aether_request_duration_seconds"].append(
                    ('aether_request_duration_seconds_bucket{%s,le="%s"} ' % (hl, le), total * share, 0.5, False))
            fam["aether_request_duration_seconds"].append(
                ("aether_request_duration_seconds_count{%s} " % hl, total, 0.5, False))
            fam["aether_request_duration_seconds"].append(
                ("aether_request_duration_seconds_sum{%s} " % hl, total * (0.35 if t.degraded else 0.03), 0.0, True))
        ul = '%s,tenant="_unknown"' % inst
        for route, codes in UNKNOWN_CODES.items():
            rr = 0.0
            for code in codes:
                cr = UNKNOWN_RATES.get((route, code), 0.0)
                rr += cr
                fam["aether_http_requests"].append(
                    ('aether_http_requests_total{%s,route="%s",code="%s"} ' % (ul, route, code), cr, 0.5, False))
            hl = '%s,route="%s"' % (ul, route)
            for le, share in zip(BUCKETS, CDF_OK):
                fam["aether_request_duration_seconds"].append(
                    ('aether_request_duration_seconds_bucket{%s,le="%s"} ' % (hl, le), rr * share, 0.5, False))
            fam["aether_request_duration_seconds"].append(("aether_request_duration_seconds_count{%s} " % hl, rr, 0.5, False))
            fam["aether_request_duration_seconds"].append(("aether_request_duration_seconds_sum{%s} " % hl, rr * 0.002, 0.0, True))
    types = {"aether_request_duration_seconds": "histogram"}
    return [(name, types.get(name, "counter"), specs) for name, specs in fam.items()]


def write_chunk(path, families, stamps, epoch, extra=None):
    """One OpenMetrics file: every series over `stamps` (list of (t, ' t\\n'))."""
    rel = [t - epoch for t, _ in stamps]
    suffixes = [s for _, s in stamps]
    with open(path, "w", buffering=1 << 22) as out:
        for name, mtype, specs in families:
            out.write("# TYPE %s %s\n" % (name, mtype))
            for prefix, rate, offset, is_float in specs:
                if is_float:
                    out.write("".join([prefix + ("%.3f" % (offset + rate * x)) + s for x, s in zip(rel, suffixes)]))
                elif rate == 0.0:
                    v = prefix + str(int(offset))
                    out.write("".join([v + s for s in suffixes]))
                else:
                    out.write("".join([prefix + str(int(offset + rate * x)) + s for x, s in zip(rel, suffixes)]))
        if extra:
            extra(out)
        out.write("# EOF\n")


def create_blocks(files_iter, data_dir, max_block="2h"):
    """Generate the chunk files one by one and backfill each while the next is written."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pending = None
    for path in files_iter:
        if pending:
            _wait_promtool(*pending)
        proc = subprocess.Popen([str(PROMTOOL), "tsdb", "create-blocks-from", "openmetrics",
                                 "--max-block-duration=%s" % max_block, str(path), str(data_dir)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        pending = (proc, path)
    if pending:
        _wait_promtool(*pending)


def _wait_promtool(proc, path):
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit("promtool create-blocks failed on %s: %s" % (path, err.decode()[-2000:]))
    os.unlink(path)


def main_tsdb(n, instances, step, history):
    """The cached TSDB of the app's metrics, from now - history - 20m to now:
    returns (dir, meta, families). A cached one is extended to now by
    extend_tsdb() before each use (blocks end just before the servers start, so
    that what they scrape and record is in order)."""
    key = "main-n%d-m%d-s%d-h%s-v%d" % (n, instances, step, fmt_duration(history), GEN_VERSION)
    d = CACHE / "tsdb" / key
    meta_file = d / "bench-meta.json"
    tenants = make_tenants(n)
    now = time.time()
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        families = series_specs(tenants, instances, meta["epoch"])
        if now - meta["end"] <= 4 * 3600:
            log("reusing %s (data until %s)" % (d.name, time.strftime("%H:%M", time.localtime(meta["end"]))))
            return d, meta, families
        log("%s is old: regenerating" % d.name)
    shutil.rmtree(d, ignore_errors=True)
    end = int(now)
    start = (end - int(history) - 20 * 60) // step * step  # plus 15m for the 15m windows, and a margin
    epoch = start - 86400  # the app's processes started a day earlier: counters are not at 0
    families = series_specs(tenants, instances, epoch)
    nseries = sum(len(x) for _, _, x in families)
    meta = {"start": start, "end": start, "epoch": epoch, "tenants": n, "instances": instances, "step": step,
            "series": nseries, "vip": [t.name for t in tenants if t.vip],
            "degraded": [t.name for t in tenants if t.degraded], "some_tenant": tenants[len(tenants) // 2].name}
    log("generating %s: %d tenants x %d instances = %d series, %s at %ds (%d samples)"
        % (key, n, instances, nseries, fmt_duration(end - start), step, nseries * ((end - start) // step)))
    t0 = time.time()
    extend_tsdb(d, meta, families, until=end)
    meta["generated_in_s"] = round(time.time() - t0, 1)
    meta_file.write_text(json.dumps(meta, indent=1))
    log("generated %s in %.0f s" % (key, time.time() - t0))
    return d, meta, families


def block_spans(start, end, block):
    """(k, lo, hi) for the k-th block-aligned span of [start, end): one file of
    samples each, numbered from the block that holds start."""
    c = start // block * block
    k = 0
    while c < end:
        yield k, max(c, start), min(c + block, end)
        c += block
        k += 1


def extend_tsdb(d, meta, families, until=None):
    """Backfill the samples from meta['end'] to `until` (default: now), in
    files of at most one 2h block each, while the next file is written."""
    until = int(until or time.time())
    lo_all, step, instances = meta["end"], meta["step"], meta["instances"]
    if until - lo_all < 1:
        return
    block = 7200

    def chunks():
        for k, lo, hi in block_spans(lo_all, until, block):
            per_inst = {}
            for i in range(instances):
                off = 2 + 5 * i  # each instance is scraped at its own offset
                first = (lo - off + step - 1) // step * step + off
                per_inst[i] = [(t, " %d\n" % t) for t in range(first, hi, step)]
            if any(per_inst.values()):
                path = CACHE / "tsdb" / ("%s.chunk%03d.om" % (d.name, k))
                _write_instances(path, families, per_inst, meta["epoch"])
                yield path

    create_blocks(chunks(), d / "data")
    meta["end"] = until
    (d / "bench-meta.json").write_text(json.dumps(meta, indent=1))


def _write_instances(path, families, per_inst, epoch):
    """One OpenMetrics file; each series gets the stamps of its instance."""
    with open(path, "w", buffering=1 << 22) as out:
        for name, mtype, specs in families:
            out.write("# TYPE %s %s\n" % (name, mtype))
            for prefix, rate, offset, is_float in specs:
                i = int(prefix.split('instance="app-', 1)[1].split(":", 1)[0]) - 1
                stamps = per_inst[i]
                if is_float:
                    out.write("".join([prefix + ("%.3f" % (offset + rate * (t - epoch))) + s for t, s in stamps]))
                elif rate == 0.0:
                    v = prefix + str(int(offset))
                    out.write("".join([v + s for _, s in stamps]))
                else:
                    out.write("".join([prefix + str(int(offset + rate * (t - epoch))) + s for t, s in stamps]))
        out.write("# EOF\n")


class Exporter:
    """The same series, live: /metrics answers every series' value at the time
    of the scrape (the text format, job and instance labels included: scraped
    with honor_labels), so the servers' heads continue the backfilled blocks."""

    def __init__(self, families, epoch, step):
        import http.server
        import threading
        specs = [x for _, _, group in families for x in group]
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                body = exporter.current()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:  # the scrape timed out
                    pass

            def log_message(self, *args):
                pass

        self.specs, self.epoch, self.step = specs, epoch, step
        self.lock = threading.Lock()
        self.cached = (None, b"")
        self.port = free_ports(1)[0]
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def current(self):
        """The body for this scrape interval: built once per interval (at 10k
        tenants it takes seconds) and served to every server."""
        with self.lock:
            slot = int(time.time() // self.step)
            if self.cached[0] != slot:
                self.cached = (slot, self.body(time.time()).encode())
            return self.cached[1]

    def body(self, now):
        x = now - self.epoch
        return "".join([(prefix + ("%.3f" % (off + rate * x)) if is_float else prefix + str(int(off + rate * x))) + "\n"
                        for prefix, rate, off, is_float in self.specs])

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------------------------
# Prometheus servers
# --------------------------------------------------------------------------------------------

class Server:
    def __init__(self, name, port, data_src, rule_groups, eval_interval, workdir, extra_blocks=(), scrape=None):
        self.name, self.port = name, port
        self.dir = workdir / name
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "data").mkdir(parents=True)
        for src in [data_src, *extra_blocks]:
            for blk in Path(src).iterdir():
                if (blk / "meta.json").exists():
                    subprocess.run(["cp", "-al", str(blk), str(self.dir / "data" / blk.name)], check=True)
        (self.dir / "rules.yml").write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False, width=1000))
        config = {"global": {"scrape_interval": "15s", "evaluation_interval": eval_interval},
                  "rule_files": ["rules.yml"]}
        if scrape:  # (port, interval): the exporter of the live series
            config["scrape_configs"] = [{"job_name": "aether_app", "honor_labels": True,
                                         "scrape_interval": "%ds" % scrape[1], "scrape_timeout": "%ds" % min(30, scrape[1]),
                                         "static_configs": [{"targets": ["127.0.0.1:%d" % scrape[0]]}]}]
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        check = subprocess.run([str(PROMTOOL), "check", "config", str(self.dir / "prometheus.yml")],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit("%s: invalid config/rules:\n%s%s" % (name, check.stdout, check.stderr))
        self.proc = None

    def start(self):
        self.log = open(self.dir / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [str(PROMETHEUS), "--config.file=%s" % (self.dir / "prometheus.yml"),
             "--storage.tsdb.path=%s" % (self.dir / "data"), "--web.listen-address=127.0.0.1:%d" % self.port,
             "--storage.tsdb.retention.time=3650d", "--storage.tsdb.max-block-duration=2h",
             "--storage.tsdb.min-block-duration=2h", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def url(self, path, **params):
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        return "http://127.0.0.1:%d%s%s" % (self.port, path, q)

    def get(self, path, timeout=600, **params):
        with urllib.request.urlopen(self.url(path, **params), timeout=timeout) as r:
            return r.read().decode()

    def api(self, path, timeout=600, **params):
        return json.loads(self.get(path, timeout=timeout, **params))

    def wait_ready(self, timeout=300):
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise SystemExit("%s exited: see %s" % (self.name, self.dir / "prometheus.log"))
            try:
                self.get("/-/ready", timeout=5)
                return
            except Exception:
                time.sleep(0.5)
        raise SystemExit("%s not ready after %ds" % (self.name, timeout))

    def group_metrics(self):
        """{group: (last evaluation timestamp, last duration s)} from /metrics."""
        text = self.get("/metrics", timeout=30)
        out = {}
        for line in text.splitlines():
            m = re.match(r'prometheus_rule_group_last_(duration_seconds|evaluation_timestamp_seconds)\{rule_group="[^;"]*;([^"]+)"\} (\S+)', line)
            if m:
                kind, group, value = m.groups()
                ts, dur = out.get(group, (None, None))
                if kind == "duration_seconds":
                    dur = float(value)
                else:
                    ts = float(value)
                out[group] = (ts, dur)
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def measure(servers, cycles, warmup, timeout):
    """Median last duration per (server, group) over `cycles` evaluations after
    `warmup`; also per rule (from /api/v1/rules) and samples of failures."""
    seen = {}  # (server, group) -> [durations]
    last_ts = {}
    rule_times = {}  # (server, group, idx, name) -> [s]
    t_end = time.time() + timeout
    while time.time() < t_end:
        done = True
        for s in servers:
            try:
                gm = s.group_metrics()
            except Exception:
                done = False
                continue
            changed = False
            for g, (ts, dur) in gm.items():
                key = (s.name, g)
                if ts and ts > 0 and last_ts.get(key) != ts:
                    last_ts[key] = ts
                    seen.setdefault(key, []).append(dur)
                    changed = True
                if len(seen.get(key, [])) < warmup + cycles:
                    done = False
            if changed:
                try:
                    for grp in s.api("/api/v1/rules", timeout=30)["data"]["groups"]:
                        for idx, r in enumerate(grp["rules"]):
                            k = (s.name, grp["name"], idx, r.get("name"))
                            lst = rule_times.setdefault(k, [])
                            if not lst or lst[-1][0] != r.get("lastEvaluation"):
                                lst.append((r.get("lastEvaluation"), r.get("evaluationTime", 0.0), r.get("health")))
                except Exception:
                    pass
        if done and seen:
            break
        time.sleep(1.0)
    result = {}
    for key, durs in seen.items():
        use = durs[warmup:warmup + cycles] or durs[-1:]
        result[key] = {"median_s": statistics.median(use), "n": len(use), "min_s": min(use), "max_s": max(use)}
    rules = {}
    for (srv, g, idx, name), lst in rule_times.items():
        vals = [v for _, v, _ in lst[warmup:]] or [v for _, v, _ in lst]
        rules[(srv, g, idx, name)] = {"median_s": statistics.median(vals), "health": lst[-1][2]}
    return result, rules


def free_ports(k):
    import socket
    found = []
    for p in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", p))
            except OSError:
                continue
        found.append(p)
        if len(found) == k:
            return found
    raise SystemExit("no free ports in 19101-19199")


def retime(groups, interval):
    out = []
    for g in groups:
        g = dict(g)
        g["interval"] = interval
        out.append(g)
    return out


# --------------------------------------------------------------------------------------------
# Part 1: rule groups
# --------------------------------------------------------------------------------------------

def bench_rules(args, n, tsdb_dir, meta, families, rule_sets, workdir):
    """rule_sets: {name: [groups as deployed]}. Two phases, the servers of a
    phase side by side: (1) the groups deployed at intervals up to
    --slow-threshold (the 30s groups and the 2m long-window SLO group) with
    every set's server running at once; (2) the hourly and 30-day groups, which
    run rarely in production, on servers of their own, so that evaluating them
    every --bench-interval does not load the servers of phase 1. Returns rows."""
    slow = parse_duration(args.slow_threshold)
    phases = []
    for phase in (1, 2):
        sets = {}
        for name, groups in rule_sets.items():
            pick = [g for g in groups
                    if (parse_duration(g.get("interval", args.evaluation_interval)) <= slow) == (phase == 1)]
            if pick:
                sets[name if phase == 1 else name + "-slow"] = (name, pick)
        if sets:
            phases.append(sets)
    rows, rule_rows, loads = [], [], []
    exporter = Exporter(families, meta["epoch"], meta["step"])
    try:
        for phase, sets in enumerate(phases, 1):
            extend_tsdb(tsdb_dir, meta, families)
            _bench_phase(args, n, tsdb_dir, meta, workdir, exporter, phase, sets, rows, rule_rows, loads)
    finally:
        exporter.close()
    rows.sort(key=lambda r: (r["set"], r["phase"], r["group"]))
    return rows, rule_rows, loads


def _bench_phase(args, n, tsdb_dir, meta, workdir, exporter, phase, sets, rows, rule_rows, loads):
    ports = free_ports(len(sets))
    servers, deployed_interval = [], {}
    for (sname, (name, groups)), port in zip(sets.items(), ports):
        for g in groups:
            deployed_interval[(sname, g["name"])] = parse_duration(g.get("interval", args.evaluation_interval))
        servers.append(Server(sname, port, tsdb_dir / "data", retime(groups, args.bench_interval),
                              args.evaluation_interval, workdir, scrape=(exporter.port, meta["step"])))
    load_before = loadavg()
    cycles, warmup = (args.cycles, args.warmup) if phase == 1 else (max(1, args.cycles // 2), 1)
    try:
        for s in servers:
            s.start()
        for s in servers:
            s.wait_ready()
        log("phase %d: %d servers up (%s); measuring %d cycles after %d warm-up, every group at %s"
            % (phase, len(servers), ", ".join("%s:%d" % (s.name, s.port) for s in servers), cycles, warmup,
               args.bench_interval))
        res, rules = measure(servers, cycles, warmup, args.timeout)
        failures = {}
        for s in servers:
            for line in s.get("/metrics").splitlines():
                m = re.match(r'prometheus_rule_evaluation_failures_total\{rule_group="[^;"]*;([^"]+)"\} (\S+)', line)
                if m and float(m.group(2)) > 0:
                    failures[(s.name, m.group(1))] = float(m.group(2))
            bad = [line for line in s.get("/metrics").splitlines()
                   if re.match(r"prometheus_tsdb_out_of_bound_samples_total\S* [1-9]", line)]
            up = s.api("/api/v1/query", query="up")["data"]["result"]
            if bad or not up or up[0]["value"][1] != "1":
                log("WARNING %s: scrape up=%s, %s" % (s.name, up and up[0]["value"][1], bad))
            alerts = s.api("/api/v1/alerts")["data"]["alerts"]
            if alerts:
                log("%s: %d active alerts (%s)" % (s.name, len(alerts),
                                                   ", ".join(sorted({a["labels"]["alertname"] for a in alerts}))))
    finally:
        for s in servers:
            s.stop()
        for s in servers:
            s.cleanup()
    loads.append("phase %d: %s / %s" % (phase, load_before, loadavg()))
    for (srv, g), r in sorted(res.items()):
        iv = deployed_interval.get((srv, g))
        if iv is None:
            continue
        name, groups = sets[srv]
        nrules = len(next(gg for gg in groups if gg["name"] == g)["rules"])
        rows.append({"tenants": n, "set": name, "phase": phase, "group": g, "rules": nrules, "interval_s": iv,
                     "ms_per_eval": r["median_s"] * 1000, "min_ms": r["min_s"] * 1000, "max_ms": r["max_s"] * 1000,
                     "evals": r["n"], "ms_per_min": r["median_s"] * 1000 * 60 / iv,
                     "failures": failures.get((srv, g), 0)})
    rule_rows.extend([{"tenants": n, "set": sets[srv][0], "group": g, "idx": idx, "name": name,
                   "ms_per_eval": v["median_s"] * 1000, "health": v["health"]}
                  for (srv, g, idx, name), v in sorted(rules.items())])


def print_rule_tables(rows, rule_rows, loads, n, compare):
    print("\n### Rule groups, %d tenants (load average before / after: %s)\n" % (n, "; ".join(loads)))
    print("| set | group | rules | interval (deployed) | ms per eval (median, min-max) | ms per minute |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %d | %s | %.1f (%.1f-%.1f) | %.1f |%s" % (
            r["set"], r["group"], r["rules"], fmt_duration(r["interval_s"]), r["ms_per_eval"], r["min_ms"],
            r["max_ms"], r["ms_per_min"], " failures: %d" % r["failures"] if r["failures"] else ""))
    totals = {}
    for r in rows:
        totals.setdefault(r["set"], 0.0)
        totals[r["set"]] += r["ms_per_min"]
    raw = totals.get("raw")
    print()
    print("| set | total ms per minute | vs raw alerts |")
    print("|---|---|---|")
    for s, tot in totals.items():
        print("| %s | %.1f | %s |" % (s, tot, ("%.2fx" % (tot / raw)) if raw else "-"))
    by = {(r["set"], r["group"]): r for r in rows}
    summary = {}
    for s in compare:
        if ("raw", "raw_alerts") in by and (s, "aetherlink_alerts") in by:
            a = by[(s, "aetherlink_alerts")]["ms_per_eval"] / by[("raw", "raw_alerts")]["ms_per_eval"]
            b = by[(s, "aetherlink_slo_alerts")]["ms_per_eval"] / by[("raw", "raw_slo_alerts")]["ms_per_eval"]
            both = ((by[(s, "aetherlink_alerts")]["ms_per_eval"] + by[(s, "aetherlink_slo_alerts")]["ms_per_eval"])
                    / (by[("raw", "raw_alerts")]["ms_per_eval"] + by[("raw", "raw_slo_alerts")]["ms_per_eval"]))
            summary[s] = {"seed_alerts_vs_raw": a, "slo_alerts_vs_raw": b, "alerts_vs_raw": both,
                          "total_vs_raw_alerts": totals[s] / raw}
            print("\n%s: seed alert group %.3fx raw (%.1fx faster), SLO alert group %.3fx raw (%.1fx faster), "
                  "both %.3fx; recording + alerts per minute %.2fx the raw alerts"
                  % (s, a, 1 / a, b, 1 / b, both, totals[s] / raw))
    # the most expensive rules
    print("\nMost expensive rules per evaluation (median):\n")
    print("| set | group | record/alert | ms per eval |")
    print("|---|---|---|---|")
    for r in sorted(rule_rows, key=lambda x: -x["ms_per_eval"])[:20]:
        print("| %s | %s | %s | %.1f |" % (r["set"], r["group"], r["name"], r["ms_per_eval"]))
    return summary


# --------------------------------------------------------------------------------------------
# Part 2: dashboard refresh
# --------------------------------------------------------------------------------------------

def dashboard_raw_records(defaults):
    """The enhanced dashboard's records written on raw series ($tenant: the
    tenant matcher placeholder, "" for all tenants)."""
    def m(extra, tenant):
        parts = [p for p in (extra, 'tenant=~"%s"' % tenant if tenant is not None else "") if p]
        return "{%s}" % ", ".join(parts) if parts else ""

    def cache(t):
        return ("100 * sum by (tenant) (rate(aether_cache_hits_total%s[5m])) / (sum by (tenant) (rate(aether_cache_requests_total%s[5m])) > 0)"
                % (m("", t), m("", t)))

    def rerank(t):
        return ('100 * sum by (tenant) (rate(aether_rag_answers_total%s[15m])) / (sum by (tenant) (rate(aether_rag_answers_total%s[15m])) > 0)'
                % (m('rerank="true"', t), m("", t)))

    def lowconf(t):
        return ("100 * sum by (tenant) (rate(aether_rag_lowconfidence_total%s[15m])) / (sum by (tenant) (rate(aether_rag_answers_total%s[15m])) > 0)"
                % (m("", t), m("", t)))

    def reqs(t):
        return 'sum by (tenant) (rate(aether_http_requests_total%s[5m]))' % m('tenant!="_unknown"', t)

    def errs(t):
        return ('100 * sum by (tenant) (rate(aether_http_requests_total%s[5m])) / (sum by (tenant) (rate(aether_http_requests_total%s[5m])) > 0)'
                % (m('tenant!="_unknown", code=~"5.."', t), m('tenant!="_unknown"', t)))

    def pq(q):
        return lambda t: ('histogram_quantile(%s, sum by (tenant, le) (rate(aether_request_duration_seconds_bucket%s[5m]))) >= 0'
                          % (q, m('tenant!="_unknown", route="query"', t)))

    def total(f):
        return lambda t: "sum(" + f(t).replace("sum by (tenant) ", "sum ").replace("100 * ", "100 * ", 1) + ")"

    def all_ratio(num, den, win):
        return "100 * sum(rate(%s[%s])) / (sum(rate(%s[%s])) > 0)" % (num, win, den, win)

    d = defaults

    def thr(names):
        vals = {"CacheEffectivenessDrop": d["aetherlink_alert_cache_hit_ratio_min"],
                "CacheEffectivenessDropVIP": d["aetherlink_alert_cache_hit_ratio_vip_min"],
                "LowConfidenceSpike": d["aetherlink_alert_lowconfidence_max"],
                "LowConfidenceSpikeVIP": d["aetherlink_alert_lowconfidence_vip_max"]}
        return " or ".join('label_replace(vector(%s), "alertname", "%s", "", "")' % (vals[n], n) for n in names)

    records = {  # record name -> function(tenant or None) -> raw expr
        "aether:cache_hit_ratio:5m": cache,
        "aether:lowconfidence_pct:15m": lowconf,
        "aether:rerank_utilization_pct:15m": rerank,
        "aether:http_requests:rate5m": reqs,
        "aether:http_error_ratio_pct:5m": errs,
        "aether:request_latency_seconds:p50_5m": pq("0.5"),
        "aether:request_latency_seconds:p90_5m": pq("0.9"),
        "aether:request_latency_seconds:p99_5m": pq("0.99"),
    }
    alls = {
        "aether:cache_hit_ratio:5m:all": all_ratio("aether_cache_hits_total", "aether_cache_requests_total", "5m"),
        "aether:lowconfidence_pct:15m:all": all_ratio("aether_rag_lowconfidence_total", "aether_rag_answers_total", "15m"),
        "aether:rerank_utilization_pct:15m:all": all_ratio('aether_rag_answers_total{rerank="true"}', "aether_rag_answers_total", "15m"),
    }
    return records, alls, thr


def dashboard_queries(defaults):
    """[(title, recorded expr with $tenant, raw expr with $tenant, instant)] of the enhanced dashboard."""
    sys.path.insert(0, str(ROOT))
    from dashboards import queries as dq  # noqa: E402
    dash = json.loads((ROOT / "roles" / "grafana" / "files" / "dashboards" /
                       "aetherlink_rag_tenant_metrics_enhanced.json").read_text())
    records, alls, thr = dashboard_raw_records(defaults)
    instant = {}
    for p in dq.iter_panels(dash):
        for t in p.get("targets") or []:
            instant[(p.get("title"), t.get("refId"))] = bool(t.get("instant")) and not t.get("range")
    out = []
    for q in dq.panel_queries(dash):
        expr = q.expr
        raw = None
        m = re.fullmatch(r'(sum by \(tenant\) \()?(aether:[a-z0-9_:]+)\{tenant=~"\$tenant"\}(\))?', expr)
        if m and m.group(2) in records:
            raw = records[m.group(2)]("$tenant")
            if m.group(1):
                raw = "sum by (tenant) (%s)" % raw
        elif expr in alls:
            raw = alls[expr]
        elif expr.startswith("aether:alert_threshold_pct"):
            names = re.search(r'alertname=~"([^"]+)"', expr).group(1).split("|")
            raw = thr(names)
        elif expr.startswith("ALERTS"):
            raw = expr  # the alert state exists only as ALERTS, in both worlds
        if raw is None:
            raise SystemExit("no raw equivalent for panel %r: %s" % (q.title, expr))
        out.append((q.title + " " + q.ref_id, expr, raw, instant[(q.title, q.ref_id)]))
    return out, dash, dq


def backfill_records(args, n, tsdb_dir, meta, defaults, workdir):
    """Blocks of the dashboard's records over the last dashboard range (+15m),
    evaluated every prometheus_rules_interval by `promtool tsdb
    create-blocks-from rules` against a server on the raw data. Cached."""
    key = "records-" + tsdb_dir.name
    out = CACHE / "tsdb" / key
    stamp = out / "bench-meta.json"
    if stamp.exists() and json.loads(stamp.read_text())["source_end"] == meta["end"]:
        return out / "blocks"
    shutil.rmtree(out, ignore_errors=True)
    (out / "blocks").mkdir(parents=True)
    records, alls, _ = dashboard_raw_records(defaults)
    rules = [{"record": r, "expr": f(None)} for r, f in records.items()]
    rules += [{"record": r, "expr": e} for r, e in alls.items()]
    rules_file = out / "records.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard_records", "interval": "30s",
                                                       "rules": rules}]}, sort_keys=False, width=1000))
    port = free_ports(1)[0]
    srv = Server("backfill", port, tsdb_dir / "data", [], args.evaluation_interval, workdir).start()
    try:
        srv.wait_ready()
        now = int(time.time())
        start = now - int(parse_duration(args.dashboard_range)) - 900
        t0 = time.time()
        log("backfilling %d dashboard records (%s + 15m, every 30s) with promtool create-blocks-from rules"
            % (len(rules), args.dashboard_range))
        proc = subprocess.run([str(PROMTOOL), "tsdb", "create-blocks-from", "rules", "--start=%d" % start,
                               "--end=%d" % (now + 60), "--eval-interval=30s", "--url=http://127.0.0.1:%d" % port,
                               "--output-dir=%s" % (out / "blocks"), str(rules_file)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit("create-blocks-from rules failed: " + proc.stdout[-2000:] + proc.stderr[-2000:])
        log("backfilled in %.0f s" % (time.time() - t0))
    finally:
        srv.stop()
        srv.cleanup()
    stamp.write_text(json.dumps({"source_end": meta["end"], "start": start, "end": now + 60}))
    return out / "blocks"


def bench_dashboard(args, n, tsdb_dir, meta, families, defaults, workdir):
    panels, dash, dq = dashboard_queries(defaults)
    extend_tsdb(tsdb_dir, meta, families)
    blocks = backfill_records(args, n, tsdb_dir, meta, defaults, workdir)
    port = free_ports(1)[0]
    # the ALERTS series come from the deployed alerts, running at the bench interval
    srv = Server("dashboard", port, tsdb_dir / "data", [], args.evaluation_interval, workdir,
                 extra_blocks=[blocks]).start()
    rows = []
    try:
        srv.wait_ready()
        rng = parse_duration(args.dashboard_range)
        step = args.dashboard_step
        some = meta["some_tenant"]
        for tenant_label, tenant in (("All", dq.ALL_VALUE), ("one tenant", some)):
            times = {"recorded": [], "raw": []}
            samples = {"recorded": None, "raw": None}
            npanels = 0
            for rep in range(args.dashboard_reps + 1):
                for kind in ("recorded", "raw") if rep % 2 == 0 else ("raw", "recorded"):
                    end = time.time()
                    t0 = time.perf_counter()
                    total_samples = 0
                    npanels = 0
                    for title, rec, raw, inst in panels:
                        expr = dq.substitute(rec if kind == "recorded" else raw, tenant, interval=step,
                                             time_range=args.dashboard_range)
                        if inst:
                            r = srv.api("/api/v1/query", query=expr, time="%.3f" % end, stats="all")
                        else:
                            r = srv.api("/api/v1/query_range", query=expr, start="%.3f" % (end - rng),
                                        end="%.3f" % end, step=step, stats="all")
                        if r.get("status") != "success":
                            raise SystemExit("%s failed: %s" % (title, r))
                        st = (r["data"].get("stats") or {}).get("samples") or {}
                        total_samples += st.get("totalQueryableSamples", 0)
                        npanels += 1
                    dt = time.perf_counter() - t0
                    if rep > 0:  # the first refresh of each kind warms the page cache
                        times[kind].append(dt)
                    samples[kind] = total_samples
            rec_t, raw_t = statistics.median(times["recorded"]), statistics.median(times["raw"])
            rows.append({"tenants": n, "tenant": tenant_label, "queries": npanels, "recorded_ms": rec_t * 1000,
                         "raw_ms": raw_t * 1000, "speedup": raw_t / rec_t, "recorded_samples": samples["recorded"],
                         "raw_samples": samples["raw"],
                         "samples_ratio": (samples["raw"] / samples["recorded"]) if samples["recorded"] else None})
    finally:
        srv.stop()
        srv.cleanup()
    return rows


def print_dashboard(rows, args):
    print("\n### Enhanced dashboard, one refresh (%s range, step %s; median of %d)\n"
          % (args.dashboard_range, args.dashboard_step, args.dashboard_reps))
    print("| tenants | $tenant | queries | recorded ms | raw ms | raw/recorded time | recorded samples | raw samples | raw/recorded samples |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %d | %s | %d | %.0f | %.0f | %.1fx | %s | %s | %s |" % (
            r["tenants"], r["tenant"], r["queries"], r["recorded_ms"], r["raw_ms"], r["speedup"],
            "{:,}".format(r["recorded_samples"]), "{:,}".format(r["raw_samples"]),
            ("%.1fx" % r["samples_ratio"]) if r["samples_ratio"] else "-"))


# --------------------------------------------------------------------------------------------
# Part 3: 30-day billing
# --------------------------------------------------------------------------------------------

def billing_tsdb(n, instances, step):
    """30 days (+1h) of aether_rag_answers_total at `step`, and the hourly
    records aether:rag_answers:increase1h as the hourly group records them."""
    days = 30
    key = "billing-n%d-m%d-s%d-v%d" % (n, instances, step, GEN_VERSION)
    d = CACHE / "tsdb" / key
    meta_file = d / "bench-meta.json"
    now = time.time()
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if now - meta["end"] <= 86400:  # at most a day missing at the end of 30 days
            log("reusing %s" % d.name)
            return d, meta
    shutil.rmtree(d, ignore_errors=True)
    end = int(now) // step * step
    start = (end - days * 86400 - 2 * 3600) // step * step
    epoch = start - 86400
    tenants = make_tenants(n)
    rnd = random.Random(3)
    specs = []
    hourly = []
    for t in tenants:
        tot = {"true": 0.0, "false": 0.0}
        for i in range(instances):
            inst = 'job="aether_app",instance="app-%d:8000",tenant="%s"' % (i + 1, t.name)
            r = t.rate * rnd.uniform(0.8, 1.2)
            for rr, share in (("true", t.rerank), ("false", 1 - t.rerank)):
                specs.append(('aether_rag_answers_total{%s,rerank="%s"} ' % (inst, rr), r * share, rnd.random(), False))
                tot[rr] += r * share
        for rr in ("true", "false"):
            hourly.append(('aether:rag_answers:increase1h{tenant="%s",rerank="%s"} ' % (t.name, rr), tot[rr] * 3600))
    families = [("aether_rag_answers", "counter", specs)]
    nsamples = len(specs) * (end - start) // step + len(hourly) * days * 24
    log("generating %s: %d raw series at %ds + %d hourly series, %d samples" % (key, len(specs), step, len(hourly), nsamples))
    t0 = time.time()
    block = 86400

    def chunks():
        for k, lo, hi in block_spans(start, end, block):
            stamps = [(t, " %d\n" % t) for t in range(lo, hi, step)]
            hours = [h for h in range((lo + 3599) // 3600 * 3600, hi, 3600)]

            def extra(out, hours=hours):
                out.write("# TYPE aether:rag_answers:increase1h gauge\n")
                for prefix, inc in hourly:
                    out.write("".join(["%s%.1f %d\n" % (prefix, inc, h) for h in hours]))

            path = CACHE / "tsdb" / ("%s.chunk%03d.om" % (key, k))
            write_chunk(path, families, stamps, epoch, extra=extra)
            yield path

    create_blocks(chunks(), d / "data", max_block="24h")
    meta = {"start": start, "end": end, "tenants": n, "instances": instances, "step": step,
            "raw_series": len(specs), "hourly_series": len(hourly), "generated_in_s": round(time.time() - t0, 1)}
    meta_file.write_text(json.dumps(meta, indent=1))
    log("generated %s in %.0f s" % (key, time.time() - t0))
    return d, meta


def bench_billing(args, n, deployed_groups, defaults, workdir):
    d, meta = billing_tsdb(n, args.billing_instances, args.billing_step)
    by_name = {g["name"]: g for g in deployed_groups}
    p, pr = defaults["aetherlink_billing_price_usd_per_answer"], defaults["aetherlink_billing_price_usd_per_reranked_answer"]
    raw = {"name": "raw_billing", "interval": deployed_groups[0].get("interval", "30s"), "rules": [
        {"record": "aether:tenant_billing_cost_usd:30d",
         "expr": ('sum by (tenant) (increase(aether_rag_answers_total{tenant!="_unknown", rerank="false"}[30d])) * %s\n'
                  '+ sum by (tenant) (increase(aether_rag_answers_total{tenant!="_unknown", rerank="true"}[30d])) * %s'
                  % (p, pr)), "labels": {"team": "aetherlink"}},
        {"record": "aether:billing_cost_usd:30d", "expr": "sum(aether:tenant_billing_cost_usd:30d)",
         "labels": {"team": "aetherlink"}}]}
    sets = {"recorded": [by_name["aetherlink_billing"], by_name["aetherlink_billing_hourly"]], "raw": [raw]}
    raw_interval = parse_duration(args.evaluation_interval)
    ports = free_ports(2)
    servers = [Server("billing-" + k, port, d / "data", retime(g, args.billing_interval), args.evaluation_interval,
                      workdir) for (k, g), port in zip(sets.items(), ports)]
    try:
        for s in servers:
            s.start()
        for s in servers:
            s.wait_ready()
        res, _ = measure(servers, args.billing_cycles, 1, args.timeout)
        values = {}
        for s in servers:
            r = s.api("/api/v1/query", query="aether:billing_cost_usd:30d")["data"]["result"]
            values[s.name] = float(r[0]["value"][1]) if r else None
    finally:
        for s in servers:
            s.stop()
        for s in servers:
            s.cleanup()
    rows = []
    for (srv, g), r in sorted(res.items()):
        iv = {"aetherlink_billing": parse_duration(by_name["aetherlink_billing"]["interval"]),
              "aetherlink_billing_hourly": parse_duration(by_name["aetherlink_billing_hourly"]["interval"]),
              "raw_billing": raw_interval}[g]
        rows.append({"tenants": n, "set": srv, "group": g, "ms_per_eval": r["median_s"] * 1000, "evals": r["n"],
                     "interval_s": iv, "ms_per_min": r["median_s"] * 1000 * 60 / iv,
                     "cost_usd": values.get(srv), "raw_series": meta["raw_series"], "step": meta["step"]})
    return rows


def print_billing(rows):
    print("\n### 30-day billing (raw data resolution %ds)\n" % rows[0]["step"])
    print("| tenants | raw series | set | group | ms per eval (median) | deployed interval | ms per minute | aether:billing_cost_usd:30d |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %d | %d | %s | %s | %.1f | %s | %.2f | %s |" % (
            r["tenants"], r["raw_series"], r["set"], r["group"], r["ms_per_eval"], fmt_duration(r["interval_s"]),
            r["ms_per_min"], "%.2f" % r["cost_usd"] if r["cost_usd"] is not None else "-"))
    by_n = {}
    for r in rows:
        by_n.setdefault(r["tenants"], {})[r["group"]] = r
    for n, g in by_n.items():
        rec = g["aetherlink_billing"]["ms_per_eval"]
        raw = g["raw_billing"]["ms_per_eval"]
        per_min = (g["aetherlink_billing"]["ms_per_min"] + g["aetherlink_billing_hourly"]["ms_per_min"]) / g["raw_billing"]["ms_per_min"]
        print("\n%d tenants: 30-day rule per evaluation %.2f%% of raw [30d]; per minute (with the hourly increases, "
              "deployed intervals) %.3f%%" % (n, 100 * rec / raw, 100 * per_min))


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tenants", default="100,1000", help="comma-separated sizes (100,1000,10000)")
    ap.add_argument("--instances", type=int, default=2, help="app instances per tenant (series per tenant x M)")
    ap.add_argument("--step", default="15", help="scrape interval of the generated data, s; per size: 10000:60")
    ap.add_argument("--history", default="6h", help="history before now (the longest rule window)")
    ap.add_argument("--parts", default="rules,dashboard,billing")
    ap.add_argument("--sets", default="raw,deployed", help="rule sets: raw, deployed, ref (with --ref)")
    ap.add_argument("--ref", help="also bench the rules rendered from this git revision (set 'ref')")
    ap.add_argument("--evaluation-interval", default="30s", help="global evaluation_interval (as deployed)")
    ap.add_argument("--bench-interval", default="30s", help="interval every group is evaluated at while measured")
    ap.add_argument("--slow-threshold", default="2m",
                    help="groups deployed at longer intervals are measured in a second phase, on servers of their own")
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--dashboard-range", default="6h")
    ap.add_argument("--dashboard-step", default="20s", help="Grafana's step for 6h on a ~1000 px panel")
    ap.add_argument("--dashboard-reps", type=int, default=5)
    ap.add_argument("--dashboard-tenants", default=None, help="sizes for the dashboard part (default: --tenants)")
    ap.add_argument("--billing-tenants", default="100,1000")
    ap.add_argument("--billing-step", type=int, default=60)
    ap.add_argument("--billing-instances", type=int, default=1)
    ap.add_argument("--billing-interval", default="10s")
    ap.add_argument("--billing-cycles", type=int, default=4)
    ap.add_argument("--json", help="write every row to this file")
    args = ap.parse_args()

    # a kill ends the servers too (the finally blocks run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    version = ensure_prometheus()
    CACHE.mkdir(parents=True, exist_ok=True)
    workdir = CACHE / "run"
    workdir.mkdir(exist_ok=True)
    defaults = shared_defaults()
    rendered = CACHE / "rendered"
    shutil.rmtree(rendered, ignore_errors=True)
    files = render_rules(rendered / "deployed")
    deployed = load_groups(files)
    alert_groups = load_groups(files[1:])
    rule_sets = {}
    sets = args.sets.split(",")
    if args.ref:
        (rendered / "ref").mkdir(parents=True)
        rule_sets_ref = load_groups(render_ref(args.ref, rendered / "ref"))
        if "ref" not in sets:
            sets.append("ref")
    for s in sets:
        if s == "raw":
            rule_sets["raw"] = raw_alert_groups(defaults, alert_groups, deployed[0].get("interval", "30s"))
        elif s == "deployed":
            rule_sets["deployed"] = deployed
        elif s == "ref":
            rule_sets["ref"] = rule_sets_ref
    steps = {}
    for part in args.step.split(","):
        if ":" in part:
            k, v = part.split(":")
            steps[int(k)] = int(v)
        else:
            steps[None] = int(part)
    print("# rules_bench: %s, %d cores, load average %s, %s" % (version, os.cpu_count(), loadavg(),
                                                                time.strftime("%Y-%m-%d %H:%M")))
    out = {"rules": [], "rule_details": [], "summary": {}, "dashboard": [], "billing": [], "tsdb": {}}
    parts = args.parts.split(",")
    dash_sizes = [int(x) for x in (args.dashboard_tenants or args.tenants).split(",")]
    try:
        for n in [int(x) for x in args.tenants.split(",")]:
            step = steps.get(n, steps.get(None, 15))
            if "rules" in parts or ("dashboard" in parts and n in dash_sizes):
                tsdb_dir, meta, families = main_tsdb(n, args.instances, step, parse_duration(args.history))
                out["tsdb"][n] = meta
                print("\nData: %d tenants x %d instances, %d series, %ds resolution, %s history (generated in %ss)"
                      % (n, args.instances, meta["series"], step, args.history, meta["generated_in_s"]))
            if "rules" in parts:
                rows, rule_rows, loads = bench_rules(args, n, tsdb_dir, meta, families, rule_sets, workdir)
                out["rules"] += rows
                out["rule_details"] += rule_rows
                out["summary"][n] = print_rule_tables(rows, rule_rows, loads, n, [s for s in rule_sets if s != "raw"])
                sys.stdout.flush()
            if "dashboard" in parts and n in dash_sizes:
                drows = bench_dashboard(args, n, tsdb_dir, meta, families, defaults, workdir)
                out["dashboard"] += drows
                print_dashboard(drows, args)
                sys.stdout.flush()
        if "billing" in parts:
            brows = []
            for n in [int(x) for x in args.billing_tenants.split(",")]:
                brows += bench_billing(args, n, deployed, defaults, workdir)
            out["billing"] = brows
            print_billing(brows)
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    print("\nload average at the end: %s" % loadavg())


if __name__ == "__main__":
    main()
