"""Per-case ranking metrics and AUC. Every value lies in [0, 1]; reports multiply by 100.

Relevance is binary. The usual case is one relevant item (the held-out target), given as a plain id; a
collection of ids is also accepted, in which case NDCG is normalised by the ideal DCG of that many hits.
A ranked list may be shorter than the candidate set: a relevant id that is absent scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np

CUTOFFS: tuple[int, ...] = (1, 5, 10, 20)

Relevant = str | Collection[str]


def _relevant_set(relevant: Relevant) -> frozenset[str]:
    ids = frozenset([relevant]) if isinstance(relevant, str) else frozenset(relevant)
    if not ids:
        raise ValueError("relevant is empty; pass the target id (or a non-empty collection of relevant ids)")
    return ids


def _relevant_ranks(ranked_ids: Sequence[str], relevant: Relevant) -> list[int]:
    """1-based ranks of the relevant ids in the list; duplicates would double-count a hit, so they fail."""
    wanted = _relevant_set(relevant)
    seen: set[str] = set()
    ranks: list[int] = []
    for rank, item_id in enumerate(ranked_ids, start=1):
        if item_id in seen:
            raise ValueError(
                f"ranked_ids[{rank - 1}]={item_id!r} is a duplicate; a ranking lists each id once"
            )
        seen.add(item_id)
        if item_id in wanted:
            ranks.append(rank)
    return ranks


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be an integer >= 1")


def ndcg_at_k(ranked_ids: Sequence[str], relevant: Relevant, k: int) -> float:
    _check_k(k)
    ranks = _relevant_ranks(ranked_ids, relevant)
    dcg = sum(1.0 / math.log2(rank + 1) for rank in ranks if rank <= k)
    ideal_hits = min(k, len(_relevant_set(relevant)))
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, ideal_hits + 1))
    return dcg / ideal


def hit_rate_at_k(ranked_ids: Sequence[str], relevant: Relevant, k: int) -> float:
    _check_k(k)
    return float(any(rank <= k for rank in _relevant_ranks(ranked_ids, relevant)))


def reciprocal_rank(ranked_ids: Sequence[str], relevant: Relevant) -> float:
    """1 / rank of the first relevant id (MRR once averaged); 0 when none is in the list."""
    ranks = _relevant_ranks(ranked_ids, relevant)
    return 1.0 / ranks[0] if ranks else 0.0


def case_metrics(
    ranked_ids: Sequence[str], relevant: Relevant, cutoffs: Sequence[int] = CUTOFFS
) -> dict[str, float]:
    """All metrics of one case, keyed 'ndcg@k', 'hr@k' and 'mrr'."""
    metrics = {f"ndcg@{k}": ndcg_at_k(ranked_ids, relevant, k) for k in cutoffs}
    metrics |= {f"hr@{k}": hit_rate_at_k(ranked_ids, relevant, k) for k in cutoffs}
    metrics["mrr"] = reciprocal_rank(ranked_ids, relevant)
    return metrics


def expected_random_ndcg(k: int, n_candidates: int) -> float:
    """Expected NDCG@k of a uniformly random ranking of one relevant item among `n_candidates`.

    The target is equally likely at each rank, so the expectation is the mean of 1/log2(rank+1) over the
    ranks <= k, divided by n: the floor any method must clearly beat (0.227 for k=10, n=20).
    """
    _check_k(k)
    if n_candidates < 1:
        raise ValueError(f"n_candidates={n_candidates!r} must be >= 1")
    return sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, n_candidates) + 1)) / n_candidates


def auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting 0.5.

    Computed from average ranks (Mann-Whitney U), which gives tied pairs exactly half credit.
    """
    label_array = np.asarray(labels)
    score_array = np.asarray(scores, dtype=float)
    if label_array.ndim != 1 or score_array.ndim != 1 or len(label_array) != len(score_array):
        raise ValueError(
            f"labels ({len(label_array)}) and scores ({len(score_array)}) must be flat and equally long"
        )
    if not np.isin(label_array, (0, 1)).all():
        raise ValueError("labels must be booleans (or 0/1); found other values")
    if not np.isfinite(score_array).all():
        raise ValueError(f"scores hold {int((~np.isfinite(score_array)).sum())} NaN or infinite values")
    positives = label_array.astype(bool)
    n_pos = int(positives.sum())
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        present = "positive" if n_pos else "negative"
        raise ValueError(
            f"AUC is undefined with only one class: all {len(positives)} labels are {present}; "
            "it needs at least one positive and one negative"
        )
    from scipy.stats import rankdata  # imported here: scipy.stats adds seconds to every CLI start

    ranks = rankdata(score_array, method="average")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
