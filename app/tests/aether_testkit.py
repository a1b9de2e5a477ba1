"""Helpers shared by the tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

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
