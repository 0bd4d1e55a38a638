"""Uniformly random scores: the floor every method must beat (expected NDCG@10 = 0.227 with 20 candidates)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from promptrec.models import Item, UserContext
from promptrec.retrievers.base import Retriever, tie_break_keys


class RandomRetriever(Retriever):
    """Score = a uniform [0, 1) number hashed from (seed, user, item id): reproducible, position-blind."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def _fit(self, train_histories: dict[str, list[str]], catalog: dict[str, Item]) -> None:
        """Nothing to learn."""

    def _score(self, user: UserContext, candidates: Sequence[Item]) -> np.ndarray:
        # A different domain prefix than rank()'s tie-break, so the two orders are independent.
        keys = tie_break_keys([item.id for item in candidates], f"random-score:{self.seed}", user)
        return keys.astype(float) / 2.0**64
