"""Prometheus metrics, exactly as the project's metrics contract (docs/metrics.md) names them.

    aether_cache_requests_total{tenant}
    aether_cache_hits_total{tenant}
    aether_rag_answers_total{tenant, rerank="true"|"false"}
    aether_rag_lowconfidence_total{tenant}
    aether_http_requests_total{tenant, route, code}
    aether_request_duration_seconds{tenant, route}          (histogram)

Cardinality is bounded by construction: ``tenant`` is a known tenant's name or ``_unknown`` (any
request that carries no valid tenant key: admin, health, metrics, unauthenticated or unmatched
requests); ``route`` comes from the fixed set ``ROUTES``, never from the raw path; ``code`` is
a status code the service itself produces. Every series of a tenant is created at 0 when the
tenant is created (and at startup for persisted tenants), so ratios never miss a series, and
removed when the tenant is deleted, so a deleted tenant stops being exported.

Each app instance has its own registry (tests build several apps in one process). The standard
process_* / python_* collectors are registered too; ``*_created`` samples are disabled.

Exposition. The values live in prometheus_client's metrics (``registry.collect()`` and
``generate_latest`` see them as usual), but ``/metrics`` does not go through the client's generic
path, which builds a Sample and a sorted label dict for every line (~0.2 s of CPU per 1,000
tenants, all of it on the event loop). Each family here keeps, for every child it creates, the
start of each of its exposition lines (``name{labels} ``, labels sorted and escaped as
prometheus_client writes them) and the child's value cells, so a scrape only reads numbers and
joins strings, and the text is byte for byte what ``generate_latest`` would produce
(``app/tests/test_exposition.py`` compares the two; the cells are the client's ``_value``,
``_buckets`` and ``_sum`` attributes, which those tests would catch changing). The scrape is
rendered on the event loop in slices of about ``SLICE_LINES`` lines, yielding to other requests
between slices (a worker thread would not help: pure-Python rendering holds the GIL), and
scrapes that arrive while one is being rendered share it (``Metrics.snapshot``). Gzip, when the
scraper asks for it, runs in a worker thread: zlib releases the GIL.
"""

from __future__ import annotations

import asyncio
import zlib
from itertools import accumulate
from typing import Any, Iterator

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.utils import floatToGoString

prometheus_client.disable_created_metrics()

UNKNOWN_TENANT = "_unknown"

ROUTE_QUERY = "query"
ROUTE_ADMIN_TENANTS = "admin_tenants"
ROUTE_ADMIN_TENANT = "admin_tenant"
ROUTE_ADMIN_DOCUMENTS = "admin_documents"
ROUTE_ADMIN_DOCUMENT = "admin_document"
ROUTE_HEALTHZ = "healthz"
ROUTE_METRICS = "metrics"
ROUTE_UNMATCHED = "unmatched"
ROUTES = (
    ROUTE_QUERY,
    ROUTE_ADMIN_TENANTS,
    ROUTE_ADMIN_TENANT,
    ROUTE_ADMIN_DOCUMENTS,
    ROUTE_ADMIN_DOCUMENT,
    ROUTE_HEALTHZ,
    ROUTE_METRICS,
    ROUTE_UNMATCHED,
)

# Status codes that a request *with a valid tenant key* can get on the query route.
TENANT_QUERY_CODES = ("200", "400", "413", "415", "422", "500")

# Series pre-created for the fixed "_unknown" tenant at startup (codes each route can return
# to a request without tenant identity). 503: the database is busy (admin writes). A query whose
# tenant is deleted while it runs is counted under "_unknown" with whatever code it gets.
UNKNOWN_ROUTE_CODES = {
    ROUTE_QUERY: ("400", "401", "405", "413", "415", "422", "500"),
    ROUTE_ADMIN_TENANTS: ("200", "201", "400", "401", "405", "409", "413", "415", "422", "503"),
    ROUTE_ADMIN_TENANT: ("200", "400", "401", "404", "405", "503"),
    ROUTE_ADMIN_DOCUMENTS: ("200", "400", "401", "404", "405", "413", "415", "422", "503"),
    ROUTE_ADMIN_DOCUMENT: ("200", "400", "401", "404", "405", "503"),
    ROUTE_HEALTHZ: ("200", "405", "503"),
    ROUTE_METRICS: ("200", "401", "405"),
    ROUTE_UNMATCHED: ("404",),
}

# Latency buckets (seconds): fine resolution around the 5 ms (cached) and 50 ms (uncached)
# objectives.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


# Exposition lines rendered between two yields to the event loop (about a millisecond of work).
SLICE_LINES = 2000
GZIP_LEVEL = 1  # the exposition is repetitive: level 1 already shrinks it ~18x, at a third of level 6's cost


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _line_start(name: str, labels: dict[str, str]) -> str:
    """``name{label="value",...} ``: labels sorted by name, as prometheus_client writes them."""
    inner = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} "


