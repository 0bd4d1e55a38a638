"""Baseline retrievers: candidate generation for real use and reference points in evaluation."""

from __future__ import annotations

import inspect
from typing import Any

from promptrec.errors import RequestError
from promptrec.retrievers.base import Retriever
from promptrec.retrievers.bm25 import BM25Retriever
from promptrec.retrievers.embedding import EmbeddingRetriever
from promptrec.retrievers.itemknn import ItemKNNRetriever
from promptrec.retrievers.popularity import PopularityRetriever
from promptrec.retrievers.random_retriever import RandomRetriever

RETRIEVERS: dict[str, type[Retriever]] = {
    "random": RandomRetriever,
    "popularity": PopularityRetriever,
    "bm25": BM25Retriever,
    "itemknn": ItemKNNRetriever,
    "embedding": EmbeddingRetriever,
}


class UnknownRetrieverError(RequestError, ValueError):
    """A retriever name or option that does not exist."""


def make_retriever(name: str, **options: Any) -> Retriever:
    """A new, unfitted retriever by registry name, e.g. make_retriever("random", seed=3)."""
    if name not in RETRIEVERS:
        valid = ", ".join(sorted(RETRIEVERS))
        raise UnknownRetrieverError(f"unknown retriever {name!r}; valid names: {valid}")
    retriever_class = RETRIEVERS[name]
    try:
        inspect.signature(retriever_class).bind(**options)
    except TypeError as exc:
        raise UnknownRetrieverError(
            f"retriever {name!r} does not accept options {sorted(options)}: {exc}; "
            f"its options are {list(inspect.signature(retriever_class).parameters)}"
        ) from exc
    return retriever_class(**options)


__all__ = [
    "RETRIEVERS",
    "BM25Retriever",
    "EmbeddingRetriever",
    "ItemKNNRetriever",
    "PopularityRetriever",
    "RandomRetriever",
    "Retriever",
    "UnknownRetrieverError",
    "make_retriever",
]
