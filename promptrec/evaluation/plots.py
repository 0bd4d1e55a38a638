"""PNG plots of an evaluation (matplotlib, Agg backend: no display needed).

ranking: NDCG@K for K = 1..20 per method; HR@1 and HR@10 by the target's candidate position; NDCG@10 per
history-length slice. tallrec: ROC curve per method; AUC per history-length slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen before pyplot is imported
import numpy as np  # noqa: E402

from promptrec.evaluation.metrics import expected_random_ndcg  # noqa: E402
from promptrec.evaluation.slices import Record  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


def plot_ndcg_curves(metrics: dict[str, Any], n_candidates: int | None, path: Path) -> str:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for method, summary in metrics.items():
        curve = 100 * np.asarray(summary["ndcg_curve"])
        axis.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=method)
    if n_candidates:
        depth = len(next(iter(metrics.values()))["ndcg_curve"])
        expected = [100 * expected_random_ndcg(k, n_candidates) for k in range(1, depth + 1)]
        axis.plot(range(1, depth + 1), expected, "k--", linewidth=1, label="random (analytic)")
    axis.set(xlabel="K", ylabel="NDCG@K (x100)", title="NDCG@K per method", xticks=range(1, 21))
    axis.grid(alpha=0.3)
    axis.legend()
    return _save(figure, path)


def plot_hit_rate_by_position(metrics: dict[str, Any], n_candidates: int | None, path: Path) -> str:
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for axis, name, k in ((axes[0], "hr@1", 1), (axes[1], "hr@10", 10)):
        for method, summary in metrics.items():
            groups = summary["slices"]["target_position"]
            positions = [int(p) for p, s in groups.items() if s["n"]]
            values = [100 * groups[str(p)][name] for p in positions]
            axis.plot(positions, values, marker="o", markersize=3, label=method)
        if n_candidates:
            axis.axhline(
                100 * min(k, n_candidates) / n_candidates,
                color="k",
                linestyle="--",
                linewidth=1,
                label="random (analytic)",
            )
        axis.set(
            xlabel="target position in the candidate list",
            ylabel=f"{name.upper()} (x100)",
            title=f"{name.upper()} by target position (position bias)",
            ylim=(-3, 103),
        )
        if n_candidates:
            axis.set_xticks(range(1, n_candidates + 1))
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(figure, path)


def plot_history_slices(metrics: dict[str, Any], metric: str, floor: float | None, path: Path) -> str:
    """Grouped bars per history bucket with 95% CI whiskers; 'n/a' where a slice has no value."""
    methods = list(metrics)
    buckets = list(metrics[methods[0]]["slices"]["history_length"])
    width = 0.8 / len(methods)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for offset, method in enumerate(methods):
        groups = metrics[method]["slices"]["history_length"]
        x = np.arange(len(buckets)) + (offset - (len(methods) - 1) / 2) * width
        label: str | None = method  # the legend entry goes on the method's first drawn bar
        for position, bucket in zip(x, buckets, strict=True):
            value = groups[bucket].get(metric)
            if value is None:  # an empty slice, or AUC over a single class
                axis.text(position, 1, "n/a", ha="center", fontsize=7, rotation=90)
                continue
            low, high = groups[bucket]["ci95"][metric]
            axis.bar(
                position,
                100 * value,
                width,
                yerr=[[100 * (value - low)], [100 * (high - value)]],
                capsize=3,
                color=f"C{offset}",
                label=label,
            )
            label = None
    if floor is not None:
        axis.axhline(100 * floor, color="k", linestyle="--", linewidth=1, label="random (expected)")
    counts = [metrics[methods[0]]["slices"]["history_length"][b]["n"] for b in buckets]
    axis.set_xticks(np.arange(len(buckets)), [f"{b}\n(n={n})" for b, n in zip(buckets, counts, strict=True)])
    axis.set(
        xlabel="history length",
        ylabel=f"{metric.upper()} (x100, 95% CI)",
        title=f"{metric.upper()} by history length",
        xlim=(-0.5, len(buckets) - 0.5),
    )
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, path)


def plot_roc(results: dict[str, Sequence[Record]], metrics: dict[str, Any], path: Path) -> str:
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for method, records in results.items():
        labels = np.asarray([r["label"] for r in records], dtype=bool)
        scores = np.asarray([r["score"] for r in records], dtype=float)
        order = np.argsort(-scores, kind="stable")
        # Points only where the score changes, so tied scores form one diagonal segment.
        changes = np.r_[np.flatnonzero(np.diff(scores[order])), labels.size - 1]
        true_pos = np.r_[0, np.cumsum(labels[order])[changes]] / max(labels.sum(), 1)
        false_pos = np.r_[0, np.cumsum(~labels[order])[changes]] / max((~labels).sum(), 1)
        value = metrics[method].get("auc")
        label = f"{method} (AUC {100 * value:.1f})" if value is not None else method
        axis.plot(false_pos, true_pos, label=label)
    axis.plot([0, 1], [0, 1], "k--", linewidth=1)
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC of P(yes) scores")
    axis.legend(fontsize=8)
    return _save(figure, path)


def make_plots(
    out: Path,
    metrics: dict[str, Any],
    results: dict[str, Sequence[Record]],
    *,
    ranking: bool,
    n_candidates: int | None,
) -> list[str]:
    """Write the PNGs into `out`; returns their file names (for the report)."""
    if ranking:
        floor = expected_random_ndcg(10, n_candidates) if n_candidates else None
        return [
            plot_ndcg_curves(metrics, n_candidates, out / "ndcg_at_k.png"),
            plot_hit_rate_by_position(metrics, n_candidates, out / "hit_rate_by_position.png"),
            plot_history_slices(metrics, "ndcg@10", floor, out / "ndcg10_by_history_length.png"),
        ]
    return [
        plot_roc(results, metrics, out / "roc.png"),
        plot_history_slices(metrics, "auc", 0.5, out / "auc_by_history_length.png"),
    ]