def _number(value: float) -> str:
    """A sample value as prometheus_client writes it. For floats in [0, 1e6) that is repr(), which
    is also what f-strings and str.format write (the client's cells hold floats): the render
    loops use those directly and call this only for the other values."""
    return repr(value) if 0.0 <= value < 1e6 else floatToGoString(value)


class _Family:
    """One labelled family of the contract: the prometheus_client metric that holds the values,
    and, per child, what its exposition lines need (see the module docstring). Children are
    created and removed only through here, so ``series`` has the order of the metric's own
    children: the order ``generate_latest`` writes them in."""

    def __init__(self, metric: Any, name: str, kind: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self.metric = metric
        self.name = name
        self.labelnames = labelnames
        doc = documentation.replace("\\", r"\\").replace("\n", r"\n")
        self.header = f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"
        self.series: dict[tuple[str, ...], tuple] = {}  # label values -> (child, *what render() reads)

    def child(self, *values: str) -> Any:
        entry = self.series.get(values)
        if entry is None:
            child = self.metric.labels(*values)
            entry = self.series[values] = (child, *self._prepare(child, dict(zip(self.labelnames, values))))
        return entry[0]

    def remove(self, *values: str) -> None:
        if self.series.pop(values, None) is not None:
            self.metric.remove(*values)

    def remove_where(self, label_index: int, value: str) -> None:
        for key in [k for k in self.series if k[label_index] == value]:
            self.remove(*key)

    lines_per_series = 1

    def _prepare(self, child: Any, labels: dict[str, str]) -> tuple:
        raise NotImplementedError

    def render(self, entries: list[tuple]) -> str:
        raise NotImplementedError


class _CounterFamily(_Family):
    def __init__(self, registry: CollectorRegistry, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        metric = Counter(name, documentation, labelnames, registry=registry)
        super().__init__(metric, name + "_total", "counter", documentation, labelnames)

    def _prepare(self, child: Any, labels: dict[str, str]) -> tuple:
        return child._value.get, _line_start(self.name, labels)

    def render(self, entries: list[tuple]) -> str:
        out: list[str] = []
        add = out.append
        for _, get, start in entries:
            value = get()
            add(f"{start}{value}\n" if 0.0 <= value < 1e6 else f"{start}{_number(value)}\n")
        return "".join(out)


class _HistogramFamily(_Family):
    def __init__(self, registry: CollectorRegistry, name: str, documentation: str, labelnames: tuple[str, ...],
                 buckets: tuple[float, ...]) -> None:
        metric = Histogram(name, documentation, labelnames, buckets=buckets, registry=registry)
        super().__init__(metric, name, "histogram", documentation, labelnames)
        self.bounds = tuple(floatToGoString(b) for b in buckets) + ("+Inf",)
        self.lines_per_series = len(self.bounds) + 2

    def _prepare(self, child: Any, labels: dict[str, str]) -> tuple:
        cells = tuple(cell.get for cell in child._buckets)
        assert len(cells) == len(self.bounds)
        starts = tuple(_line_start(self.name + "_bucket", labels | {"le": le}) for le in self.bounds) + (
            _line_start(self.name + "_count", labels), _line_start(self.name + "_sum", labels))
        # the whole block as one str.format template: one call per series instead of one per line
        template = "".join(start.replace("{", "{{").replace("}", "}}") + "{}\n" for start in starts)
        return cells, child._sum.get, template, starts

    def render(self, entries: list[tuple]) -> str:
        out: list[str] = []
        add = out.append
        for _, cells, total, template, starts in entries:
            values = list(accumulate([get() for get in cells]))  # cumulative, as the client exposes them
            values.append(values[-1])  # _count: the +Inf bucket
            values.append(total())
            if values[-2] < 1e6 and 0.0 <= values[-1] < 1e6:
                add(template.format(*values))  # str.format writes these floats as repr() does
            else:
                add("".join(f"{start}{_number(value)}\n" for start, value in zip(starts, values)))
        return "".join(out)


class Exposition:
    """One rendered scrape, shared by the scrapes that waited for it; gzipped at most once."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._gzip: asyncio.Future[bytes] | None = None

    async def gzipped(self) -> bytes:
        """The body gzip-compressed, in a worker thread (zlib releases the GIL while it works)."""
        if self._gzip is None or self._gzip.get_loop() is not asyncio.get_running_loop():
            self._gzip = _shared(asyncio.to_thread(zlib.compress, self.body, GZIP_LEVEL, 31))
        return await asyncio.shield(self._gzip)


def _shared(coro: Any) -> asyncio.Task:
    """A task that several requests await (each through asyncio.shield): one that goes away
    does not cancel it for the others; its outcome counts as retrieved even if nobody is left."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


class TenantMetrics:
    """Pre-resolved children of one tenant (avoids label lookups on the hot path)."""

    __slots__ = ("cache_requests", "cache_hits", "answers_rerank", "answers_plain", "lowconf")

    def __init__(self, m: "Metrics", tenant: str) -> None:
        self.cache_requests = m.cache_requests.child(tenant)
        self.cache_hits = m.cache_hits.child(tenant)
        self.answers_rerank = m.rag_answers.child(tenant, "true")
        self.answers_plain = m.rag_answers.child(tenant, "false")
        self.lowconf = m.lowconfidence.child(tenant)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        # the standard collectors, also in a registry of their own: the exposition renders them
        # with generate_latest (a few dozen lines) and the contract's families itself
        std = self._standard = CollectorRegistry()
        for collector in (ProcessCollector(registry=std), PlatformCollector(registry=std), GCCollector(registry=std)):
            r.register(collector)
        self.cache_requests = _CounterFamily(
            r, "aether_cache_requests", "Answer-cache lookups, one per answered query.", ("tenant",)
        )
        self.cache_hits = _CounterFamily(
            r, "aether_cache_hits", "Answer-cache lookups served from the cache.", ("tenant",)
        )
        self.rag_answers = _CounterFamily(
            r, "aether_rag_answers", "Answers returned, by whether the rerank step was applied.",
            ("tenant", "rerank"),
        )
        self.lowconfidence = _CounterFamily(
            r, "aether_rag_lowconfidence",
            "Answers whose confidence fell under the tenant's low-confidence threshold.", ("tenant",),
        )
        self.http_requests = _CounterFamily(
            r, "aether_http_requests", "Finished HTTP requests.", ("tenant", "route", "code")
        )
        self.request_duration = _HistogramFamily(
            r, "aether_request_duration_seconds", "HTTP request latency in seconds.", ("tenant", "route"),
            DURATION_BUCKETS,
        )
        # in registration order: the order of generate_latest
        self._families: tuple[_Family, ...] = (
            self.cache_requests, self.cache_hits, self.rag_answers, self.lowconfidence, self.http_requests,
            self.request_duration,
        )
        self._tenants: dict[str, TenantMetrics] = {}
        self._rendering: asyncio.Task | None = None
        for route, codes in UNKNOWN_ROUTE_CODES.items():
            self.request_duration.child(UNKNOWN_TENANT, route)
            for code in codes:
                self.http_requests.child(UNKNOWN_TENANT, route, code)

    def init_tenant(self, tenant: str) -> TenantMetrics:
        """Create every series of ``tenant`` at 0 (idempotent)."""
        tm = self._tenants.get(tenant)
        if tm is None:
            tm = self._tenants[tenant] = TenantMetrics(self, tenant)
            self.request_duration.child(tenant, ROUTE_QUERY)
            for code in TENANT_QUERY_CODES:
                self.http_requests.child(tenant, ROUTE_QUERY, code)
        return tm

    def remove_tenant(self, tenant: str) -> None:
        """Drop every series labelled with ``tenant`` (the tenant was deleted)."""
        if self._tenants.pop(tenant, None) is None:
            return
        for family in self._families:
            family.remove_where(0, tenant)  # "tenant" is every family's first label

    def tenant(self, tenant: str) -> TenantMetrics:
        return self._tenants[tenant]

    def observe_request(self, tenant: str, route: str, code: int, seconds: float) -> None:
        if tenant not in self._tenants:
            # deleted while its request ran: never bring its series back
            tenant = UNKNOWN_TENANT
        self.http_requests.child(tenant, route, str(code)).inc()
        self.request_duration.child(tenant, route).observe(seconds)

    # exposition ----------------------------------------------------------------------------
    def _pieces(self) -> Iterator[str]:
        """The exposition in slices of about SLICE_LINES lines.

        The set of series is taken when the first slice is made: a tenant created or deleted
        while the slices are made (between two of them the event loop serves other requests)
        is in every family of this exposition or in none. Values are read slice by slice; each
        series (a histogram's buckets, count and sum too) is read in one go.
        """
        families = [(family, list(family.series.values())) for family in self._families]
        yield generate_latest(self._standard).decode()
        for family, entries in families:
            step = max(1, SLICE_LINES // family.lines_per_series)
            yield family.header
            for i in range(0, len(entries), step):
                yield family.render(entries[i:i + step])

    def exposition(self) -> bytes:
        """The whole exposition (text format 0.0.4) in one go."""
        return "".join(self._pieces()).encode()

    async def _render(self) -> Exposition:
        pieces = []
        for piece in self._pieces():
            pieces.append(piece.encode())  # encoded slice by slice too: only the final join is in one go
            await asyncio.sleep(0)  # let the loop serve what arrived meanwhile
        return Exposition(b"".join(pieces))

    async def snapshot(self) -> Exposition:
        """The exposition, rendered without holding the event loop for more than a slice.

        A scrape that arrives while another one is being rendered gets that rendering: its
        values were read at most one rendering earlier than its own would have been, and
        concurrent scrapers cost one rendering instead of one each.
        """
        task = self._rendering
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._rendering = _shared(self._render())
        return await asyncio.shield(task)
