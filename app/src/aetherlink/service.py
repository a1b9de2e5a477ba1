"""Tenant registry, authentication and the query path, independent of the HTTP framework."""

from __future__ import annotations

import gc
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Callable

from .bm25 import BM25Index
from .cache import TTLCache
from .config import Settings
from .errors import ApiError
from .metrics import Metrics
from .rag import Answer, answer_question
from .storage import Storage, TenantRecord, hash_key
from .textproc import normalize_question

log = logging.getLogger("aetherlink")

TENANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
DEFAULT_LOWCONF_THRESHOLD = 0.5
DEFAULT_TOP_K = 3
MAX_TOP_K = 20
API_KEY_MIN, API_KEY_MAX = 16, 256
_API_KEY_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


@dataclass(slots=True)
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
    return API_KEY_MIN <= len(key) <= API_KEY_MAX and bool(_API_KEY_RE.match(key))


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
    @staticmethod
    def _presented(headers, alt_header: str) -> str | None:
        auth = headers.get("authorization")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        value = headers.get(alt_header)
        return value.strip() if value and value.strip() else None

    @classmethod
    def _required_key(cls, headers, alt_header: str, code: str, what: str) -> str:
        """The key presented in the headers, or a 401 naming the missing key and its headers."""
        key = cls._presented(headers, alt_header.lower())
        if key is None:
            raise ApiError(
                401, code,
                "%s is required (Authorization: Bearer <key> or %s)" % (what, alt_header),
                {"WWW-Authenticate": "Bearer"},
            )
        return key

    def authenticate_tenant(self, headers) -> Tenant:
        key = self._required_key(headers, "X-API-Key", "missing_api_key", "an API key")
        digest = hash_key(key)
        name = self._by_key.get(digest)
        tenant = self.tenants.get(name) if name else None
        if tenant is None or not hmac.compare_digest(tenant.record.api_key_sha256, digest):
            raise ApiError(401, "invalid_api_key", "the API key is not valid", {"WWW-Authenticate": "Bearer"})
        return tenant

    def authenticate_admin(self, headers) -> None:
        key = self._required_key(headers, "X-Admin-Key", "missing_admin_key", "the admin key")
        if not hmac.compare_digest(hash_key(key), self._admin_digest):
            raise ApiError(401, "invalid_admin_key", "the admin key is not valid", {"WWW-Authenticate": "Bearer"})

    # queries -------------------------------------------------------------------------------
    def answer(self, tenant: Tenant, question: str, rerank: bool | None, top_k: int | None) -> dict:
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
        if not TENANT_NAME_RE.match(name):
            raise ApiError(
                400, "invalid_tenant_name",
                "tenant name must match ^[a-z0-9][a-z0-9-]{1,62}$",
            )
        tenant = self.tenants.get(name)
        if tenant is None:
            raise ApiError(404, "tenant_not_found", f"tenant '{name}' does not exist")
        return tenant

    def upsert_tenant(
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
            record = self.storage.insert_tenant(
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

        record = tenant.record
        changed: list[str] = []
        if vip is not None and vip != record.vip:
            record.vip = vip
            changed.append("vip")
        if lowconf_threshold is not None and lowconf_threshold != record.lowconf_threshold:
            record.lowconf_threshold = lowconf_threshold
            changed.append("lowconf_threshold")
        if rerank_default is not None and rerank_default != record.rerank_default:
            record.rerank_default = rerank_default
            changed.append("rerank_default")
        if digest is not None and not hmac.compare_digest(digest, record.api_key_sha256):
            self._by_key.pop(record.api_key_sha256, None)
            record.api_key_sha256 = digest
            self._by_key[digest] = name
            changed.append("api_key")
        if changed:
            self.storage.update_tenant(record)
            tenant.cache.clear()
            log.info("tenant updated: name=%s fields=%s", name, ",".join(changed))
        return 200, {
            "created": False,
            "changed": bool(changed),
            "changed_fields": changed,
            "tenant": tenant.public(),
        }

    def ingest(self, tenant: Tenant, docs: list[tuple[str, str]]) -> dict:
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
            self.storage.upsert_documents(tenant.record.name, changes)  # persist first
            for doc_id, text in changes:
                tenant.index.upsert(doc_id, text)
            tenant.cache.clear()
            settle_heap()
            log.info("documents ingested: tenant=%s inserted=%d updated=%d",
                     tenant.record.name, inserted, updated)
        return {
            "tenant": tenant.record.name,
            "received": len(docs),
            "inserted": inserted,
            "updated": updated,
            "unchanged": len(docs) - inserted - updated,
            "changed": bool(changes),
            "documents": len(tenant.index),
        }
