"""A control for fusions with item-kNN: item-kNN whose ties are broken by popularity instead of a seeded draw.

Item-kNN ties the target with other candidates in many cases (38% on Games-200), so a method fused with it
may gain by ordering those ties, which popularity alone might do as well. This script ranks each case of a
ranking set by (item-kNN score, then popularity), with the baselines fitted on the run's training data, and
compares every method of a finished `promptrec eval` run folder with it, case by case (NDCG@10, paired
sign-flip test). It reads the run's per-case `results/` and prints a Markdown table; nothing is written.

    python evals/tie_break_control.py --dataset ../shared/data/llmrank-games/games200_random_cands20.jsonl \
        --interactions ../shared/data/llmrank-games/Games-6k.valid.inter \
        --run evals/reports/games200-pointwise-games-adapter-v2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from promptrec.evaluation.protocols import judge_ranking, load_task
from promptrec.evaluation.statistics import bootstrap_ci, paired_comparison
from promptrec.retrievers import make_retriever

METRIC = "ndcg@10"


def tie_broken_itemknn(dataset: Path, interactions: Path | None, held_out: bool) -> dict[str, float]:
    """Per-case NDCG@10 of item-kNN with popularity as the tie-break (then item id)."""
    task = load_task(dataset, interactions=interactions, held_out=held_out)
    catalog = {item.id: item for item in task.catalog}
    knn = make_retriever("itemknn").fit(task.train_histories, catalog)
    popularity = make_retriever("popularity").fit(task.train_histories, catalog)
    per_case = {}
    for case in task.cases:
        keys = zip(
            knn.score(case.user, case.candidates), popularity.score(case.user, case.candidates), strict=True
        )
        ranked = sorted(
            zip(keys, case.candidates, strict=True), key=lambda kc: (-kc[0][0], -kc[0][1], kc[1].id)
        )
        per_case[case.case_id] = judge_ranking(case, [item.id for _, item in ranked])["metrics"][METRIC]
    return per_case


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    arguments.add_argument("--dataset", type=Path, required=True)
    arguments.add_argument("--interactions", type=Path)
    arguments.add_argument("--held-out", action="store_true", help="The run used --held-out.")
    arguments.add_argument("--run", type=Path, required=True, help="A `promptrec eval --out` folder.")
    options = arguments.parse_args()

    control = tie_broken_itemknn(options.dataset, options.interactions, options.held_out)
    low, high = bootstrap_ci(control)
    print(
        f"item-kNN, ties by popularity: {METRIC} {100 * sum(control.values()) / len(control):.1f} "
        f"[{100 * low:.1f}, {100 * high:.1f}] over {len(control)} cases\n"
    )
    print(f"| method | {METRIC} | minus the control | 95% CI | p |")
    print("|---|---|---|---|---|")
    for path in sorted((options.run / "results").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        method = {row["case_id"]: row["metrics"][METRIC] for row in rows if row["case_id"] in control}
        if len(method) != len(control):
            continue  # a method run on other cases (e.g. --limit) cannot be paired
        comparison = paired_comparison(method, control)
        low, high = comparison.ci95
        print(
            f"| {path.stem} | {100 * sum(method.values()) / len(method):.1f} | "
            f"{100 * comparison.mean_difference:+.1f} | [{100 * low:+.1f}, {100 * high:+.1f}] | "
            f"{comparison.p_value:.3g} |"
        )


if __name__ == "__main__":
    main()
