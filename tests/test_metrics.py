"""Ranking metrics cross-checked against ranx and sklearn; bootstrap statistics behave as documented."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from ranx import Qrels, Run, evaluate
from sklearn.metrics import roc_auc_score

from promptrec.evaluation import (
    CUTOFFS,
    auc,
    bootstrap_ci,
    case_metrics,
    expected_random_ndcg,
    hit_rate_at_k,
    ndcg_at_k,
    paired_comparison,
    reciprocal_rank,
)

# --- per-case metrics ---------------------------------------------------------------------------------


def test_target_at_rank_three() -> None:
    ranked = ["a", "b", "t", "c"]
    assert ndcg_at_k(ranked, "t", 1) == 0.0
    assert ndcg_at_k(ranked, "t", 3) == pytest.approx(0.5)  # 1 / log2(3 + 1)
    assert hit_rate_at_k(ranked, "t", 2) == 0.0
    assert hit_rate_at_k(ranked, "t", 3) == 1.0
    assert reciprocal_rank(ranked, "t") == pytest.approx(1 / 3)


def test_target_first_scores_one_and_absent_target_scores_zero() -> None:
    assert case_metrics(["t", "a"], "t") == {
        **{f"ndcg@{k}": 1.0 for k in CUTOFFS},
        **{f"hr@{k}": 1.0 for k in CUTOFFS},
        "mrr": 1.0,
    }
    assert set(case_metrics(["a", "b"], "t").values()) == {0.0}


@pytest.mark.parametrize(
    ("ranked", "relevant", "k", "message"),
    [
        (["a", "a", "t"], "t", 5, "duplicate"),
        (["a", "t"], "t", 0, "k=0"),
        (["a", "t"], set(), 5, "relevant is empty"),
    ],
)
def test_invalid_inputs_are_named(ranked: list[str], relevant: object, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ndcg_at_k(ranked, relevant, k)  # type: ignore[arg-type]


def _random_cases(n_cases: int, seed: int) -> list[tuple[list[str], set[str]]]:
    rng = random.Random(seed)
    cases = []
    for case in range(n_cases):
        n_items = rng.randint(1, 30)
        ranked = [f"i{case}_{index}" for index in range(n_items)]
        rng.shuffle(ranked)
        # Mostly one target (the protocol); some multi-relevant; some targets missing from a truncated list.
        pool = ranked + [f"missing{case}"]
        relevant = set(rng.sample(pool, 1 if case % 4 else min(len(pool), rng.randint(2, 4))))
        cases.append((ranked, relevant))
    return cases


def test_metrics_equal_ranx_on_random_rankings() -> None:
    cases = _random_cases(400, seed=7)
    qrels = Qrels({f"q{n}": {item: 1 for item in relevant} for n, (_, relevant) in enumerate(cases)})
    run = Run(
        {
            f"q{n}": {item: float(len(ranked) - position) for position, item in enumerate(ranked)}
            for n, (ranked, _) in enumerate(cases)
        }
    )
    names = [f"ndcg@{k}" for k in CUTOFFS] + [f"hit_rate@{k}" for k in CUTOFFS] + ["mrr"]
    expected = evaluate(qrels, run, names, return_mean=False, make_comparable=True)
    # ranx reorders queries by id; map its arrays back through its own query order.
    order = {query: index for index, query in enumerate(run.keys())}
    for n, (ranked, relevant) in enumerate(cases):
        row = order[f"q{n}"]
        for k in CUTOFFS:
            assert ndcg_at_k(ranked, relevant, k) == pytest.approx(expected[f"ndcg@{k}"][row], abs=1e-9)
            hit = expected[f"hit_rate@{k}"][row]
            assert hit_rate_at_k(ranked, relevant, k) == pytest.approx(hit, abs=1e-9)
        assert reciprocal_rank(ranked, relevant) == pytest.approx(expected["mrr"][row], abs=1e-9)


def test_random_ranking_floor_matches_the_published_values() -> None:
    # README: a uniformly random ranking of 1 relevant among 20 scores 5.0 / 14.7 / 22.7 / 35.2.
    assert round(expected_random_ndcg(10, 20), 3) == 0.227
    assert [round(100 * expected_random_ndcg(k, 20), 1) for k in CUTOFFS] == [5.0, 14.7, 22.7, 35.2]
    analytic = sum(1 / math.log2(position + 1) for position in range(1, 11)) / 20
    assert expected_random_ndcg(10, 20) == pytest.approx(analytic, abs=1e-15)


def test_random_ranking_floor_by_enumerating_every_target_position() -> None:
    candidates = [f"c{index}" for index in range(20)]
    mean = np.mean([ndcg_at_k(candidates, target, 10) for target in candidates])
    assert mean == pytest.approx(expected_random_ndcg(10, 20), abs=1e-12)


# --- AUC ----------------------------------------------------------------------------------------------


def test_auc_equals_sklearn_including_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        size = int(rng.integers(2, 60))
        labels = rng.random(size) < 0.4
        labels[0], labels[1] = True, False
        scores = rng.integers(0, 5, size).astype(float)  # few distinct values: many ties
        expected = roc_auc_score(labels, scores)
        assert auc(labels.tolist(), scores.tolist()) == pytest.approx(expected, abs=1e-12)


def test_auc_ties_count_half() -> None:
    assert auc([True, False], [0.3, 0.3]) == 0.5
    assert auc([True, False, False], [0.9, 0.9, 0.1]) == 0.75


def test_auc_with_one_class_names_the_problem() -> None:
    with pytest.raises(ValueError, match="only one class"):
        auc([True, True], [0.1, 0.2])
    with pytest.raises(ValueError, match="equally long"):
        auc([True, False], [0.1])


# --- bootstrap statistics -----------------------------------------------------------------------------


def test_bootstrap_ci_covers_the_mean_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.random(40), rng.random(4000)
    small_low, small_high = bootstrap_ci(small, seed=1)
    large_low, large_high = bootstrap_ci(large, seed=1)
    assert small_low < small.mean() < small_high
    assert large_low < large.mean() < large_high
    assert (large_high - large_low) < (small_high - small_low) / 5  # width shrinks about as 1/sqrt(n)


def test_bootstrap_ci_is_reproducible_and_accepts_per_case_dicts() -> None:
    values = {f"case{index}": float(index % 7) for index in range(100)}
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(list(values.values()), seed=5)
    assert bootstrap_ci(values, seed=5) != bootstrap_ci(values, seed=6)


def test_bootstrap_ci_coverage_is_near_nominal() -> None:
    rng = np.random.default_rng(11)
    covered = 0
    for trial in range(200):
        low, high = bootstrap_ci(rng.normal(0.3, 1.0, 200), n_resamples=1000, seed=trial)
        covered += low <= 0.3 <= high
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_ci_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([0.1, 0.2], confidence=95)


def test_paired_comparison_of_identical_methods() -> None:
    values = {f"u{index}": (index * 0.37) % 1 for index in range(300)}
    result = paired_comparison(values, dict(reversed(values.items())), n_resamples=2000, seed=0)
    assert result.mean_difference == 0.0
    assert result.ci95 == (0.0, 0.0)
    assert result.p_value == 1.0
    assert result.n == 300


def test_paired_comparison_detects_a_real_difference_aligned_by_case_id() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(300)
    a = {f"u{index}": float(value + 0.05) for index, value in enumerate(base)}
    b = {f"u{index}": float(value) for index, value in enumerate(base)}
    shuffled_b = dict(sorted(b.items(), key=lambda pair: pair[1]))  # insertion order must not matter
    result = paired_comparison(a, shuffled_b, n_resamples=2000, seed=0)
    assert result.mean_difference == pytest.approx(0.05)
    assert result.ci95[0] <= 0.05 <= result.ci95[1]
    assert result.p_value == pytest.approx(1 / 2001)


def test_paired_comparison_without_a_difference_is_not_significant() -> None:
    rng = np.random.default_rng(4)
    a = {f"u{index}": float(value) for index, value in enumerate(rng.random(200))}
    b = {f"u{index}": float(value) for index, value in enumerate(rng.random(200))}
    result = paired_comparison(a, b, n_resamples=2000, seed=0)
    assert result.p_value > 0.05
    assert result.ci95[0] < 0 < result.ci95[1]


def test_paired_comparison_requires_the_same_cases() -> None:
    with pytest.raises(ValueError, match="only in a"):
        paired_comparison({"u1": 1.0, "u2": 0.0}, {"u1": 1.0, "u3": 0.0})
