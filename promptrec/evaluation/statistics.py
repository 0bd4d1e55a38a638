"""Uncertainty of mean metrics: percentile bootstrap CIs and a paired two-method comparison.

Resampling is vectorised in chunks so memory stays bounded (about 32 MB per chunk) for any case count.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_CHUNK_CELLS = 4_000_000  # resamples x cases held in memory at once


Values = Sequence[float] | Mapping[str, float] | np.ndarray


def _as_values(values: Values, name: str = "values") -> np.ndarray:
    if isinstance(values, Mapping):
        values = list(values.values())
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty flat sequence of numbers (got shape {array.shape})")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} hold {int((~np.isfinite(array)).sum())} NaN or infinite values")
    return array


def _chunks(n_resamples: int, n_values: int) -> Iterator[int]:
    per_chunk = max(1, _CHUNK_CELLS // n_values)
    for start in range(0, n_resamples, per_chunk):
        yield min(per_chunk, n_resamples - start)


def _check_resamples(n_resamples: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples!r} must be an integer >= 1")


def bootstrap_ci(
    values: Values, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values` (deterministic given `seed`).

    A mapping (per-case values keyed by case id) is read by its values.
    """
    array = _as_values(values)
    _check_resamples(n_resamples)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must lie strictly between 0 and 1 (e.g. 0.95)")
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            array[rng.integers(0, array.size, size=(size, array.size))].mean(axis=1)
            for size in _chunks(n_resamples, array.size)
        ]
    )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedComparison:
    """Method A minus method B over the same cases.

    p_value comes from a two-sided paired sign-flip permutation test: under "no difference" each case's
    difference is equally likely to have either sign, so signs are flipped at random `n_resamples` times
    and p = (1 + #{|flipped mean| >= |observed mean|}) / (1 + n_resamples), which is never 0.
    ci95 is the percentile bootstrap 95% interval of the mean difference.
    """

    mean_difference: float
    ci95: tuple[float, float]
    p_value: float
    n: int
    test: str = "two-sided paired sign-flip permutation test"


def _aligned_differences(a: Mapping[str, float], b: Mapping[str, float]) -> np.ndarray:
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    if only_a or only_b:
        raise ValueError(
            f"per-case values must cover the same case ids: {len(only_a)} only in a (e.g. {only_a[:3]}), "
            f"{len(only_b)} only in b (e.g. {only_b[:3]}); evaluate both methods on the same cases"
        )
    case_ids = sorted(a)
    return _as_values([a[case] for case in case_ids], "a") - _as_values([b[case] for case in case_ids], "b")


def paired_comparison(
    a: Mapping[str, float], b: Mapping[str, float], n_resamples: int = 10_000, seed: int = 0
) -> PairedComparison:
    """Compare two methods' per-case values, aligned by case id (the dict keys)."""
    _check_resamples(n_resamples)
    differences = _aligned_differences(a, b)
    observed = float(differences.mean())
    rng = np.random.default_rng(seed)
    # Sums of the same magnitudes in another order differ by rounding; that must not count as "less extreme".
    threshold = abs(observed) - 1e-12 * max(1.0, float(np.abs(differences).max()))
    extreme = 0
    for size in _chunks(n_resamples, differences.size):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, differences.size))
        extreme += int((np.abs(signs @ differences / differences.size) >= threshold).sum())
    return PairedComparison(
        mean_difference=observed,
        ci95=bootstrap_ci(differences, n_resamples=n_resamples, confidence=0.95, seed=seed),
        p_value=(1 + extreme) / (1 + n_resamples),
        n=int(differences.size),
    )
