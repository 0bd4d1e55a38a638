"""Turn judged per-case records into metrics.json (means, 95% CIs, paired comparisons, slices) and the
numbers the Markdown report and plots show.

metrics.json depends only on the records and the seed (bootstrap and permutation draws are seeded, cases
are taken in the task's order), so an interrupted-then-resumed run writes the same bytes as an
uninterrupted one. LLM diagnostics (whose latency varies run to run) go to diagnostics.json and timings
to timings.json. Values are fractions in [0, 1]; the Markdown report multiplies them by 100.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from statistics import fmean
from typing import Any

import numpy as np

from promptrec.evaluation.metrics import CUTOFFS, auc, expected_random_ndcg
from promptrec.evaluation.protocols import CURVE_DEPTH, RANKING_METRICS
from promptrec.evaluation.slices import Record, position_bias, summarize_slices
from promptrec.evaluation.statistics import bootstrap_ci, paired_comparison

COMPARED_METRICS = ("ndcg@10", "hr@10", "mrr")
SLICE_METRICS = ("ndcg@10", "hr@1", "hr@10", "mrr")
N_BOOTSTRAP = 2000
N_PERMUTATIONS = 10_000


def summarize_ranking(
    records: Sequence[Record], seed: int, metrics: Sequence[str] = RANKING_METRICS, curve: bool = True
) -> dict[str, Any]:
    """Mean of each metric over the cases with its percentile-bootstrap 95% CI; the mean NDCG@K curve."""
    summary: dict[str, Any] = {"n": len(records)}
    intervals: dict[str, list[float]] = {}
    for name in metrics:
        values = [record["metrics"][name] for record in records]
        summary[name] = fmean(values)
        intervals[name] = list(bootstrap_ci(values, n_resamples=N_BOOTSTRAP, seed=seed))
    summary["ci95"] = intervals
    tied = [record["target_tied_with"] > 0 for record in records if "target_tied_with" in record]
    if tied:
        summary["target_tie_rate"] = fmean(tied)  # share of cases whose target rank the tie-break decided
    if curve:
        summary["ndcg_curve"] = [fmean(r["ndcg_curve"][k] for r in records) for k in range(CURVE_DEPTH)]
    return summary


def _auc_resamples(labels: np.ndarray, score_sets: Sequence[np.ndarray], seed: int) -> np.ndarray:
    """AUC of each score set on the same bootstrap resamples (single-class resamples are redrawn)."""
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < N_BOOTSTRAP:
        index = rng.integers(0, labels.size, labels.size)
        if 0 < labels[index].sum() < labels.size:
            rows.append([auc(labels[index], scores[index]) for scores in score_sets])
    return np.asarray(rows)


def summarize_pointwise(records: Sequence[Record], seed: int) -> dict[str, Any]:
    labels = np.asarray([record["label"] for record in records])
    scores = np.asarray([record["score"] for record in records], dtype=float)
    summary: dict[str, Any] = {"n": len(records), "positives": int(labels.sum())}
    if 0 < labels.sum() < labels.size:
        low, high = np.quantile(_auc_resamples(labels, [scores], seed)[:, 0], [0.025, 0.975])
        summary |= {"auc": auc(labels, scores), "ci95": {"auc": [float(low), float(high)]}}
    else:  # AUC needs both classes; a slice may hold only one
        summary |= {"auc": None, "ci95": {"auc": None}}
    return summary


def _compare_ranking(records: Sequence[Record], reference: Sequence[Record], seed: int) -> dict[str, Any]:
    compared = {}
    for name in COMPARED_METRICS:
        result = paired_comparison(
            {r["case_id"]: r["metrics"][name] for r in records},
            {r["case_id"]: r["metrics"][name] for r in reference},
            n_resamples=N_PERMUTATIONS,
            seed=seed,
        )
        compared[name] = {
            "difference": result.mean_difference,
            "ci95": list(result.ci95),
            "p_value": result.p_value,
            "n": result.n,
            "test": result.test,
        }
    return compared


def _compare_pointwise(records: Sequence[Record], reference: Sequence[Record], seed: int) -> dict[str, Any]:
    theirs_by_case = {record["case_id"]: record["score"] for record in reference}
    labels = np.asarray([record["label"] for record in records])
    ours = np.asarray([record["score"] for record in records], dtype=float)
    theirs = np.asarray([theirs_by_case[record["case_id"]] for record in records], dtype=float)
    draws = _auc_resamples(labels, [ours, theirs], seed)
    differences = draws[:, 0] - draws[:, 1]
    tail = min((differences <= 0).sum(), (differences >= 0).sum())
    return {
        "auc": {
            "difference": auc(labels, ours) - auc(labels, theirs),
            "ci95": [float(v) for v in np.quantile(differences, [0.025, 0.975])],
            "p_value": min(1.0, 2 * (1 + int(tail)) / (1 + differences.size)),
            "n": len(records),
            "test": "two-sided paired bootstrap of the AUC difference",
        }
    }


def build_metrics(
    results: dict[str, list[Record]], *, ranking: bool, reference: str | None, seed: int
) -> dict[str, Any]:
    """{method: {"n", every metric, "ci95": {metric: [lo, hi]}, "vs_<reference>": {...}, "slices": {...}}}.

    Every method's records must cover the same cases in the same (task) order.
    """
    if ranking:
        summarize = partial(summarize_ranking, seed=seed)
        summarize_slice = partial(summarize_ranking, seed=seed, metrics=SLICE_METRICS, curve=False)
        compare = _compare_ranking
    else:
        summarize = summarize_slice = partial(summarize_pointwise, seed=seed)
        compare = _compare_pointwise
    metrics: dict[str, Any] = {}
    for method, records in results.items():
        summary = summarize(records)
        comparable = ranking or summary["auc"] is not None  # AUC needs both labels present
        if reference is not None and method != reference and comparable:
            summary[f"vs_{reference}"] = compare(records, results[reference], seed)
        summary["slices"] = summarize_slices(records, summarize_slice, ranking=ranking)
        if ranking:
            summary["position_bias"] = position_bias(records)
        metrics[method] = summary
    return metrics


def headline(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The few numbers printed on stdout: n and the main metrics (with CIs) per method."""
    keys = ("ndcg@10", "hr@10", "mrr", "auc")
    return {
        method: {
            "n": s["n"],
            **{k: s[k] for k in keys if k in s},
            "ci95": {k: v for k, v in s["ci95"].items() if k in keys},
        }
        for method, s in metrics.items()
    }


