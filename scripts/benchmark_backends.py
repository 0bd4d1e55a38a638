"""Benchmark backends x modes on the first N users of a ranking set.

For each (backend, mode) it ranks every user's candidates through promptrec, one request at a time
(what a chat-support call does), then sends the very same prompt strings straight to the backend to
time the bare model. promptrec's overhead is the ratio of the two totals.

    python scripts/benchmark_backends.py --users 50 --backends transformers,vllm --modes generate,score \
        --out evals/reports/backend-benchmark

Writes benchmark.json and benchmark.md in --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

from promptrec.backends.base import GenerationConfig
from promptrec.backends.loader import load_backend
from promptrec.data.dataset import load_dataset
from promptrec.evaluation.metrics import ndcg_at_k
from promptrec.models import ParseStatus, RankMode
from promptrec.prompting.builder import PromptBudget, build_prompts
from promptrec.prompting.constraints import answer_constraint
from promptrec.recommender import Recommender

DEFAULT_DATASET = "../shared/data/llmrank-games/games200_random_cands20.jsonl"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bare_backend_seconds(recommender: Recommender, requests: list, mode: RankMode) -> float:
    """Time the backend alone on the exact prompts promptrec would send (prompt building excluded)."""
    template = recommender.templates.get(None, mode)
    built = [
        build_prompts(request, template, recommender.backend.formatter, recommender.budget)
        for request in requests
    ]
    backend, contract = recommender.backend, template.contract
    backend.reset_cache()  # promptrec just sent these prompts; a warm prefix cache would flatter the bare run
    started = time.perf_counter()
    for request, prompts in zip(requests, built, strict=True):
        if mode is RankMode.GENERATE:
            names = prompts.labels or [item.id for item in request.candidates]
            constraint = answer_constraint(contract, names) if recommender.constrained else None
            config = GenerationConfig(max_new_tokens=contract.max_new_tokens, structured=constraint)
            backend.generate(prompts.texts, config)
        elif mode is RankMode.SCORE:
            backend.next_token_logprobs(prompts.texts, prompts.labels)
        else:
            backend.next_token_logprobs(prompts.texts, [contract.yes_label, contract.no_label])
    return time.perf_counter() - started


def measure(recommender: Recommender, cases: list, mode: RankMode) -> dict:
    requests = [case.to_request(mode=mode) for case in cases]
    recommender.rank(requests[0])  # warm-up: first-call compilation and caches are not per-request cost
    recommender.backend.reset_cache()
    latencies, results = [], []
    started = time.perf_counter()
    for request in requests:
        request_started = time.perf_counter()
        results.append(recommender.rank(request))
        latencies.append(time.perf_counter() - request_started)
    total = time.perf_counter() - started
    bare = bare_backend_seconds(recommender, requests, mode)
    prompt_tokens = sum(result.diagnostics.prompt_tokens for result in results)
    candidate_count = sum(len(request.candidates) for request in requests)
    off_list = sum(
        len(set(result.item_ids) - {item.id for item in request.candidates})
        for request, result in zip(requests, results, strict=True)
    )
    return {
        "users": len(requests),
        "requests_per_s": len(requests) / total,
        "prompt_tokens_per_s": prompt_tokens / total,
        "latency_p50_s": statistics.median(latencies),
        "latency_p95_s": percentile(latencies, 0.95),
        "parse_failure_rate": sum(r.diagnostics.parse_status is ParseStatus.FAILED for r in results)
        / len(results),
        "backfill_rate": sum(r.diagnostics.missing_count for r in results) / candidate_count,
        "invalid_mentions": sum(r.diagnostics.invalid_count for r in results),
        "off_list_items_returned": off_list,
        "ndcg@10": statistics.fmean(
            ndcg_at_k(result.item_ids, case.target_id, 10)
            for case, result in zip(cases, results, strict=True)
        ),
        "promptrec_seconds": total,
        "bare_backend_seconds": bare,
        "overhead_ratio": total / bare,
    }


def markdown_table(rows: list[dict]) -> str:
    header = (
        "| backend | mode | req/s | prompt tok/s | p50 s | p95 s | parse fail | backfill | off-list "
        "| NDCG@10 | overhead (× bare) |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['backend']} | {r['mode']} | {r['requests_per_s']:.3f} | {r['prompt_tokens_per_s']:.0f} | "
        f"{r['latency_p50_s']:.2f} | {r['latency_p95_s']:.2f} | {r['parse_failure_rate']:.1%} | "
        f"{r['backfill_rate']:.1%} | {r['off_list_items_returned']} | {100 * r['ndcg@10']:.1f} | "
        f"{r['overhead_ratio']:.3f} |"
        for r in rows
    ]
    return header + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--backends", default="transformers,vllm")
    parser.add_argument("--modes", default="generate,score")
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("evals/reports/backend-benchmark"))
    args = parser.parse_args()

    cases = load_dataset(Path(args.dataset)).cases[: args.users]
    rows = []
    for backend_name in args.backends.split(","):
        recommender = Recommender(
            load_backend(backend_name), budget=PromptBudget(max_history_items=args.max_history)
        )
        for mode_name in args.modes.split(","):
            print(f"{backend_name} / {mode_name}: {len(cases)} users...", flush=True)
            row = {
                "backend": backend_name,
                "mode": mode_name,
                **measure(recommender, cases, RankMode(mode_name)),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
        recommender.backend.close()
        del recommender
        gc.collect()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(rows, indent=2))
    (args.out / "benchmark.md").write_text(markdown_table(rows))
    print(markdown_table(rows))


if __name__ == "__main__":  # vLLM starts worker processes: keep the entry point guarded
    main()
