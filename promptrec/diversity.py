"""Diversity: maximal marginal relevance (MMR) re-ranking over item embeddings, and list metrics.

MMR picks, one at a time, the item maximising (1 - lambda) * relevance - lambda * (highest cosine
similarity to an item already picked). Relevance is read from the input order alone (1 at the top, falling
linearly), so lambda = 0 returns the input order unchanged and lambda = 1 only spreads items apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mmr_order(item_ids: Sequence[str], vectors: np.ndarray, diversity: float) -> list[str]:
    """`item_ids` (best first) re-ordered by MMR; `vectors[i]` is item i's unit-length embedding."""
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity={diversity} must be between 0 and 1")
    count = len(item_ids)
    relevance = 1.0 - np.arange(count) / max(count, 1)
    similarity = vectors @ vectors.T
    closest = np.full(count, -np.inf)  # highest similarity to a picked item; -inf before any pick
    remaining = np.ones(count, dtype=bool)
    picked: list[int] = []
    for _ in range(count):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = np.where(remaining, (1.0 - diversity) * relevance - diversity * penalty, -np.inf)
        best = int(np.argmax(value))  # argmax takes the first maximum: ties keep the input order
        picked.append(best)
        remaining[best] = False
        closest = np.maximum(closest, similarity[best])
    return [item_ids[index] for index in picked]


def intra_list_diversity(vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance (1 - similarity) within one list; 0 for fewer than two items."""
    count = len(vectors)
    if count < 2:
        return 0.0
    similarity = vectors @ vectors.T
    return float((count * count - similarity.sum()) / (count * (count - 1)))
