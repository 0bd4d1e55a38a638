"""Hard negatives: items item-kNN ranks high for a prefix's history that the user never touched.

A random negative is usually easy to reject (an unrelated game), so a model trained only on those learns
to find the right neighbourhood but not to order the plausible items inside it, which is where NDCG@10 is
decided. A hard negative is drawn from the `pool_size` items with the highest item-kNN score for the
prefix's history (co-occurrence fitted on the training users' sequences only), never from the user's
whole sequence or the withheld evaluation targets. Drawing from a pool rather than taking the top item
keeps likely false negatives (items the user would have liked next) rare.

Measured on Games-200, whose candidates are random (evals/reports/games-pointwise-adapter-v5): a fifth of
the negatives hard left the model where it was, half of them set it back. There, relatedness to the
history is what separates the target, and hard negatives teach the model to distrust it; they are meant
for ranking a retriever's shortlist, where every candidate is related.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import numpy as np

from promptrec.data.catalog import Catalog
from promptrec.errors import RequestError
from promptrec.models import Interaction, UserContext
from promptrec.retrievers.itemknn import ItemKNNRetriever


class HardNegativeMiner:
    """Draws hard negatives for a prefix; `fraction` of a prefix's negatives are hard when a pool exists."""

    def __init__(
        self,
        sequences: Mapping[str, Sequence[str]],
        catalog: Catalog,
        *,
        fraction: float,
        pool_size: int = 50,
    ) -> None:
        if not 0.0 < fraction <= 1.0:
            raise RequestError(f"hard negative fraction={fraction!r} must be in (0, 1]; 0 means none")
        if pool_size < 1:
            raise RequestError(f"hard negative pool_size={pool_size!r} must be >= 1")
        self.fraction = fraction
        self.pool_size = pool_size
        self._items = [catalog[item_id] for item_id in catalog.ids]
        self._ids = np.array(catalog.ids, dtype=object)
        self._retriever = ItemKNNRetriever().fit(sequences, dict(zip(catalog.ids, self._items, strict=True)))

    def describe(self) -> dict[str, object]:
        """What an adapter card records of the mining."""
        return {"retriever": self._retriever.name, "fraction": self.fraction, "pool_size": self.pool_size}

    def hard_count(self, negatives: int, rng: random.Random) -> int:
        """How many of `negatives` are hard: round(fraction * n); one negative is hard with p = fraction."""
        if negatives == 1:
            return int(rng.random() < self.fraction)
        return round(self.fraction * negatives)

    def pool(self, history: Sequence[str], excluded: set[str]) -> list[str]:
        """The highest-scoring items for `history` (score > 0, best first), none of them in `excluded`."""
        user = UserContext(history=[Interaction(item_id=item_id) for item_id in history])
        scores = np.asarray(self._retriever.score(user, self._items))
        ranked = np.argsort(-scores, kind="stable")
        pool: list[str] = []
        for index in ranked:
            if scores[index] <= 0 or len(pool) == self.pool_size:
                break
            if self._ids[index] not in excluded:
                pool.append(self._ids[index])
        return pool

    def draw(self, history: Sequence[str], excluded: set[str], count: int, rng: random.Random) -> list[str]:
        """Up to `count` distinct hard negatives (fewer when the history co-occurs with too few items)."""
        if count == 0:
            return []
        pool = self.pool(history, excluded)
        return rng.sample(pool, min(count, len(pool)))
