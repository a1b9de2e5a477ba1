"""The retrieval-augmented answering pipeline for one tenant's document store.

    question -> terms -> BM25 top candidates -> [rerank] -> top_k sources -> best passage + confidence

Rerank (optional, per tenant default or per request): the BM25 top ``RERANK_DEPTH`` candidates are
re-scored with features that BM25 ignores:

    rerank_score = 0.4 * bm25 / bm25_max_among_candidates
                 + 0.4 * coverage      (idf-weighted share of the distinct query terms in the doc)
                 + 0.2 * proximity     ((m / span) * (m / n): span = tokens in the smallest window
                                        holding all m matched terms, n = distinct query terms;
                                        1.0 when all terms occur adjacent; 0 when fewer than 2 terms
                                        match a multi-term question; 1.0 for a matched one-term one)

So a document holding every query term close together overtakes one that only repeats some of
them (BM25 still rewards repeating one term, up to its tf saturation).

Confidence in [0, 1], computed on the document finally ranked first:

    w(t)       = idf(t) for a term of the tenant's corpus; a term that no document contains
                 weighs as a term found in exactly one document (idf at df = 1), i.e. as the
                 rarest real term, so it matters but cannot swamp the rest of the question
    coverage   = sum(w(t) for query terms t in the doc) / sum(w(t) for all query terms)
    strength   = min(1, bm25(doc) / sum(idf(t) for the query terms in the doc))
    confidence = coverage * (0.5 + 0.5 * strength)

``coverage`` says how much of the question the document addresses; ``strength`` how strongly it
matches the terms it has: 1.0 when they occur at least as strongly as once each in an
average-length document (tf = 1, |d| = avgdl scores exactly idf(t) per term), less in longer,
diluted documents. No matching document, or a question without index terms (only stop words /
punctuation), gives confidence 0.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from .bm25 import BM25Index, Document
from .textproc import tokenize

RERANK_DEPTH = 20
MAX_ANSWER_CHARS = 600
NO_ANSWER = "No matching documents were found for this question."


@dataclass(frozen=True, slots=True)
class Answer:
    answer: str
    sources: tuple[str, ...]
    reranked: bool
    confidence: float


def _coverage(doc: Document, terms: list[str], idfs: dict[str, float], idf_total: float) -> float:
    if idf_total <= 0:
        return 0.0
    return sum(idfs[t] for t in terms if t in doc.tf) / idf_total


def _min_span(position_lists: list[list[int]]) -> int:
    """Length (in tokens) of the smallest window containing one position from every list."""
    k = len(position_lists)
    # k-way sweep: keep one pointer per list, always advance the smallest.
    heap = [(plist[0], i, 0) for i, plist in enumerate(position_lists)]
    heapq.heapify(heap)
    current_max = max(p for p, _, _ in heap)
    best = current_max - heap[0][0] + 1
    while True:
        pos, i, j = heapq.heappop(heap)
        span = current_max - pos + 1
        if span < best:
            best = span
            if best == k:
                return best
        j += 1
        if j >= len(position_lists[i]):
            return best
        nxt = position_lists[i][j]
        if nxt > current_max:
            current_max = nxt
        heapq.heappush(heap, (nxt, i, j))


def proximity(doc: Document, terms: list[str]) -> float:
    matched = [doc.positions[t] for t in terms if t in doc.positions]
    if not matched:
        return 0.0
    if len(matched) == 1:
        return 1.0 if len(terms) == 1 else 0.0
    m = len(matched)
    return (m / _min_span(matched)) * (m / len(terms))


def rerank(
    index: BM25Index,
    terms: list[str],
    candidates: list[tuple[str, float]],
    idfs: dict[str, float],
    idf_total: float,
) -> list[tuple[str, float]]:
    """Re-order BM25 candidates; returns (doc_id, bm25_score) in the new order."""
    if not candidates:
        return candidates
    top = candidates[0][1] or 1.0
    scored = []
    for doc_id, score in candidates:
        doc = index.docs[doc_id]
        value = (
            0.4 * score / top
            + 0.4 * _coverage(doc, terms, idfs, idf_total)
            + 0.2 * proximity(doc, terms)
        )
        scored.append((-value, -score, doc_id, score))
    scored.sort()
    return [(doc_id, score) for _, _, doc_id, score in scored]


def best_passage(doc: Document, terms: list[str], idfs: dict[str, float]) -> str:
    """The passage covering the most query-term idf; ties go to the more informative passage
    (more index terms, counted up to 25, so a bare heading loses to the sentence under it),
    then to the earlier one."""
    best_text, best_key = "", (0.0, 0)
    for text, passage_terms in doc.passages:
        value = sum(idfs[t] for t in terms if t in passage_terms)
        if value <= 0:
            continue
        key = (round(value, 9), min(len(passage_terms), 25))
        if key > best_key:
            best_text, best_key = text, key
    if not best_text:
        best_text = doc.passages[0][0] if doc.passages else doc.text
    if len(best_text) > MAX_ANSWER_CHARS:
        best_text = best_text[: MAX_ANSWER_CHARS - 1].rstrip() + "\u2026"
    return best_text


def answer_question(index: BM25Index, question: str, top_k: int, use_rerank: bool) -> Answer:
    terms = list(dict.fromkeys(tokenize(question)))
    if not terms or not len(index):
        return Answer(NO_ANSWER, (), use_rerank, 0.0)
    unseen = index.idf_for_df(1)
    idfs = {t: (index.idf(t) if t in index.postings else unseen) for t in terms}
    idf_total = sum(idfs.values())
    depth = max(top_k, RERANK_DEPTH) if use_rerank else top_k
    ranked = index.search(terms, depth)
    if not ranked:
        return Answer(NO_ANSWER, (), use_rerank, 0.0)
    if use_rerank:
        ranked = rerank(index, terms, ranked, idfs, idf_total)
    ranked = ranked[:top_k]
    best_id, best_score = ranked[0]
    best_doc = index.docs[best_id]
    coverage = _coverage(best_doc, terms, idfs, idf_total)
    matched_idf = sum(idfs[t] for t in terms if t in best_doc.tf)
    strength = min(1.0, best_score / matched_idf) if matched_idf > 0 else 0.0
    confidence = max(0.0, min(1.0, coverage * (0.5 + 0.5 * strength)))
    return Answer(
        answer=best_passage(best_doc, terms, idfs),
        sources=tuple(doc_id for doc_id, _ in ranked),
        reranked=use_rerank,
        confidence=round(confidence, 4),
    )
