"""In-memory BM25 index for one tenant.

Why implemented here and not taken from PyPI: the usual package (``rank_bm25``) depends on numpy and
rescores every document for every query, and it has no incremental updates. The service needs
upserts by id and an inverted index that only touches the documents containing a query term; that
is ~100 lines of plain Python and keeps the wheelhouse small (no numpy).

Scoring is Okapi BM25 with the non-negative Lucene IDF:
    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))
    score(d, q) = sum_{t in q} idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))
with k1 = 1.2, b = 0.75. Query terms are de-duplicated.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from operator import itemgetter

from .textproc import split_sentences, tokenize

K1 = 1.2
B = 0.75


@dataclass(slots=True)
class Document:
    doc_id: str
    text: str
    length: int
    tf: dict[str, int]
    positions: dict[str, list[int]]
    # (passage text, set of its terms) for answer extraction
    passages: list[tuple[str, frozenset[str]]] = field(default_factory=list)


def build_document(doc_id: str, text: str) -> Document:
    terms = tokenize(text)
    tf: dict[str, int] = {}
    positions: dict[str, list[int]] = {}
    for pos, term in enumerate(terms):
        tf[term] = tf.get(term, 0) + 1
        positions.setdefault(term, []).append(pos)
    passages = [(p, frozenset(tokenize(p))) for p in split_sentences(text)]
    return Document(doc_id, text, len(terms), tf, positions, passages)


class BM25Index:
    def __init__(self) -> None:
        self.docs: dict[str, Document] = {}
        self.postings: dict[str, dict[str, int]] = {}
        self.total_length = 0

    def __len__(self) -> int:
        return len(self.docs)

    @property
    def avgdl(self) -> float:
        return self.total_length / len(self.docs) if self.docs else 0.0

    def upsert(self, doc_id: str, text: str) -> bool:
        """Insert or replace a document; returns False when the stored text is identical."""
        old = self.docs.get(doc_id)
        if old is not None:
            if old.text == text:
                return False
            self._remove(old)
        doc = build_document(doc_id, text)
        self.docs[doc_id] = doc
        self.total_length += doc.length
        for term, count in doc.tf.items():
            self.postings.setdefault(term, {})[doc_id] = count
        return True

    def remove(self, doc_id: str) -> bool:
        """Remove a document; returns False when there was none with that id."""
        doc = self.docs.get(doc_id)
        if doc is None:
            return False
        self._remove(doc)
        return True

    def _remove(self, doc: Document) -> None:
        for term in doc.tf:
            plist = self.postings.get(term)
            if plist is not None:
                plist.pop(doc.doc_id, None)
                if not plist:
                    del self.postings[term]
        self.total_length -= doc.length
        del self.docs[doc.doc_id]

    def idf(self, term: str) -> float:
        return self.idf_for_df(len(self.postings.get(term, ())))

    def idf_for_df(self, df: int) -> float:
        return math.log(1.0 + (len(self.docs) - df + 0.5) / (df + 0.5))

    def search(self, terms: list[str], limit: int) -> list[tuple[str, float]]:
        """Top ``limit`` (doc_id, score) with score > 0, best first; ties broken by doc id."""
        if not self.docs or limit <= 0:
            return []
        avgdl = self.avgdl
        k1b = K1 * B / avgdl if avgdl > 0 else 0.0
        k1nb = K1 * (1.0 - B)
        docs = self.docs
        scores: dict[str, float] = {}
        for term in dict.fromkeys(terms):  # distinct, order kept
            plist = self.postings.get(term)
            if not plist:
                continue
            idf_k = self.idf(term) * (K1 + 1.0)
            get = scores.get
            for doc_id, tf in plist.items():
                scores[doc_id] = get(doc_id, 0.0) + idf_k * tf / (
                    tf + k1nb + k1b * docs[doc_id].length
                )
        if not scores:
            return []
        top = heapq.nlargest(limit, scores.items(), key=itemgetter(1))
        top.sort(key=lambda kv: (-kv[1], kv[0]))  # deterministic order among equal scores
        return top
