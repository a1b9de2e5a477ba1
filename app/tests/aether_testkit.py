"""Helpers shared by the tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import sqlite3
import threading
import time

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

ADMIN_KEY = "test-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

CORPUS = [
    {"id": "warranty", "text": "Warranty policy. Every AetherLink router carries a two year warranty. "
     "The warranty covers hardware faults but not water damage."},
    {"id": "reset", "text": "Factory reset. Hold the reset button for ten seconds to restore factory "
     "settings. All custom configuration is erased by a factory reset."},
    {"id": "battery", "text": "Battery care. The portable unit uses lithium batteries. Charge the "
     "battery fully before first use and store it at room temperature."},
    {"id": "shipping", "text": "Shipping. Orders ship within two business days. Express shipping "
     "is available in most regions for an extra fee."},
    {"id": "firmware", "text": "Firmware updates. The router downloads firmware updates "
     "automatically at night. You can also upload a firmware image manually from the admin page."},
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def create_tenant(client: TestClient, name: str, **fields) -> str:
    r = client.post("/v1/admin/tenants", json={"name": name, **fields}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["api_key"]


def ingest(client: TestClient, name: str, docs: list[dict]) -> dict:
    r = client.post(f"/v1/admin/tenants/{name}/documents", json={"documents": docs}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def ask(client: TestClient, key: str, question: str, **fields):
    return client.post(
        "/v1/query", json={"question": question, **fields}, headers={"Authorization": f"Bearer {key}"}
    )


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(client: TestClient, name: str, **labels) -> float | None:
    samples = metric_samples(client.get("/metrics").text)
    return samples.get((name, tuple(sorted(labels.items()))))


# --- real server and database-lock helpers ---------------------------------------------------

LOOPBACK = "127.0.0.1"
LOGGERS = ("aetherlink", "uvicorn", "uvicorn.access", "uvicorn.error")


def server_config(app, log_level: str = "warning", access_log: bool = False):
    """The uvicorn configuration of the console entry point (protocol, limits, logging), with
    the app's own settings, on loopback and a free port."""
    import uvicorn
    from aetherlink.server import uvicorn_options

    settings = dataclasses.replace(app.state.service.settings, log_level=log_level)
    options = uvicorn_options(settings, access_log=access_log) | {"host": LOOPBACK, "port": 0}
    return uvicorn.Config(app, **options)


@contextlib.contextmanager
def live_server(app, log_level: str = "warning", access_log: bool = False):
    """Serve ``app`` with a real uvicorn server (httptools + uvloop, as deployed) in a thread.

    Yields the base URL. Logging is configured as the console entry point does; the state of
    the service's loggers is restored afterwards so that other tests are not affected.
    """
    import uvicorn

    saved = {name: _logger_state(logging.getLogger(name)) for name in LOGGERS}
    server = uvicorn.Server(server_config(app, log_level, access_log))
    thread = threading.Thread(target=server.run, name="live-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:  # a readiness wait, not a timing assertion
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        for name, state in saved.items():
            _restore_logger(logging.getLogger(name), state)
    assert not thread.is_alive(), "uvicorn did not stop"


def _logger_state(logger: logging.Logger) -> tuple:
    return (list(logger.handlers), list(logger.filters), logger.level, logger.propagate, logger.disabled)


def _restore_logger(logger: logging.Logger, state: tuple) -> None:
    logger.handlers[:], logger.filters[:], logger.level, logger.propagate, logger.disabled = (
        state[0], state[1], state[2], state[3], state[4])


class RecordingHandler(logging.Handler):
    """Keeps every record (and checks that it can be written as UTF-8, like the stdout handler)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [self.format(r) for r in self.records]


@contextlib.contextmanager
def recording(*names: str):
    handler = RecordingHandler()
    loggers = [logging.getLogger(n) for n in names]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def raw_exchange(base_url: str, payload: bytes, timeout: float = 10.0) -> tuple[int | None, dict, bytes]:
    """Send raw bytes on a new connection; return (status, headers, body) of the first response.

    status is None when the server closed the connection without answering.
    """
    host, port = base_url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return (None, {}, data) if not data else _parse_response(data)
            data += chunk
        status, headers, body = _parse_response(data)
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body


def _parse_response(data: bytes) -> tuple[int, dict, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@contextlib.contextmanager
def db_write_locked(db_path: str):
    """Hold SQLite's write lock from a second connection (as another process would)."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def aether_series(client_or_text) -> set:
    text = client_or_text if isinstance(client_or_text, str) else client_or_text.get("/metrics").text
    return {k for k in metric_samples(text) if k[0].startswith("aether")}
