"""Most-popular baseline: score = number of interactions with the item in the training histories."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from promptrec.models import Item, UserContext
from promptrec.retrievers.base import Retriever


class PopularityRetriever(Retriever):
    """Non-personalised; items never seen in training score 0 (ties are then broken by the seeded rule)."""

    name = "popularity"

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def _fit(self, train_histories: dict[str, list[str]], catalog: dict[str, Item]) -> None:
        self.counts = Counter(item_id for items in train_histories.values() for item_id in items)

    def _score(self, user: UserContext, candidates: Sequence[Item]) -> np.ndarray:
        return np.array([self.counts.get(item.id, 0) for item in candidates], dtype=float)
