"""SQLite persistence for tenants and documents (stdlib sqlite3, WAL journal).

API keys are never stored: only their SHA-256 hex digest. The service is single-process (one
uvicorn worker, one event loop). Writes go through one connection guarded by a lock; the service
calls them from a worker thread (never on the event loop) and serialises its own writes. The
health check reads through a second connection, so a write that waits for SQLite's lock (held
by another process: a backup, an operator's sqlite3 shell) never delays it: in WAL mode
readers do not wait for writers.

A write that cannot get the lock within ``BUSY_TIMEOUT_MS`` raises ``DatabaseBusy``; nothing has
been changed then, and the caller leaves its in-memory state alone too.
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

# How long a write waits for another connection's lock before giving up with DatabaseBusy.
# Short on purpose: the waiting happens in a worker thread, and the client gets a 503 with
# Retry-After sooner rather than a hung request.
BUSY_TIMEOUT_MS = 2000

_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (extended codes are folded below)


class DatabaseBusy(Exception):
    """Another connection holds the write lock; the operation changed nothing."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)  # pragma: no cover (Python < 3.11)

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
        self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_MS)}")
        with self._lock:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._read_lock = threading.Lock()
        self._read_conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._read_conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_MS)}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._read_lock:
            self._read_conn.close()

    def ping(self) -> None:
        """A read through the second connection: answers while a write waits for the lock."""
        with self._read_lock:
            self._read_conn.execute("SELECT count(*) FROM tenants").fetchone()

    def _write(self, statements: list[tuple[str, Iterable]], many: bool = False) -> list[int]:
        """Run ``statements`` in one transaction; row counts of each. DatabaseBusy when locked."""
        counts = []
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in statements:
                        run = self._conn.executemany if many else self._conn.execute
                        counts.append(run(sql, params).rowcount)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise DatabaseBusy(str(exc)) from None
                raise
        return counts

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
        self._write([(
            "INSERT INTO tenants (name, api_key_sha256, vip, lowconf_threshold, rerank_default,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, api_key_sha256, int(vip), lowconf_threshold, int(rerank_default), now, now),
        )])
        return TenantRecord(name, api_key_sha256, vip, lowconf_threshold, rerank_default, now, now)

    def update_tenant(self, record: TenantRecord) -> TenantRecord:
        """Store ``record`` (a new object: the caller swaps it in after this returns)."""
        record.updated_at = _now()
        self._write([(
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
        )])
        return record

    def delete_tenant(self, name: str) -> int:
        """Delete a tenant and its documents; returns how many documents went with it."""
        docs, _ = self._write([
            ("DELETE FROM documents WHERE tenant = ?", (name,)),
            ("DELETE FROM tenants WHERE name = ?", (name,)),
        ])
        return docs

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
        self._write([(
            "INSERT INTO documents (tenant, doc_id, text, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant, doc_id) DO UPDATE SET text = excluded.text,"
            " updated_at = excluded.updated_at",
            rows,
        )], many=True)

    def delete_document(self, tenant: str, doc_id: str) -> bool:
        (count,) = self._write([("DELETE FROM documents WHERE tenant = ? AND doc_id = ?", (tenant, doc_id))])
        return count > 0
