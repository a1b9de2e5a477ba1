"""Tenant registry, authentication and the query path, independent of the HTTP framework.

State lives twice: in SQLite (the truth, read at startup) and in memory (what requests use).
Every change goes to the database first and reaches memory only after the commit, so a failed
write (a busy database: 503) leaves both as they were. Database writes run in a worker thread,
never on the event loop, so queries, health checks and metrics scrapes go on while a write
waits for SQLite's lock; the service's own writes are serialised by an asyncio lock, so each
one plans its change from the state the previous one left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import hmac
import logging
import re
import secrets
import time
from typing import Any, Awaitable, Callable

from .bm25 import BM25Index
from .cache import TTLCache
from .config import Settings, key_problem
from .errors import ApiError
from .metrics import Metrics
from .rag import Answer, answer_question
from .storage import DatabaseBusy, Storage, TenantRecord, hash_key
from .textproc import normalize_question

log = logging.getLogger("aetherlink")

TENANT_NAME_RULE = "^[a-z0-9][a-z0-9-]{1,62}$"
TENANT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")  # always used with fullmatch
DEFAULT_LOWCONF_THRESHOLD = 0.5
DEFAULT_TOP_K = 3
MAX_TOP_K = 20
RETRY_AFTER_SECONDS = 1
# an Authorization scheme short and plain enough to be quoted back in an error message
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,31}")
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
METRICS_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


@dataclasses.dataclass(slots=True)
class Tenant:
    record: TenantRecord
    index: BM25Index
    cache: TTLCache[Answer]

    def public(self) -> dict:
        r = self.record
        return {
            "name": r.name,
            "vip": r.vip,
            "lowconf_threshold": r.lowconf_threshold,
            "rerank_default": r.rerank_default,
            "documents": len(self.index),
            "created_at": r.created_at,
            "updated_at": r.updated_at,
        }


def settle_heap() -> None:
    """Move the long-lived index into the GC's permanent generation.

    The in-memory indexes are many small container objects that live for the whole process.
    Left in the collected generations, every full (gen-2) collection scans all of them: ~45 ms
    per 1,000 documents measured, a latency spike for whichever request triggers it. Freezing
    them after each (rare) load/ingest keeps collections proportional to per-request garbage.
    Replaced documents hold no reference cycles, so reference counting still frees them.
    """
    gc.collect()
    gc.freeze()


def valid_api_key(key: str) -> bool:
    return key_problem(key) is None


def valid_tenant_name(name: str) -> bool:
    return TENANT_NAME_RE.fullmatch(name) is not None


def _presented(headers, alt_header: str | None) -> tuple[str | None, str | None]:
    """(key, refused scheme): the key from ``Authorization: Bearer`` or ``alt_header``; when there
    is none, the scheme of an Authorization header that used another one (e.g. Basic)."""
    refused = None
    auth = (headers.get("authorization") or "").strip()
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            if value.strip():
                return value.strip(), None
        else:
            refused = scheme
    value = (headers.get(alt_header) or "").strip() if alt_header else ""
    return (value, None) if value else (None, refused)


def required_key(headers, alt_header: str | None, code: str, what: str, challenge: dict[str, str],
                 placeholder: str = "<key>") -> str:
    """The key presented in the headers, or a 401 naming what is missing (or the wrong scheme)."""
    key, refused = _presented(headers, alt_header and alt_header.lower())
    if key is not None:
        return key
    how = f"Authorization: Bearer {placeholder}" + (f" or {alt_header}: {placeholder}" if alt_header else "")
    if refused is not None:
        scheme = f"'{refused}'" if _SCHEME_RE.fullmatch(refused) else "used"
        raise ApiError(401, "unsupported_auth_scheme",
                       f"the Authorization scheme {scheme} is not accepted: use {how}", challenge)
    raise ApiError(401, code, f"{what} is required ({how})", challenge)


def serialised(change: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """For Service methods that change state: one at a time (under the write lock), and run to
    completion even if the request is cancelled, so that a committed write always reaches memory."""

    @functools.wraps(change)
    async def run(self: "Service", *args: Any) -> Any:
        async def locked() -> Any:
            async with self._write_lock:
                return await change(self, *args)

        task = asyncio.ensure_future(locked())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved if orphaned
        return await asyncio.shield(task)

    return run


class Service:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.storage = Storage(settings.db_path)
        self.metrics = Metrics()
        self.tenants: dict[str, Tenant] = {}
        # sha256(api key) -> tenant name. Looking up by digest leaks nothing about stored keys
        # through timing; the final equality check is hmac.compare_digest all the same.
        self._by_key: dict[str, str] = {}
        self._admin_digest = hash_key(settings.admin_key)
        self._metrics_digest = hash_key(settings.metrics_token) if settings.metrics_token else None
        self._write_lock = asyncio.Lock()
        started = time.perf_counter()
        for record in self.storage.list_tenants():
            tenant = self._register(record)
            for doc_id, text in self.storage.iter_documents(record.name):
                tenant.index.upsert(doc_id, text)
        settle_heap()
        log.info(
            "loaded %d tenant(s), %d document(s) from %s in %.3fs",
            len(self.tenants),
            sum(len(t.index) for t in self.tenants.values()),
            settings.db_path,
            time.perf_counter() - started,
        )

    def close(self) -> None:
        self.storage.close()

    def _register(self, record: TenantRecord) -> Tenant:
        tenant = Tenant(
            record,
            BM25Index(),
            TTLCache(self.settings.cache_max_entries, self.settings.cache_ttl_seconds, self.clock),
        )
        self.tenants[record.name] = tenant
        self._by_key[record.api_key_sha256] = record.name
        self.metrics.init_tenant(record.name)
        return tenant

    # authentication ------------------------------------------------------------------------
    def authenticate_tenant(self, headers) -> Tenant:
        key = required_key(headers, "X-API-Key", "missing_api_key", "an API key", BEARER_CHALLENGE)
        digest = hash_key(key)
        name = self._by_key.get(digest)
        tenant = self.tenants.get(name) if name else None
        if tenant is None or not hmac.compare_digest(tenant.record.api_key_sha256, digest):
            raise ApiError(401, "invalid_api_key", "the API key is not valid", BEARER_CHALLENGE)
        return tenant

    def authenticate_admin(self, headers) -> None:
        key = required_key(headers, "X-Admin-Key", "missing_admin_key", "the admin key", BEARER_CHALLENGE)
        if not hmac.compare_digest(hash_key(key), self._admin_digest):
            raise ApiError(401, "invalid_admin_key", "the admin key is not valid", BEARER_CHALLENGE)

    def authenticate_metrics(self, headers) -> None:
        """Only when AETHER_METRICS_TOKEN is set: Authorization: Bearer <token>."""
        if self._metrics_digest is None:
            return
        token = required_key(headers, None, "missing_metrics_token", "the metrics token", METRICS_CHALLENGE,
                             "<token>")
        if not hmac.compare_digest(hash_key(token), self._metrics_digest):
            raise ApiError(401, "invalid_metrics_token", "the metrics token is not valid", METRICS_CHALLENGE)

    # queries -------------------------------------------------------------------------------
    def answer(self, tenant: Tenant, question: str, rerank: bool | None, top_k: int | None) -> dict:
        if self.tenants.get(tenant.record.name) is not tenant:  # deleted while the body was read
            raise ApiError(401, "invalid_api_key", "the API key is not valid", BEARER_CHALLENGE)
        use_rerank = tenant.record.rerank_default if rerank is None else rerank
        k = DEFAULT_TOP_K if top_k is None else top_k
        m = self.metrics.tenant(tenant.record.name)
        key = (normalize_question(question), k, use_rerank)
        m.cache_requests.inc()
        result = tenant.cache.get(key)
        cached = result is not None
        if cached:
            m.cache_hits.inc()
        else:
            result = answer_question(tenant.index, question, k, use_rerank)
            tenant.cache.put(key, result)
        low = result.confidence < tenant.record.lowconf_threshold
        (m.answers_rerank if result.reranked else m.answers_plain).inc()
        if low:
            m.lowconf.inc()
        return {
            "answer": result.answer,
            "sources": list(result.sources),
            "cached": cached,
            "reranked": result.reranked,
            "confidence": result.confidence,
            "low_confidence": low,
        }

    # administration ------------------------------------------------------------------------
    def get_tenant(self, name: str) -> Tenant:
        if not valid_tenant_name(name):
            raise ApiError(400, "invalid_tenant_name", f"tenant name must match {TENANT_NAME_RULE}")
        tenant = self.tenants.get(name)
        if tenant is None:
            raise ApiError(404, "tenant_not_found", f"tenant '{name}' does not exist")
        return tenant

    async def ping(self) -> None:
        await asyncio.to_thread(self.storage.ping)

    @staticmethod
    async def _db(write: Callable[..., Any], *args: Any) -> Any:
        """A storage write in a worker thread; a locked database becomes a 503 with Retry-After."""
        try:
            return await asyncio.to_thread(write, *args)
        except DatabaseBusy:
            log.warning("database busy: %s gave up waiting for the lock; nothing changed", write.__name__)
            raise ApiError(
                503, "database_busy", "the database is locked by another process; nothing was changed,"
                " retry later", {"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None

    @serialised
    async def upsert_tenant(
        self,
        name: str,
        vip: bool | None,
        lowconf_threshold: float | None,
        rerank_default: bool | None,
        api_key: str | None,
    ) -> tuple[int, dict]:
        digest = hash_key(api_key) if api_key is not None else None
        if digest is not None:
            if hmac.compare_digest(digest, self._admin_digest):
                raise ApiError(422, "invalid_value", "field 'api_key': must differ from the admin key")
            owner = self._by_key.get(digest)
            if owner is not None and owner != name:
                raise ApiError(409, "api_key_conflict", "field 'api_key': already used by another tenant")

        tenant = self.tenants.get(name)
        if tenant is None:
            key = api_key if api_key is not None else "alk_" + secrets.token_urlsafe(32)
            record = await self._db(
                self.storage.insert_tenant,
                name,
                hash_key(key),
                bool(vip),
                DEFAULT_LOWCONF_THRESHOLD if lowconf_threshold is None else lowconf_threshold,
                bool(rerank_default),
            )
            tenant = self._register(record)
            log.info("tenant created: name=%s vip=%s key=%s", name, record.vip,
                     "supplied" if api_key is not None else "generated")
            return 201, {
                "created": True,
                "changed": True,
                "changed_fields": ["name", "vip", "lowconf_threshold", "rerank_default", "api_key"],
                "tenant": tenant.public(),
                "api_key": key,
            }

        old = tenant.record
        new = dataclasses.replace(old)  # changed and stored first; swapped in after the commit
        changed: list[str] = []
        if vip is not None and vip != old.vip:
            new.vip = vip
            changed.append("vip")
        if lowconf_threshold is not None and lowconf_threshold != old.lowconf_threshold:
            new.lowconf_threshold = lowconf_threshold
            changed.append("lowconf_threshold")
        if rerank_default is not None and rerank_default != old.rerank_default:
            new.rerank_default = rerank_default
            changed.append("rerank_default")
        if digest is not None and not hmac.compare_digest(digest, old.api_key_sha256):
            new.api_key_sha256 = digest
            changed.append("api_key")
        if changed:
            await self._db(self.storage.update_tenant, new)
            if new.api_key_sha256 != old.api_key_sha256:
                self._by_key.pop(old.api_key_sha256, None)
                self._by_key[new.api_key_sha256] = name
            tenant.record = new
            tenant.cache.clear()
            log.info("tenant updated: name=%s fields=%s", name, ",".join(changed))
        return 200, {
            "created": False,
            "changed": bool(changed),
            "changed_fields": changed,
            "tenant": tenant.public(),
        }

    @serialised
    async def delete_tenant(self, name: str) -> dict:
        tenant = self.get_tenant(name)
        documents = await self._db(self.storage.delete_tenant, name)
        del self.tenants[name]
        self._by_key.pop(tenant.record.api_key_sha256, None)
        tenant.cache.clear()
        self.metrics.remove_tenant(name)
        log.info("tenant deleted: name=%s documents=%d", name, documents)
        return {"deleted": True, "tenant": name, "documents": documents}

    @serialised
    async def delete_document(self, name: str, doc_id: str) -> dict:
        tenant = self.get_tenant(name)
        if doc_id not in tenant.index.docs:
            raise ApiError(404, "document_not_found", f"tenant '{name}' has no document with this id")
        await self._db(self.storage.delete_document, name, doc_id)
        tenant.index.remove(doc_id)
        tenant.cache.clear()
        log.info("document deleted: tenant=%s", name)
        return {"deleted": True, "tenant": name, "document": doc_id, "documents": len(tenant.index)}

    @serialised
    async def ingest(self, name: str, docs: list[tuple[str, str]]) -> dict:
        tenant = self.get_tenant(name)  # again: it may have been deleted while the body was read
        inserted = updated = 0
        changes: list[tuple[str, str]] = []
        for doc_id, text in docs:
            old = tenant.index.docs.get(doc_id)
            if old is None:
                inserted += 1
            elif old.text != text:
                updated += 1
            else:
                continue
            changes.append((doc_id, text))
        if changes:
            await self._db(self.storage.upsert_documents, name, changes)  # persist first
            for doc_id, text in changes:
                tenant.index.upsert(doc_id, text)
            tenant.cache.clear()
            settle_heap()
            log.info("documents ingested: tenant=%s inserted=%d updated=%d", name, inserted, updated)
        return {
            "tenant": name,
            "received": len(docs),
            "inserted": inserted,
            "updated": updated,
            "unchanged": len(docs) - inserted - updated,
            "changed": bool(changes),
            "documents": len(tenant.index),
        }
