"""Confidence score and the low_confidence flag against the tenant threshold."""

from __future__ import annotations

import math

import pytest
from aether_testkit import ADMIN, ask, create_tenant, ingest, sample
from aetherlink.bm25 import BM25Index
from aetherlink.rag import answer_question


def _idx(*texts: str) -> BM25Index:
    idx = BM25Index()
    for i, t in enumerate(texts):
        idx.upsert(f"d{i}", t)
    return idx


def test_confidence_formula_by_hand():
    idx = _idx("alpha beta", "gamma delta")  # equal lengths: |d| = avgdl
    a = answer_question(idx, "alpha beta", 3, False)
    # every term once in an average-length document: coverage 1, strength 1
    assert a.confidence == 1.0
    half = answer_question(idx, "alpha gamma", 3, False)
    # the top doc covers one of two equally rare terms (coverage 0.5) and matches it fully
    assert half.confidence == 0.5
    unseen = answer_question(idx, "alpha unknownword", 3, False)
    # an unseen term weighs as a df=1 term, i.e. as much as "alpha" here
    assert unseen.confidence == 0.5


def test_confidence_strength_drops_in_long_documents():
    idx = _idx("alpha b c d e f g h", "x")  # |d| = 8, avgdl = 4.5
    a = answer_question(idx, "alpha", 3, False)
    strength = 2.2 / (1 + 1.2 * (0.25 + 0.75 * 8 / 4.5))
    assert a.confidence == pytest.approx(0.5 + 0.5 * strength, abs=1e-4)


def test_unknown_terms_lower_confidence():
    idx = _idx("alpha beta", "gamma delta", "epsilon zeta")
    full = answer_question(idx, "alpha beta", 3, False).confidence
    partial = answer_question(idx, "alpha beta unknownword", 3, False).confidence
    assert 0 < partial < full <= 1


def test_confidence_bounds_on_many_questions(client, tenant):
    for q in ("warranty", "firmware router night", "battery", "express shipping fee regions",
              "nothing relevant", "reset reset reset", "two", "water damage warranty router"):
        c = ask(client, tenant, q).json()["confidence"]
        assert 0.0 <= c <= 1.0 and math.isfinite(c)


def test_low_confidence_flag_follows_threshold(client):
    key = create_tenant(client, "strict-co", lowconf_threshold=0.99)
    ingest(client, "strict-co", [{"id": "a", "text": "Alpha beta gamma. Another sentence here."},
                                 {"id": "b", "text": "Delta epsilon."}])
    partial = ask(client, key, "alpha zzz").json()
    assert partial["confidence"] < 0.99 and partial["low_confidence"] is True
    assert sample(client, "aether_rag_lowconfidence_total", tenant="strict-co") == 1

    r = client.post("/v1/admin/tenants", json={"name": "strict-co", "lowconf_threshold": 0.0}, headers=ADMIN)
    assert r.status_code == 200
    again = ask(client, key, "alpha zzz").json()
    assert again["low_confidence"] is False  # nothing is below 0
    assert sample(client, "aether_rag_lowconfidence_total", tenant="strict-co") == 1


def test_default_threshold_is_half(client, tenant):
    r = client.get("/v1/admin/tenants/acme-corp", headers=ADMIN)
    assert r.json()["lowconf_threshold"] == 0.5
    good = ask(client, tenant, "factory reset button").json()
    assert good["confidence"] >= 0.5 and good["low_confidence"] is False
    bad = ask(client, tenant, "holiday opening hours").json()
    assert bad["low_confidence"] is True


def test_cached_answers_count_as_low_confidence_too(client, tenant):
    ask(client, tenant, "unrelated zebra question")
    assert ask(client, tenant, "unrelated zebra question").json()["cached"] is True
    assert sample(client, "aether_rag_lowconfidence_total", tenant="acme-corp") == 2
    assert sample(client, "aether_rag_answers_total", tenant="acme-corp", rerank="false") == 2
