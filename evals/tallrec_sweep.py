"""TALLRec sample efficiency: test AUC of the bundled model against the number of training rows.

Reads the `promptrec eval` reports of the TALLRec test set (one per adapter, plus the zero-shot one) and,
where given, the adapter folders for their training figures; writes a Markdown table and a plot beside
TALLRec's published LLaMA-7B numbers. The adapters themselves are trained with

    promptrec finetune --dataset ../shared/data/tallrec/movie/valid.json --out RUN --samples N ...
    promptrec eval --dataset ../shared/data/tallrec/movie/test.json --backend vllm --mode pointwise \
      --adapter RUN --methods llm,random --reference random --out evals/reports/tallrec-movie-N-samples

and this script only collects what they wrote:

    python evals/tallrec_sweep.py --point 0=evals/reports/tallrec-movie \
      --point 16=evals/reports/tallrec-movie-16-samples:../runs/tallrec-movie-16 ... \
      --out evals/reports/tallrec-movie-sweep
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from promptrec.evaluation.protocols import PUBLISHED  # noqa: E402

PUBLISHED_KEY = "tallrec-movie"


def read_point(spec: str) -> dict[str, Any]:
    """`N=REPORT[:RUN]` -> the test AUC (with CI) and, given the run folder, its training figures."""
    samples, _, paths = spec.partition("=")
    report, _, run = paths.partition(":")
    metrics = json.loads((Path(report) / "metrics.json").read_text(encoding="utf-8"))["llm"]
    point: dict[str, Any] = {
        "samples": int(samples),
        "report": report,
        "auc": 100 * metrics["auc"],
        "ci95": [100 * bound for bound in metrics["ci95"]["auc"]],
        "rows": metrics["n"],
    }
    if run:
        card = json.loads((Path(run) / "promptrec_adapter.json").read_text(encoding="utf-8"))
        training, found = card["training"], card["metrics"]
        point["training"] = {
            "steps": training["steps"],
            "best_step": found["best_step"],
            "epochs": training["epochs"],
            "minutes": round(training["train_seconds"] / 60, 1),
            "tokens_per_second": training["tokens_per_second"],
            "peak_rss_mib": training["peak_rss_mib"],
            "validation_base": 100 * found["validation_base_model"],
            "validation_best": 100 * found["validation_best"],
        }
    return point


def published_points() -> list[tuple[int, float]]:
    """TALLRec's (training rows, AUC) pairs, read from the names of the published figures."""
    found = (
        (re.search(r"(\d+) training samples", name), values) for name, values in PUBLISHED[PUBLISHED_KEY]
    )
    return [(int(match.group(1)), values["auc"]) for match, values in found if match]


def markdown(points: list[dict[str, Any]]) -> str:
    published = dict(published_points())
    lines = [
        "| training rows | test AUC [95% CI] | TALLRec LLaMA-7B | epochs | steps (best) | train min | "
        "tok/s | validation AUC base → best |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for point in points:
        low, high = point["ci95"]
        training = point.get("training")
        figures = (
            f"{training['epochs']} | {training['steps']} ({training['best_step']}) | {training['minutes']} | "
            f"{training['tokens_per_second']:.0f} | {training['validation_base']:.1f} → "
            f"{training['validation_best']:.1f}"
            if training
            else "– | – | – | – | –"
        )
        reference = f"{published[point['samples']]:.2f}" if point["samples"] in published else "–"
        lines.append(
            f"| {point['samples']} | {point['auc']:.1f} [{low:.1f}, {high:.1f}] | {reference} | {figures} |"
        )
    return "\n".join(lines)


def steps(point: dict[str, Any]) -> int:
    return point.get("training", {}).get("steps", 0)


def plot(points: list[dict[str, Any]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    # The line follows the longest-trained run per row count; shorter runs of the same rows are dots.
    longest = {point["samples"]: point for point in sorted(points, key=steps)}
    main_points = sorted(longest.values(), key=lambda point: point["samples"])
    shorter = [point for point in points if longest[point["samples"]] is not point]
    # Zero training rows sit at x = 1 on the log axis, labelled 0.
    xs = [max(point["samples"], 1) for point in main_points]
    errors = [
        [point["auc"] - point["ci95"][0] for point in main_points],
        [point["ci95"][1] - point["auc"] for point in main_points],
    ]
    axes.errorbar(
        xs,
        [point["auc"] for point in main_points],
        yerr=errors,
        marker="o",
        capsize=4,
        label="SmolLM2-135M + LoRA (CPU), 95% CI",
    )
    if shorter:
        axes.plot(
            [max(point["samples"], 1) for point in shorter],
            [point["auc"] for point in shorter],
            "o",
            markerfacecolor="none",
            color="grey",
            label="the same rows, fewer steps",
        )
    published = published_points()
    axes.plot(
        [x for x, _ in published],
        [auc for _, auc in published],
        "s--",
        label="TALLRec LLaMA-7B + LoRA (published)",
    )
    axes.axhline(50, color="grey", linewidth=0.8, linestyle=":", label="chance")
    axes.set_xscale("log")
    axes.set_xticks(xs, [str(point["samples"]) for point in main_points])
    axes.set_xlabel("training rows (TALLRec movie valid.json)")
    axes.set_ylabel("test AUC ×100 (1,000 rows)")
    axes.set_title("TALLRec movie: sample efficiency")
    # Below the axes: inside, every corner hides a point.
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--point", action="append", required=True, help="N=REPORT[:RUN], repeatable")
    arguments.add_argument("--out", default="evals/reports/tallrec-movie-sweep")
    options = arguments.parse_args()
    points = sorted(
        (read_point(spec) for spec in options.point), key=lambda point: (point["samples"], steps(point))
    )
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(points, out / "sample_efficiency.png")
    (out / "points.json").write_text(json.dumps(points, indent=2) + "\n", encoding="utf-8")
    print(markdown(points))


if __name__ == "__main__":
    main()