def random_analytic(n_candidates: int) -> dict[str, float]:
    """Expected metrics of a uniformly random ranking of one target among n candidates."""
    expected = {f"ndcg@{k}": expected_random_ndcg(k, n_candidates) for k in CUTOFFS}
    expected |= {f"hr@{k}": min(k, n_candidates) / n_candidates for k in CUTOFFS}
    expected["mrr"] = sum(1 / rank for rank in range(1, n_candidates + 1)) / n_candidates
    return expected


def llm_diagnostics(records: Sequence[Record]) -> dict[str, Any] | None:
    """Parse failures, back-fill, latency and token use of a method that reports diagnostics."""
    found = [record["diagnostics"] for record in records if "diagnostics" in record]
    if not found:
        return None
    statuses = [d["parse_status"] for d in found]
    positions = sum(len(record.get("ranked_ids", [None])) for record in records if "diagnostics" in record)
    return {
        "n": len(found),
        "parse_failure_rate": statuses.count("failed") / len(found),
        "partial_parse_rate": statuses.count("partial") / len(found),
        "cases_with_backfill_rate": sum(d["backfilled"] > 0 for d in found) / len(found),
        "backfilled_position_share": sum(d["backfilled"] for d in found) / max(positions, 1),
        "mean_invalid_mentions": fmean(d["invalid_count"] for d in found),
        "mean_latency_s": fmean(d["latency_s"] for d in found),
        "mean_prompt_tokens": fmean(d["prompt_tokens"] for d in found),
        "mean_completion_tokens": fmean(d["completion_tokens"] for d in found),
        "mean_history_dropped": fmean(d["history_dropped"] for d in found),
    }


