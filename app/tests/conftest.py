"""Shared fixtures: one temporary SQLite file per test, a controllable clock, API helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

# the helpers module sits beside this file; make it importable whatever rootdir/config pytest uses
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aether_testkit import ADMIN_KEY, CORPUS, FakeClock, create_tenant, ingest
from aetherlink.app import create_app
from aetherlink.config import Settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "aetherlink.db")


@pytest.fixture
def make_client(db_path, clock):
    """Factory: a TestClient on a fresh app over the test's DB file (settings overridable)."""
    apps = []

    def factory(**overrides) -> TestClient:
        values = {"admin_key": ADMIN_KEY, "db_path": db_path, "log_level": "warning"}
        values.update(overrides)
        app = create_app(Settings(**values), clock=clock)
        apps.append(app)
        return TestClient(app, raise_server_exceptions=False)

    yield factory
    for app in apps:
        app.state.service.close()


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def tenant(client) -> str:
    """A tenant 'acme-corp' with the small CORPUS; returns its API key."""
    key = create_tenant(client, "acme-corp")
    ingest(client, "acme-corp", CORPUS)
    return key
