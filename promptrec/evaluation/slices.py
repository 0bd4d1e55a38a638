"""Slices of judged cases: by history length (cold start vs longer histories) and by the target's position
in the candidate list (a position-biased method scores very differently across positions).

Slices group the per-case records the runner wrote; `summarize` is whatever the report uses for a whole
method, so a slice's numbers mean exactly what the overall ones do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Record = dict[str, Any]
Summary = Callable[[Sequence[Record]], dict[str, Any]]

# (label, shortest, longest) history lengths; None = no upper bound.
HISTORY_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("<=2 (cold start)", 0, 2),
    ("3-5", 3, 5),
    (">5", 6, None),
)


def history_bucket(length: int) -> str:
    for label, shortest, longest in HISTORY_BUCKETS:
        if length >= shortest and (longest is None or length <= longest):
            return label
    raise ValueError(f"history length {length} is negative")


def by_history_length(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Records per history bucket, every bucket present (possibly empty), in bucket order."""
    groups: dict[str, list[Record]] = {label: [] for label, _, _ in HISTORY_BUCKETS}
    for record in records:
        groups[history_bucket(record["history_length"])].append(record)
    return groups


def by_target_position(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Records per 1-based target position in the candidate list, positions 1..max all present."""
    last = max((record["target_position"] for record in records), default=0)
    groups: dict[str, list[Record]] = {str(position): [] for position in range(1, last + 1)}
    for record in records:
        groups[str(record["target_position"])].append(record)
    return groups


def summarize_slices(records: Sequence[Record], summarize: Summary, *, ranking: bool) -> dict[str, Any]:
    """{"history_length": {bucket: summary}, "target_position": {position: summary}}; empty groups get n=0.

    Pointwise (TALLRec) cases have no candidate list, so only the history slice applies to them.
    """
    slices = {"history_length": _summaries(by_history_length(records), summarize)}
    if ranking:
        slices["target_position"] = _summaries(by_target_position(records), summarize)
    return slices


def _summaries(groups: dict[str, list[Record]], summarize: Summary) -> dict[str, dict[str, Any]]:
    return {label: summarize(group) if group else {"n": 0} for label, group in groups.items()}


def position_bias(records: Sequence[Record], cutoff: int = 10) -> dict[str, Any]:
    """How much HR@cutoff depends on where the target sat: a chi-square test of independence between the
    target's position and a hit (scipy.stats.chi2_contingency), and the spread max - min of HR@cutoff over
    positions. A method that reads content, not slots, has a small statistic and a large p."""
    from scipy.stats import chi2_contingency

    groups = {position: group for position, group in by_target_position(records).items() if group}
    hits = [sum(record["target_rank"] <= cutoff for record in group) for group in groups.values()]
    table = [[hit, len(group) - hit] for hit, group in zip(hits, groups.values(), strict=True)]
    rates = [hit / len(group) for hit, group in zip(hits, groups.values(), strict=True)]
    summary: dict[str, Any] = {
        "cutoff": cutoff,
        "positions": len(groups),
        "hr_spread": max(rates) - min(rates),
    }
    if len(groups) > 1 and 0 < sum(hits) < len(records):
        result = chi2_contingency(table)
        summary.update(chi2=float(result.statistic), dof=int(result.dof), p=float(result.pvalue))
    else:
        summary.update(chi2=None, dof=None, p=None)
    return summary
