"""HTTP layer: Starlette routes, error mapping and the metrics middleware.

Routes (route label in brackets):
    POST   /v1/query                                         [query]            tenant key
    GET    /v1/admin/tenants, POST /v1/admin/tenants         [admin_tenants]    admin key
    GET    /v1/admin/tenants/{name}, DELETE (same path)      [admin_tenant]     admin key
    POST   /v1/admin/tenants/{name}/documents                [admin_documents]  admin key
    DELETE /v1/admin/tenants/{name}/documents/{doc_id}       [admin_document]   admin key
    GET    /healthz                                          [healthz]
    GET    /metrics                                          [metrics]          token if configured
    anything else -> 404 JSON                                [unmatched]
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .config import Settings
from .errors import ApiError, error_response
from .metrics import (
    ROUTE_ADMIN_DOCUMENT,
    ROUTE_ADMIN_DOCUMENTS,
    ROUTE_ADMIN_TENANT,
    ROUTE_ADMIN_TENANTS,
    ROUTE_HEALTHZ,
    ROUTE_METRICS,
    ROUTE_QUERY,
    ROUTE_UNMATCHED,
    UNKNOWN_TENANT,
)
from .service import MAX_TOP_K, TENANT_NAME_RULE, Service, valid_api_key, valid_tenant_name
from .validation import (
    get_bool,
    get_float,
    get_int,
    get_str,
    identifier_problem,
    invalid,
    read_json,
    require_object,
    shown,
)

log = logging.getLogger("aetherlink")

TENANT_SCOPE_KEY = "aetherlink.tenant"
MAX_QUESTION_CHARS = 2000
MAX_DOC_ID_CHARS = 200
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header lists ``gzip`` with a non-zero weight (Prometheus sends
    ``gzip``). Only the explicit coding counts, not ``*``."""
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    return False
        return weight > 0
    return False


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request, turns crashes into JSON 500s."""

    def __init__(self, app: ASGIApp, service: Service, route_labels: dict[Callable, str]) -> None:
        self.app = app
        self.metrics = service.metrics
        self.route_labels = route_labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # the client went away before its request was complete (e.g. fewer body bytes than
            # its Content-Length): not a server error, and nobody is left to answer
            log.info("client disconnected before the request was complete: %s %s",
                     scope.get("method"), shown(scope.get("path", ""), 200))
            if not started:
                status = 400
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), shown(scope.get("path", ""), 200))
            status = 500
            if not started:
                response = error_response(500, "internal_error", "internal server error")
                with contextlib.suppress(Exception):
                    await response(scope, receive, send)
        finally:
            route = self.route_labels.get(scope.get("endpoint"), ROUTE_UNMATCHED)
            tenant = scope.get(TENANT_SCOPE_KEY, UNKNOWN_TENANT)
            self.metrics.observe_request(tenant, route, status, time.perf_counter() - start)


def create_app(settings: Settings | None = None, *, clock: Callable[[], float] = time.monotonic) -> Starlette:
    """Build the ASGI app. ``settings`` default to the environment (``uvicorn --factory`` works)."""
    settings = Settings.from_env() if settings is None else settings
    service = Service(settings, clock=clock)
    max_body = settings.max_body_bytes

    async def query(request: Request) -> Response:
        tenant = service.authenticate_tenant(request.headers)
        request.scope[TENANT_SCOPE_KEY] = tenant.record.name
        data = require_object(await read_json(request, max_body), ("question", "rerank", "top_k"))
        question = get_str(data, "question", required=True, max_len=MAX_QUESTION_CHARS)
        rerank = get_bool(data, "rerank")
        top_k = get_int(data, "top_k", 1, MAX_TOP_K)
        return JSONResponse(service.answer(tenant, question, rerank, top_k))

    async def tenants(request: Request) -> Response:
        service.authenticate_admin(request.headers)
        if request.method == "GET":
            return JSONResponse({"tenants": [t.public() for _, t in sorted(service.tenants.items())]})
        data = require_object(
            await read_json(request, max_body),
            ("name", "vip", "lowconf_threshold", "rerank_default", "api_key"),
        )
        name = get_str(data, "name", required=True, max_len=63)
        if not valid_tenant_name(name):
            raise ApiError(
                422, "invalid_tenant_name",
                f"field 'name': must match {TENANT_NAME_RULE} (lowercase letters, digits, '-')",
            )
        vip = get_bool(data, "vip")
        threshold = get_float(data, "lowconf_threshold", 0.0, 1.0)
        rerank_default = get_bool(data, "rerank_default")
        api_key = get_str(data, "api_key", required=False, max_len=256)
        if api_key is not None and not valid_api_key(api_key):
            raise ApiError(
                422, "invalid_value",
                "field 'api_key': must be 16..256 printable ASCII characters without spaces",
            )
        status, body = await service.upsert_tenant(name, vip, threshold, rerank_default, api_key)
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    async def tenant_detail(request: Request) -> Response:
        service.authenticate_admin(request.headers)
        name = request.path_params["name"]
        if request.method == "DELETE":
            return JSONResponse(await service.delete_tenant(name))
        return JSONResponse(service.get_tenant(name).public())

    async def documents(request: Request) -> Response:
        service.authenticate_admin(request.headers)
        name = service.get_tenant(request.path_params["name"]).record.name
        data = await read_json(request, max_body)
        if isinstance(data, dict):
            data = require_object(data, ("documents",)).get("documents")
            if data is None:
                raise ApiError(422, "missing_field", "field 'documents': is required")
        if not isinstance(data, list):
            raise ApiError(422, "invalid_type", "field 'documents': must be an array of {id, text} objects")
        if not data:
            raise ApiError(422, "empty_field", "field 'documents': must not be empty")
        docs: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i, item in enumerate(data):
            where = f"documents[{i}]"
            obj = require_object(item, ("id", "text"), what=where)
            doc_id = get_str(obj, "id", required=True, max_len=MAX_DOC_ID_CHARS, label=f"{where}.id")
            text = get_str(obj, "text", required=True, max_len=max_body, label=f"{where}.text")
            problem = identifier_problem(doc_id)
            if problem:
                raise invalid(f"{where}.id", problem)
            if doc_id in seen:
                raise ApiError(422, "duplicate_id", f"field '{where}.id': duplicate id in this request")
            seen.add(doc_id)
            docs.append((doc_id, text))
        return JSONResponse(await service.ingest(name, docs))

    async def document(request: Request) -> Response:
        service.authenticate_admin(request.headers)
        name = service.get_tenant(request.path_params["name"]).record.name
        doc_id = request.path_params["doc_id"]
        if not 1 <= len(doc_id) <= MAX_DOC_ID_CHARS:
            raise ApiError(400, "invalid_document_id", f"document id in the path: must be 1..{MAX_DOC_ID_CHARS} characters")
        problem = identifier_problem(doc_id)
        if problem:
            raise ApiError(400, "invalid_document_id", f"document id in the path: {problem}")
        return JSONResponse(await service.delete_document(name, doc_id))

    async def healthz(request: Request) -> Response:
        try:
            await service.ping()
        except Exception as exc:  # report, never raise: this is what monitors poll
            log.error("health check: database unavailable: %s", exc.__class__.__name__)
            return JSONResponse({"status": "error", "db": "unavailable"}, status_code=503)
        return JSONResponse(
            {"status": "ok", "db": "ok", "tenants": len(service.tenants), "version": __version__}
        )

    async def metrics(request: Request) -> Response:
        service.authenticate_metrics(request.headers)
        snapshot = await service.metrics.snapshot()
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            return Response(await snapshot.gzipped(), media_type=PROMETHEUS_CONTENT_TYPE,
                            headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
        return Response(snapshot.body, media_type=PROMETHEUS_CONTENT_TYPE, headers={"Vary": "Accept-Encoding"})

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return error_response(404, "not_found", "no such route")
        if exc.status_code == 405:
            return error_response(405, "method_not_allowed", f"method {request.method} is not allowed here",
                                  exc.headers)
        return error_response(exc.status_code, "http_error", str(exc.detail), exc.headers)

    routes = [
        Route("/v1/query", query, methods=["POST"]),
        Route("/v1/admin/tenants", tenants, methods=["GET", "POST"]),
        Route("/v1/admin/tenants/{name}", tenant_detail, methods=["GET", "DELETE"]),
        Route("/v1/admin/tenants/{name}/documents", documents, methods=["POST"]),
        # ":path": document ids may contain "/" (sent as %2F)
        Route("/v1/admin/tenants/{name}/documents/{doc_id:path}", document, methods=["DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    route_labels = {
        query: ROUTE_QUERY,
        tenants: ROUTE_ADMIN_TENANTS,
        tenant_detail: ROUTE_ADMIN_TENANT,
        documents: ROUTE_ADMIN_DOCUMENTS,
        document: ROUTE_ADMIN_DOCUMENT,
        healthz: ROUTE_HEALTHZ,
        metrics: ROUTE_METRICS,
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        log.info("aetherlink %s ready (%s)", __version__, settings)
        try:
            yield
        finally:
            service.close()
            log.info("aetherlink stopped")

    app = Starlette(
        debug=False,
        routes=routes,
        middleware=[Middleware(MetricsMiddleware, service=service, route_labels=route_labels)],
        exception_handlers={ApiError: api_error, HTTPException: http_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # no 307s to a POST route: unknown paths are plain 404s
    app.state.service = service
    return app

