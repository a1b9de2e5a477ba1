"""SQLite persistence for tenants and documents (stdlib sqlite3, WAL journal).

API keys are never stored: only their SHA-256 hex digest. The service is single-process
(one uvicorn worker, one event loop), so one connection guarded by a lock is enough.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    name              TEXT PRIMARY KEY,
    api_key_sha256    TEXT NOT NULL UNIQUE,
    vip               INTEGER NOT NULL DEFAULT 0,
    lowconf_threshold REAL NOT NULL,
    rerank_default    INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    tenant     TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    doc_id     TEXT NOT NULL,
    text       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant, doc_id)
);
"""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(slots=True)
class TenantRecord:
    name: str
    api_key_sha256: str
    vip: bool
    lowconf_threshold: float
    rerank_default: bool
    created_at: str
    updated_at: str


class Storage:
    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def ping(self) -> None:
        with self._lock:
            self._conn.execute("SELECT count(*) FROM tenants").fetchone()

    # tenants -------------------------------------------------------------------------------
    @staticmethod
    def _tenant(row: tuple) -> TenantRecord:
        return TenantRecord(row[0], row[1], bool(row[2]), float(row[3]), bool(row[4]), row[5], row[6])

    def list_tenants(self) -> list[TenantRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, api_key_sha256, vip, lowconf_threshold, rerank_default, created_at,"
                " updated_at FROM tenants ORDER BY name"
            ).fetchall()
        return [self._tenant(r) for r in rows]

    def insert_tenant(
        self, name: str, api_key_sha256: str, vip: bool, lowconf_threshold: float, rerank_default: bool
    ) -> TenantRecord:
        now = _now()
        with self._lock:
            self._conn.execute(
                "INSERT INTO tenants (name, api_key_sha256, vip, lowconf_threshold, rerank_default,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, api_key_sha256, int(vip), lowconf_threshold, int(rerank_default), now, now),
            )
        return TenantRecord(name, api_key_sha256, vip, lowconf_threshold, rerank_default, now, now)

    def update_tenant(self, record: TenantRecord) -> TenantRecord:
        record.updated_at = _now()
        with self._lock:
            self._conn.execute(
                "UPDATE tenants SET api_key_sha256 = ?, vip = ?, lowconf_threshold = ?,"
                " rerank_default = ?, updated_at = ? WHERE name = ?",
                (
                    record.api_key_sha256,
                    int(record.vip),
                    record.lowconf_threshold,
                    int(record.rerank_default),
                    record.updated_at,
                    record.name,
                ),
            )
        return record

    # documents -----------------------------------------------------------------------------
    def iter_documents(self, tenant: str) -> Iterator[tuple[str, str]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT doc_id, text FROM documents WHERE tenant = ? ORDER BY doc_id", (tenant,)
            ).fetchall()
        return iter(rows)

    def upsert_documents(self, tenant: str, docs: Iterable[tuple[str, str]]) -> None:
        now = _now()
        rows = [(tenant, doc_id, text, now) for doc_id, text in docs]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO documents (tenant, doc_id, text, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (tenant, doc_id) DO UPDATE SET text = excluded.text,"
                    " updated_at = excluded.updated_at",
                    rows,
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
