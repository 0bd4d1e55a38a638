"""Paired difference of one method between two `promptrec eval` runs over the same cases.

`promptrec eval` pairs methods inside one run; a strategy measured as a separate run (demonstrations,
bootstrap, another adapter) is compared with its plain run here, case by case, with the same statistics.
It reads the per-case `results/` folders, which stay where the runs were made (they are not committed):

    python evals/paired_runs.py evals/reports/ml-heldout-pointwise-demos-self \
        evals/reports/ml-heldout-pointwise-hints --method llm --metric ndcg@10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from promptrec.evaluation.statistics import paired_comparison


def per_case(run: Path, method: str, metric: str) -> dict[str, float]:
    path = run / "results" / f"{method}.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: is {run} a finished `promptrec eval` run with {method!r}?")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["case_id"]: row["metrics"][metric] for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="the run whose method is compared")
    parser.add_argument("baseline", type=Path, help="the run it is compared with, over the same cases")
    parser.add_argument("--method", default="llm")
    parser.add_argument("--baseline-method", help="the baseline run's method (default: --method)")
    parser.add_argument("--metric", default="ndcg@10")
    args = parser.parse_args()
    baseline_method = args.baseline_method or args.method
    compared = paired_comparison(
        per_case(args.run, args.method, args.metric), per_case(args.baseline, baseline_method, args.metric)
    )
    low, high = compared.ci95
    print(
        f"{args.metric} {args.run.name}:{args.method} - {args.baseline.name}:{baseline_method}"
        f" = {100 * compared.mean_difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] x100,"
        f" p = {compared.p_value:.2g}, n = {compared.n}"
    )


if __name__ == "__main__":
    main()