# --- Markdown ---------------------------------------------------------------------------------------

RANKING_TIE_BREAK_RULES = (
    "Baselines: candidates with equal scores are ordered by a seeded per-user random order over item ids "
    "(blake2b of seed, user id and item id; see promptrec/retrievers/base.py) -- label-blind and independent "
    "of candidate positions.",
    "LLM, score and pointwise modes: equal scores keep candidate order; generate mode: candidates the model "
    "did not place are back-filled in candidate order. Candidate order is a per-user seeded shuffle (given "
    "as-is by LLMRank ready sets), so it carries no label information; see hit rate by target position.",
    "Leave-one-out chronology: interactions sorted by (timestamp, item id); the last one is the target.",
)
POINTWISE_TIE_BREAK_RULES = (
    "AUC gives tied scores half credit (Mann-Whitney U with average ranks); nothing is re-ordered.",
    "The random baseline's score is a seeded hash of (seed, case id, target title): reproducible and "
    "label-blind.",
)


def _cell(summary: dict[str, Any], name: str) -> str:
    value, interval = summary.get(name), summary.get("ci95", {}).get(name)
    if value is None:
        return "n/a"
    if not interval:
        return f"{100 * value:.1f}"
    return f"{100 * value:.1f} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _results_section(
    metrics: dict[str, Any],
    names: Sequence[str],
    analytic: dict[str, float] | None,
    published: Sequence[tuple[str, dict[str, float]]],
) -> list[str]:
    rows = [[method, str(s["n"]), *(_cell(s, name) for name in names)] for method, s in metrics.items()]
    if analytic:
        rows.append(["random (analytic expectation)", "", *(f"{100 * analytic[name]:.1f}" for name in names)])
    header = ["method", "n", *(name.upper() for name in names)]
    lines = ["## Results (x100, 95% percentile-bootstrap CI over cases)", "", *_table(header, rows), ""]
    ties = [
        f"{method} {100 * s['target_tie_rate']:.0f}%"
        for method, s in metrics.items()
        if "target_tie_rate" in s
    ]
    if ties:
        lines += [
            "Cases whose target tied in score with another candidate (its rank then set by the "
            f"tie-break rule below): {', '.join(ties)}.",
            "",
        ]
    if published:
        shown = [name for name in names if any(name in numbers for _, numbers in published)]
        rows = [
            [source, *(f"{numbers[n]:.2f}" if n in numbers else "" for n in shown)]
            for source, numbers in published
        ]
        lines += ["Published numbers for comparison (x100; other models, often other data):", ""]
        lines += [*_table(["source", *(name.upper() for name in shown)], rows), ""]
    return lines


def _comparison_section(metrics: dict[str, Any], reference: str | None) -> list[str]:
    key = f"vs_{reference}"
    found = [(method, name, c) for method, s in metrics.items() for name, c in s.get(key, {}).items()]
    if not found:
        return []
    rows = [
        [
            method,
            name.upper(),
            f"{100 * c['difference']:+.1f}",
            f"[{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}]",
            f"{c['p_value']:.4f}",
        ]
        for method, name, c in found
    ]
    title = f"## Paired comparison with `{reference}` (difference x100; {found[0][2]['test']})"
    return [title, "", *_table(["method", "metric", "difference", "95% CI", "p"], rows), ""]


