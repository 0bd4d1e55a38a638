"""Fuse two rankings of the same candidates into one: weighted reciprocal-rank or min-max score fusion.

    rrf:    fused(i) = w / (c + rank_a(i)) + (1 - w) / (c + rank_b(i))      (ranks from 1, c = 60)
    minmax: fused(i) = w * norm_a(i) + (1 - w) * norm_b(i), norm = (s - min) / (max - min) per list

`a` is the ranking being blended in (the LLM's), `b` the anchor (a retriever's). Equal fused scores are
ordered by `b`'s rank, so weight 0 returns `b`'s ranking exactly and weight 1 returns `a`'s (for minmax,
`a`'s ties then go by `b`). Min-max fusion keeps the anchor's own ties as ties, so a small weight lets
`a` decide only among items `b` cannot tell apart. A list without scores is normalised from its ranks.
A small numpy implementation: ranx's fusion would pull numba into the import chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from promptrec.errors import RequestError

RRF_CONSTANT = 60  # the usual reciprocal-rank-fusion damping constant (Cormack et al. 2009)


class FusionMethod(StrEnum):
    RRF = "rrf"
    MINMAX = "minmax"


def _normalised(ids: Sequence[str], scores: Sequence[float] | None) -> np.ndarray:
    """Scores scaled to [0, 1] (non-finite ones to 0); without scores, 1 - rank / n from the order."""
    if scores is None:
        return 1.0 - np.arange(len(ids), dtype=float) / max(len(ids), 1)
    values = np.asarray(scores, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(len(values))
    low, high = values[finite].min(), values[finite].max()
    values = np.where(finite, values, low)
    return (values - low) / (high - low) if high > low else np.zeros(len(values))


def fuse(
    a_ids: Sequence[str],
    a_scores: Sequence[float] | None,
    b_ids: Sequence[str],
    b_scores: Sequence[float] | None,
    weight: float,
    method: FusionMethod = FusionMethod.RRF,
) -> tuple[list[str], list[float]]:
    """The fused ranking of the ids both lists rank, with its fused scores (see the module docstring)."""
    if not 0.0 <= weight <= 1.0:
        raise RequestError(f"weight={weight!r} must lie in [0, 1] (0: ranking b alone, 1: ranking a alone)")
    if len(set(a_ids)) != len(a_ids) or sorted(a_ids) != sorted(b_ids):
        raise RequestError(
            "fusion needs two full rankings of the same candidates, each listing every candidate once; "
            "rank all candidates (k unset) in both rankers"
        )
    b_rank = {item_id: rank for rank, item_id in enumerate(b_ids)}
    order_b = np.arange(len(b_ids))
    order_a = np.array([b_rank[item_id] for item_id in a_ids])  # a's items, as positions in b's list
    rank_a = np.empty(len(a_ids))
    rank_a[order_a] = np.arange(len(a_ids))  # rank_a[j]: a's rank of b's j-th item (0-based)
    if method is FusionMethod.RRF:
        fused = weight / (RRF_CONSTANT + 1 + rank_a) + (1 - weight) / (RRF_CONSTANT + 1 + order_b)
    else:
        norm_a = np.empty(len(a_ids))
        norm_a[order_a] = _normalised(a_ids, a_scores)
        fused = weight * norm_a + (1 - weight) * _normalised(b_ids, b_scores)
    order = np.lexsort((order_b, -fused))  # ties by b's rank
    return [b_ids[index] for index in order], [float(fused[index]) for index in order]
