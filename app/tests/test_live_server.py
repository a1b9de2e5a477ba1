"""Behaviour that only a real server shows: concurrency, disconnects, header limits, access log.

Each test runs the app under uvicorn (httptools + uvloop, configured as the console entry point
does) on a loopback port in a thread, and talks to it over real sockets.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from aether_testkit import (
    ADMIN,
    ADMIN_KEY,
    CORPUS,
    aether_series,
    create_tenant,
    db_write_locked,
    ingest,
    live_server,
    metric_samples,
    raw_exchange,
    recording,
)
from aetherlink.app import create_app
from aetherlink.config import Settings


@pytest.fixture
def make_app(db_path, clock):
    apps = []

    def factory(**overrides):
        values = {"admin_key": ADMIN_KEY, "db_path": db_path, "log_level": "warning"} | overrides
        app = create_app(Settings(**values), clock=clock)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.state.service.close()


def _request_count(base: str, route: str) -> float:
    samples = metric_samples(httpx.get(base + "/metrics", timeout=10).text)
    return sum(v for (name, labels), v in samples.items()
               if name == "aether_request_duration_seconds_count" and ("route", route) in labels)


def _wait_for_count(base: str, route: str, target: float) -> None:
    """Wait (bounded) until the server has finished ``target`` requests on ``route``."""
    for _ in range(500):
        if _request_count(base, route) >= target:
            return
        time.sleep(0.01)
    raise AssertionError(f"the server never finished the request on route {route}")


# --- 2: a busy database does not block the event loop ----------------------------------------

def test_waiting_admin_write_does_not_block_other_requests(make_app, db_path, monkeypatch):
    monkeypatch.setattr("aetherlink.storage.BUSY_TIMEOUT_MS", 30_000, raising=False)
    app = make_app()
    service = app.state.service
    entered = threading.Event()
    original = service.storage.update_tenant

    def update_tenant(*args, **kwargs):
        entered.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(service.storage, "update_tenant", update_tenant)
    with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as admin:
        key = admin.post("/v1/admin/tenants", json={"name": "slow-co"}, headers=ADMIN).json()["api_key"]
        admin.post("/v1/admin/tenants/slow-co/documents", json=CORPUS, headers=ADMIN)
        result = {}
        with db_write_locked(db_path) as lock:
            writer = threading.Thread(target=lambda: result.update(r=admin.post(
                "/v1/admin/tenants", json={"name": "slow-co", "vip": True}, headers=ADMIN)))
            writer.start()
            assert entered.wait(10), "the admin write never reached the database"
            with httpx.Client(base_url=base, timeout=3) as other:  # a bound, not a measurement
                health = other.get("/healthz")
                assert health.status_code == 200 and health.json()["db"] == "ok"
                r = other.post("/v1/query", json={"question": "warranty"},
                               headers={"Authorization": f"Bearer {key}"})
                assert r.status_code == 200 and r.json()["sources"][0] == "warranty"
                assert other.get("/v1/admin/tenants/slow-co", headers=ADMIN).json()["vip"] is False
            assert writer.is_alive(), "the admin write did not wait for the lock"
            lock.execute("ROLLBACK")
        writer.join(30)
        assert result["r"].status_code == 200 and result["r"].json()["changed_fields"] == ["vip"]


# --- 6: a client that disconnects mid-body is no server error ---------------------------------

@pytest.mark.parametrize("route, path, auth", [
    ("query", "/v1/query", "tenant"),
    ("admin_documents", "/v1/admin/tenants/cut-co/documents", "admin"),
    ("admin_tenants", "/v1/admin/tenants", "admin"),
])
def test_client_disconnect_mid_body_is_not_a_500(make_app, route, path, auth):
    app = make_app()
    with live_server(app) as base, recording("aetherlink", "uvicorn.error") as logs:
        key = create_tenant_live(base, "cut-co")
        token = key if auth == "tenant" else ADMIN_KEY
        before_series = aether_series(httpx.get(base + "/metrics").text)
        before = _request_count(base, route)
        host, port = base.rsplit("//", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                          "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n").encode()
                         + b'{"question": "warr')
        _wait_for_count(base, route, before + 1)
        samples = metric_samples(httpx.get(base + "/metrics").text)
        after_series = {k for k in samples if k[0].startswith("aether")}
    assert after_series == before_series, after_series - before_series
    codes = {dict(labels)["code"]: v for (name, labels), v in samples.items()
             if name == "aether_http_requests_total" and dict(labels)["route"] == route and v}
    assert "500" not in codes
    assert codes.get("400", 0) >= 1
    assert not [r for r in logs.records if r.exc_info], logs.lines()
    assert not [line for line in logs.lines() if "Traceback" in line]


def create_tenant_live(base: str, name: str) -> str:
    r = httpx.post(base + "/v1/admin/tenants", json={"name": name}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["api_key"]


# --- 7: header size and count are bounded ------------------------------------------------------

def _get(path: str, extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n".encode() + extra + b"Connection: close\r\n\r\n"


def _assert_refused(status, headers, body, reason: str) -> None:
    assert status == 431, (status, body[:200])
    assert headers["content-type"].startswith("application/json")
    err = json.loads(body)["error"]
    assert err["code"] == "request_header_fields_too_large" and reason in err["message"]


def test_oversized_header_is_refused_and_server_keeps_serving(make_app):
    app = make_app()
    with live_server(app) as base:
        big = b"X-Big: " + b"a" * 20_000 + b"\r\n"
        _assert_refused(*raw_exchange(base, _get("/healthz", big)), "16384")
        # a much larger header: refused long before it has all been read
        huge = b"X-Huge: " + b"b" * (4 * 1024 * 1024) + b"\r\n"
        _assert_refused(*raw_exchange(base, _get("/healthz", huge)), "16384")
        status, _, body = raw_exchange(base, _get("/healthz"))
        assert status == 200 and json.loads(body)["status"] == "ok"


def test_too_many_headers_are_refused(make_app):
    app = make_app()
    with live_server(app) as base:
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
        status, headers, body = raw_exchange(base, _get("/healthz", many))
        assert status == 431
        # small but numerous: the count limit (Host + Connection + 98 = 100 headers pass, 101 do not)
        ok = b"".join(b"X-H%d: v\r\n" % i for i in range(98))
        assert raw_exchange(base, _get("/healthz", ok))[0] == 200
        _assert_refused(*raw_exchange(base, _get("/healthz", ok + b"X-One-More: v\r\n")), "100")
        assert raw_exchange(base, _get("/healthz"))[0] == 200


def test_header_limits_are_settings(make_app):
    app = make_app(max_header_bytes=4096, max_headers=10)
    with live_server(app) as base:
        _assert_refused(*raw_exchange(base, _get("/healthz", b"X-A: " + b"a" * 5000 + b"\r\n")), "4096")
        eight = b"".join(b"X-H%d: v\r\n" % i for i in range(8))
        assert raw_exchange(base, _get("/healthz", eight))[0] == 200
        _assert_refused(*raw_exchange(base, _get("/healthz", eight + b"X-9: v\r\n")), "10")


def test_large_body_after_small_headers_is_not_refused(make_app):
    """The header budget counts the request head only, never the body that follows it."""
    app = make_app()
    with live_server(app) as base:
        create_tenant_live(base, "body-co")
        docs = json.dumps([{"id": str(i), "text": "word " * 100} for i in range(80)]).encode()
        assert len(docs) > 2 * 16384
        head = (f"POST /v1/admin/tenants/body-co/documents HTTP/1.1\r\nHost: t\r\n"
                f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(docs)}\r\nConnection: close\r\n\r\n").encode()
        status, _, body = raw_exchange(base, head + docs)
        assert status == 200, body[:300]
        assert json.loads(body)["inserted"] == 80
        # keep-alive: two requests in one write, each head counted on its own
        pad = b"X-A: " + b"a" * 9000 + b"\r\n"
        two = _get("/healthz", pad).replace(b"Connection: close\r\n", b"") + _get("/healthz", pad)
        assert len(two) > 16384
        host, port = base.rsplit("//", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(two)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert received.count(b"HTTP/1.1 200 OK\r\n") == 2, received[:300]


# --- 8: credentials in query strings never reach the access log --------------------------------

def test_access_log_redacts_credential_query_parameters(make_app, capsys):
    app = make_app()
    secrets_ = ["alk_SECRETSECRETSECRET1", "tok-SECRET2", "pw-SECRET3", "SECRET4", "SECRET5", "SECRET6"]
    query = ("api_key={}&token={}&page=2&Password={}&access_token={}&client_secret={}&X-Api-Key={}"
             .format(*secrets_))
    with live_server(app, log_level="info", access_log=True) as base, recording("uvicorn.access") as logs:
        assert httpx.get(f"{base}/healthz?{query}").status_code == 200
        assert httpx.get(f"{base}/v1/admin/tenants?key=SECRET7&q=visible", headers=ADMIN).status_code == 200
    lines = logs.lines()
    assert len(lines) == 2, lines
    text = "\n".join(lines) + capsys.readouterr().out
    for secret in secrets_ + ["SECRET7"]:
        assert secret not in text
    assert "/healthz?api_key=[REDACTED]&token=[REDACTED]&page=2&Password=[REDACTED]" in lines[0]
    assert "q=visible" in lines[1] and "key=[REDACTED]" in lines[1]


@pytest.mark.parametrize("logged, expected", [
    ("/p?api_key=abc", "/p?api_key=[REDACTED]"),
    ("/p?a=1&api%5Fkey=abc&b=2", "/p?a=1&api%5Fkey=[REDACTED]&b=2"),
    ("/p?Token=abc;sessionid=9&page=3", "/p?Token=[REDACTED];sessionid=[REDACTED]&page=3"),
    ("/p?auth=x=y&secret=&pwd=1", "/p?auth=[REDACTED]&secret=[REDACTED]&pwd=[REDACTED]"),
    ("/p?q=api_key&page=2", "/p?q=api_key&page=2"),
    ("/p?password", "/p?password"),
    ("/p", "/p"),
])
def test_redact_query_string(logged, expected):
    from aetherlink.server import redact_query_string

    assert redact_query_string(logged) == expected


def test_concurrent_admin_writes_are_serialised(make_app, db_path, monkeypatch):
    """Two creates of the same tenant wait for the lock together: one creates, one updates."""
    monkeypatch.setattr("aetherlink.storage.BUSY_TIMEOUT_MS", 30_000, raising=False)
    app = make_app()
    entered = threading.Event()
    original = app.state.service.storage.insert_tenant

    def insert_tenant(*args, **kwargs):
        entered.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(app.state.service.storage, "insert_tenant", insert_tenant)
    arrived = []
    upsert = app.state.service.upsert_tenant

    async def counted_upsert(*args, **kwargs):
        arrived.append(1)
        return await upsert(*args, **kwargs)

    monkeypatch.setattr(app.state.service, "upsert_tenant", counted_upsert)
    results = []
    with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as admin:
        body = {"name": "twin-co", "api_key": "twin-co-key-0123456789"}
        with db_write_locked(db_path):
            threads = [threading.Thread(target=lambda: results.append(
                admin.post("/v1/admin/tenants", json=body, headers=ADMIN))) for _ in range(2)]
            for t in threads:
                t.start()
            assert entered.wait(10)
            for _ in range(1000):  # both requests inside the service before the lock goes
                if len(arrived) == 2:
                    break
                time.sleep(0.01)
            assert len(arrived) == 2
        for t in threads:
            t.join(30)
    assert sorted(r.status_code for r in results) == [200, 201], [r.text for r in results]