def _slice_section(metrics: dict[str, Any], ranking: bool) -> list[str]:
    lines = ["## Slices", "", "### History length (<=2 items = cold start)", ""]
    buckets = list(next(iter(metrics.values()))["slices"]["history_length"])
    rows = []
    for method, summary in metrics.items():
        groups = summary["slices"]["history_length"]
        for name in SLICE_METRICS if ranking else ("auc",):
            cells = [f"{_cell(groups[bucket], name)} (n={groups[bucket]['n']})" for bucket in buckets]
            rows.append([method, name.upper(), *cells])
    lines += [*_table(["method", "metric", *buckets], rows), ""]
    if ranking:
        positions = list(next(iter(metrics.values()))["slices"]["target_position"])
        rows = [
            [method, *(_position_cell(s["slices"]["target_position"][p]) for p in positions)]
            for method, s in metrics.items()
        ]
        lines += ["### Target position in the candidate list: HR@1 / HR@10 (x100)", ""]
        lines += [*_table(["method", *positions], rows), ""]
        lines += [
            "### Position bias: does HR@10 depend on the target's slot?",
            "",
            "Chi-square test of independence between target position and a hit in the top 10 (a method",
            "that reads content has a small statistic and a large p); spread: max - min HR@10 over slots.",
            "",
        ]
        bias_rows = [[method, *_bias_cells(summary["position_bias"])] for method, summary in metrics.items()]
        lines += [*_table(["method", "chi2", "dof", "p", "HR@10 spread (x100)"], bias_rows), ""]
    return lines


def _bias_cells(bias: dict[str, Any]) -> list[str]:
    if bias["chi2"] is None:
        return ["-", "-", "-", f"{100 * bias['hr_spread']:.0f}"]
    return [f"{bias['chi2']:.1f}", str(bias["dof"]), f"{bias['p']:.3g}", f"{100 * bias['hr_spread']:.0f}"]


def _position_cell(summary: dict[str, Any]) -> str:
    return f"{100 * summary['hr@1']:.0f} / {100 * summary['hr@10']:.0f}" if summary["n"] else "-"


def _diagnostics_section(diagnostics: dict[str, Any]) -> list[str]:
    if not diagnostics:
        return []
    names = list(next(iter(diagnostics.values())))
    rows = [
        [method, *(str(d[name]) if isinstance(d[name], int) else f"{d[name]:.3g}" for name in names)]
        for method, d in diagnostics.items()
    ]
    return ["## LLM diagnostics", "", *_table(["method", *names], rows), ""]


def _timings_section(timings: dict[str, Any]) -> list[str]:
    names = ("answered", "invocations", "setup_s", "answer_s", "s_per_case")
    rows = [
        [step, *(f"{t[n]:.3f}" if isinstance(t.get(n), float) else str(t.get(n) or "") for n in names)]
        for step, t in timings.items()
    ]
    return [
        "## Timings (summed over every invocation on this run folder; setup = model load or fit)",
        "",
        *_table(["step", *names], rows),
        "",
    ]


def render_report(
    *,
    task: dict[str, Any],
    config: dict[str, Any],
    metrics: dict[str, Any],
    diagnostics: dict[str, Any],
    timings: dict[str, Any],
    plots: Sequence[str],
    analytic: dict[str, float] | None,
    published: Sequence[tuple[str, dict[str, float]]],
    notes: Sequence[str],
    reference: str | None,
) -> str:
    ranking = task["protocol"] == "ranking"
    options = {key: value for key, value in config.items() if not key.endswith("sha256")}
    lines = ["# promptrec offline evaluation", ""]
    lines += [f"- {key.replace('_', ' ')}: {value}" for key, value in task.items() if key != "data_quality"]
    lines += [f"- run options: `{json.dumps(options)}`", ""]
    lines += _results_section(metrics, RANKING_METRICS if ranking else ("auc",), analytic, published)
    lines += [*(f"- {note}" for note in notes), ""]
    lines += _comparison_section(metrics, reference) + _slice_section(metrics, ranking)
    rules = RANKING_TIE_BREAK_RULES if ranking else POINTWISE_TIE_BREAK_RULES
    lines += ["## Tie-break rules", "", *(f"- {rule}" for rule in rules), ""]
    lines += _diagnostics_section(diagnostics)
    lines += ["## Plots", "", *(f"![{name}]({name})" for name in plots), ""]
    lines += _timings_section(timings)
    if "data_quality" in task:
        lines += ["## Data quality", "", "```", task["data_quality"], "```", ""]
    return "\n".join(lines)
