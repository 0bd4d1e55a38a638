"""BM25 (bm25s, Lucene variant) over item text; query = the user's history titles, request and preferences.

Documents are the fitted catalogue's items (title, text and attribute values), so IDF reflects item
content only, never interactions. A query is scored against the whole index in one sparse pass (cost
grows with the query terms' posting lists, not the catalogue size), then read off at the candidates;
a document's BM25 score does not depend on which other documents are scored, so this is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from promptrec.errors import RequestError
from promptrec.models import Item, UserContext
from promptrec.retrievers.base import Retriever

STOPWORDS = "en"


def item_text(item: Item) -> str:
    return " ".join([item.title, item.text or "", *item.attributes.values()])


def load_bm25s() -> Any:
    """bm25s, imported on first use rather than with this module: it loads numba/llvmlite when they are
    installed, and vLLM's CPU workers (spawned, so they re-import the `promptrec` CLI module) crash in
    their kernel-override scan when llvmlite is among the imported modules."""
    import bm25s

    return bm25s


def build_bm25_index(documents: Sequence[str], k1: float = 1.5, b: float = 0.75) -> Any:
    """A bm25s index over `documents` (stopwords removed); document i is row i."""
    bm25s = load_bm25s()
    index = bm25s.BM25(k1=k1, b=b)
    corpus = bm25s.tokenize(list(documents), stopwords=STOPWORDS, show_progress=False)
    index.index(corpus, show_progress=False)
    return index


def bm25_query_scores(index: Any, query: str) -> np.ndarray | None:
    """BM25 score of every indexed document for `query`; None when no query word occurs in any document."""
    tokens = load_bm25s().tokenize([query], stopwords=STOPWORDS, return_ids=False, show_progress=False)[0]
    token_ids = index.get_tokens_ids(tokens)  # words absent from every item carry no evidence
    if not token_ids:
        return None
    return np.asarray(index.get_scores(token_ids), dtype=float)


class BM25Retriever(Retriever):
    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        super().__init__()
        self.k1 = k1
        self.b = b
        self.document_of: dict[str, int] = {}
        self.index: Any = None  # a bm25s.BM25 once fitted

    def _fit(self, train_histories: dict[str, list[str]], catalog: dict[str, Item]) -> None:
        self.document_of = {item_id: position for position, item_id in enumerate(catalog)}
        self.index = build_bm25_index([item_text(item) for item in catalog.values()], self.k1, self.b)

    def _score(self, user: UserContext, candidates: Sequence[Item]) -> np.ndarray:
        unknown = [item.id for item in candidates if item.id not in self.document_of]
        if unknown:
            raise RequestError(
                f"{len(unknown)} candidate ids are not in the catalogue bm25 was fitted on "
                f"(e.g. {unknown[:5]}); "
                "include every candidate in the catalogue passed to fit()"
            )
        scores = bm25_query_scores(self.index, " ".join(self.query_texts(user)))
        if scores is None:
            return np.zeros(len(candidates))
        return scores[[self.document_of[item.id] for item in candidates]]
