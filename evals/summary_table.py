"""One table (and optionally one plot) from several `promptrec eval` runs: NDCG@10 with 95% CIs per method.

Each run is given as LABEL=DIR (DIR holds the run's metrics.json); rows are runs, columns are methods, and
a method's paired difference to the run's reference (when the run computed one) follows its value.

    python evals/summary_table.py --metric ndcg@10 \
        "0 items=evals/reports/cold-start-games-h0" "1 item=evals/reports/cold-start-games-h1" \
        --plot evals/reports/cold-start-games.png --x-label "history items shown"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load_runs(specs: list[str]) -> list[tuple[str, dict]]:
    runs = []
    for spec in specs:
        label, _, folder = spec.partition("=")
        if not folder:
            raise SystemExit(f"{spec!r}: give each run as LABEL=DIR")
        runs.append((label, json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))))
    return runs


def cell(method: dict, metric: str) -> str:
    low, high = method["ci95"][metric]
    text = f"{100 * method[metric]:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
    paired = [value[metric] for key, value in method.items() if key.startswith("vs_") and metric in value]
    if paired:
        difference = paired[0]
        text += f" ({100 * difference['difference']:+.1f}, p={difference['p_value']:.2g})"
    return text


def table(runs: list[tuple[str, dict]], metric: str) -> str:
    methods = list(dict.fromkeys(name for _, metrics in runs for name in metrics))
    lines = [
        f"| run | {' | '.join(methods)} |",
        "|---|" + "---|" * len(methods),
    ]
    for label, metrics in runs:
        cells = [cell(metrics[name], metric) if name in metrics else "" for name in methods]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(runs: list[tuple[str, dict]], metric: str, path: Path, x_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(name for _, metrics in runs for name in metrics))
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for name in methods:
        points = [(x, metrics[name]) for x, (_, metrics) in enumerate(runs) if name in metrics]
        values = [100 * method[metric] for _, method in points]
        errors = [
            [100 * (method[metric] - method["ci95"][metric][0]) for _, method in points],
            [100 * (method["ci95"][metric][1] - method[metric]) for _, method in points],
        ]
        axes.errorbar([x for x, _ in points], values, yerr=errors, marker="o", capsize=3, label=name)
    axes.set_xticks(range(len(runs)), [label for label, _ in runs])
    axes.set(xlabel=x_label, ylabel=f"{metric} ×100 (95% CI)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=DIR of each run, in row order")
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--plot", type=Path, default=None, help="Also draw the metric per run as a PNG.")
    parser.add_argument("--x-label", default="run")
    args = parser.parse_args()
    runs = load_runs(args.runs)
    print(table(runs, args.metric))
    if args.plot is not None:
        plot(runs, args.metric, args.plot, args.x_label)


if __name__ == "__main__":
    main()
