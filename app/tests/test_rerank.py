"""The rerank step: proximity/coverage features, the flag, the tenant default."""

from __future__ import annotations

from aether_testkit import ADMIN, ask, create_tenant, ingest, sample
from aetherlink.bm25 import BM25Index, build_document
from aetherlink.rag import _min_span, answer_question, proximity
from aetherlink.textproc import tokenize

DOCS = [
    # keyword-stuffed, misses "efficiency": BM25 puts it first
    {"id": "stuffed", "text": "Solar solar solar solar solar panel."},
    # all three terms, adjacent, in a long document: the reranker puts it first
    {"id": "report", "text": "This long report covers many topics such as wind turbines, hydro dams, "
     "grid storage, and regional policy. In section four we measure solar panel efficiency under "
     "cloudy skies. Further chapters discuss maintenance schedules, staffing, budgets and "
     "procurement rules for utilities."},
    {"id": "wind", "text": "Wind turbines and hydro dams provide baseline power."},
    {"id": "grid", "text": "Grid storage with batteries smooths demand peaks."},
    {"id": "appliances", "text": "Efficiency standards for appliances."},
]
QUESTION = "solar panel efficiency"


def _index() -> BM25Index:
    idx = BM25Index()
    for d in DOCS:
        idx.upsert(d["id"], d["text"])
    return idx


def test_min_span():
    assert _min_span([[0], [1]]) == 2
    assert _min_span([[0, 10], [5, 11]]) == 2
    assert _min_span([[1, 20], [7], [3, 30]]) == 7


def test_proximity_feature():
    doc = build_document("d", "alpha beta gamma. delta alpha epsilon zeta eta gamma")
    assert proximity(doc, ["alpha", "beta"]) == 1.0
    assert proximity(doc, ["alpha", "gamma"]) == 2 / 3  # "alpha beta gamma"
    assert proximity(doc, ["alpha", "missing"]) == 0.0
    assert proximity(doc, ["alpha"]) == 1.0
    assert proximity(doc, ["nothing"]) == 0.0


def test_rerank_promotes_complete_close_match():
    idx = _index()
    plain = answer_question(idx, QUESTION, 3, use_rerank=False)
    reranked = answer_question(idx, QUESTION, 3, use_rerank=True)
    assert plain.sources[0] == "stuffed"
    assert reranked.sources[0] == "report"
    assert set(plain.sources[:2]) == set(reranked.sources[:2])
    assert "solar panel efficiency" in reranked.answer
    assert reranked.reranked and not plain.reranked
    # the reranked top document covers every term: higher confidence
    assert reranked.confidence > plain.confidence


def test_rerank_considers_candidates_beyond_top_k():
    idx = _index()
    assert answer_question(idx, QUESTION, 1, use_rerank=False).sources == ("stuffed",)
    assert answer_question(idx, QUESTION, 1, use_rerank=True).sources == ("report",)


def test_rerank_flag_and_metrics(client):
    key = create_tenant(client, "energy-co")
    ingest(client, "energy-co", DOCS)
    a = ask(client, key, QUESTION).json()
    b = ask(client, key, QUESTION, rerank=True).json()
    assert a["reranked"] is False and a["sources"][0] == "stuffed"
    assert b["reranked"] is True and b["sources"][0] == "report"
    assert sample(client, "aether_rag_answers_total", tenant="energy-co", rerank="true") == 1
    assert sample(client, "aether_rag_answers_total", tenant="energy-co", rerank="false") == 1


def test_tenant_rerank_default_and_override(client):
    key = create_tenant(client, "vip-energy", rerank_default=True, vip=True)
    ingest(client, "vip-energy", DOCS)
    assert ask(client, key, QUESTION).json()["reranked"] is True
    assert ask(client, key, QUESTION, rerank=False).json()["reranked"] is False
    r = client.post("/v1/admin/tenants", json={"name": "vip-energy", "rerank_default": False}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["changed_fields"] == ["rerank_default"]
    assert ask(client, key, QUESTION).json()["reranked"] is False


def test_rerank_tokens_match_question_terms():
    assert tokenize(QUESTION) == ["solar", "panel", "efficiency"]
