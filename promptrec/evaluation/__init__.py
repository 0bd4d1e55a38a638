"""Evaluation: per-case ranking metrics, AUC, and bootstrap statistics for comparing methods."""

from promptrec.evaluation.metrics import (
    CUTOFFS,
    auc,
    case_metrics,
    expected_random_ndcg,
    hit_rate_at_k,
    ndcg_at_k,
    reciprocal_rank,
)
from promptrec.evaluation.statistics import PairedComparison, bootstrap_ci, paired_comparison

__all__ = [
    "CUTOFFS",
    "PairedComparison",
    "auc",
    "bootstrap_ci",
    "case_metrics",
    "expected_random_ndcg",
    "hit_rate_at_k",
    "ndcg_at_k",
    "paired_comparison",
    "reciprocal_rank",
]
