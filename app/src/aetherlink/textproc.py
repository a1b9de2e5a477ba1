"""Tokenisation shared by indexing and querying.

Lower-cased (casefold) runs of Unicode letters and digits, English stop words removed, and a light
"S-stemmer" (Harman 1991) so that plural and singular forms meet ("panels" -> "panel",
"batteries" -> "battery"). Deliberately simple and deterministic: lexical retrieval, no language model.
"""

from __future__ import annotations

import re

_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+|\n+")

STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not of off on once only or other our ours ourselves out over own
    same she should so some such than that the their theirs them themselves then there these they
    this those through to too under until up very was we were what when where which while who whom
    why will with would you your yours yourself yourselves tell please
    """.split()
)


def stem(word: str) -> str:
    """Harman's S-stemmer: strip plural endings only, leave everything else alone."""
    if len(word) <= 3 or not word.endswith("s") or word[-1:].isdigit():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Return the index terms of ``text`` in order (positions matter for the reranker)."""
    out: list[str] = []
    for match in _WORD_RE.finditer(text.casefold()):
        word = match.group()
        if word in STOP_WORDS:
            continue
        out.append(stem(word))
    return out


def split_sentences(text: str) -> list[str]:
    """Split a document into passages (sentences / list items) for answer extraction."""
    parts = [p.strip() for p in _SENTENCE_SPLIT_RE.split(text)]
    return [p for p in parts if p]


def normalize_question(question: str) -> str:
    """Cache key form of a question: case and whitespace differences do not matter."""
    return " ".join(question.casefold().split())
