"""The full-catalogue protocol: held-out targets ranked against every catalogue item.

Each user's held-out last interaction (by timestamp, then item id) is the target, or, for a ready set
with its training log (`--interactions`), each case's own target; the candidates are all catalogue items
outside the user's history (sampled negatives and ready candidate lists are unused).
A method returns its top 20; Recall@K (one target: the hit rate) and NDCG@K are computed over that
list, so an item beyond rank 20 counts as a miss. Methods: a retriever alone (`itemknn`) or a retriever
shortlisting `--rerank-top` items for the LLM to order (`itemknn+llm`, promptrec.strategies
.retrieve_then_rank). Results are resumable like `promptrec eval`'s (one judged line per case).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from promptrec.errors import RequestError
from promptrec.evaluation.metrics import hit_rate_at_k, ndcg_at_k, reciprocal_rank
from promptrec.evaluation.protocols import Protocol, RankingTask, describe_task, load_task
from promptrec.evaluation.report import summarize_ranking
from promptrec.evaluation.runner import (
    Answer,
    RankerMethod,
    RunConfig,
    TimingLog,
    open_run_dir,
    read_results,
    run_method,
)
from promptrec.evaluation.statistics import paired_comparison
from promptrec.evaluation.strategy_methods import fitted_retriever
from promptrec.models import RankingCase, RankMode, RankRequest
from promptrec.ranker import Ranker, RetrieverRanker
from promptrec.retrievers import RETRIEVERS
from promptrec.strategies.retrieve_then_rank import RetrieveThenRank, catalogue_request

CUTOFFS = (5, 10, 20)
DEPTH = max(CUTOFFS)  # length of the list each method returns
METRICS = (*(f"recall@{k}" for k in CUTOFFS), *(f"ndcg@{k}" for k in CUTOFFS), "mrr@20")
COMPARED = ("recall@10", "ndcg@10", "recall@20")
DEFAULT_METHODS = ("itemknn", "itemknn+llm")
DEFAULT_RERANK_TOP = 20
LLM_SUFFIX = "+llm"


def catalogue_methods() -> tuple[str, ...]:
    names = tuple(name for name in RETRIEVERS if name != "random")
    return (*names, *(name + LLM_SUFFIX for name in names))


def load_catalogue_task(config: RunConfig) -> RankingTask:
    dataset = Path(config.dataset)
    ready_set = dataset.suffix == ".jsonl"
    if ready_set != (config.interactions is not None):
        raise RequestError(
            f"--protocol full-catalogue: {dataset.name} needs "
            + (
                "--interactions with its training log (e.g. Games-6k.valid.inter), whose catalogue and "
                "histories the retrievers use; its own candidate lists are not used"
                if ready_set
                else "no --interactions: a leave-one-out log (a MovieLens folder, an atomic RecBole .inter) "
                "trains the retrievers on its own histories"
            )
        )
    task = load_task(
        dataset,
        Protocol.RANKING,
        interactions=None if config.interactions is None else Path(config.interactions),
        limit=config.limit,
        n_negatives=config.n_negatives,
        seed=config.seed,
        held_out=config.held_out,
        history_items=config.history_items,
    )
    targets = (
        "each case's target from the ready set"
        if ready_set
        else "leave-one-out: each user's last interaction by (timestamp, item id) is the target"
    )
    description = (
        f"full catalogue, {targets}, ranked against all {len(task.catalog)} catalogue items minus the user's "
        "(shown) history"
    )
    if config.history_items is not None:
        description += f"; cold start: each case shows only its newest {config.history_items} history items"
    return replace(task, description=description)


def judge_catalogue(case: RankingCase, answer: Answer) -> dict[str, Any]:
    """Recall@K / NDCG@K of the returned list; refuses lists with repeats or history items."""
    ranked = answer.ranked_ids
    history = {event.item_id for event in case.user.history}
    if len(set(ranked)) != len(ranked) or history & set(ranked):
        raise RequestError(
            f"case {case.case_id}: the method returned repeated or history items; a catalogue ranking lists "
            "distinct items the user has not interacted with"
        )
    metrics = {f"recall@{k}": hit_rate_at_k(ranked, case.target_id, k) for k in CUTOFFS}
    metrics |= {f"ndcg@{k}": ndcg_at_k(ranked, case.target_id, k) for k in CUTOFFS}
    metrics["mrr@20"] = reciprocal_rank(ranked[:DEPTH], case.target_id)
    rank = ranked.index(case.target_id) + 1 if case.target_id in ranked else None
    return {"target_rank": rank, "metrics": metrics, "ranked_ids": ranked}


def _builder(name: str, task: RankingTask, config: RunConfig, llm: Callable[[], Ranker]) -> Callable[[], Any]:
    def build() -> RankerMethod:
        retriever = fitted_retriever(name.removesuffix(LLM_SUFFIX), task, config.seed)
        if not name.endswith(LLM_SUFFIX):
            return RankerMethod(name, RetrieverRanker(retriever, config.seed))
        n = config.rerank_top or DEFAULT_RERANK_TOP
        return RankerMethod(name, RetrieveThenRank(retriever, llm(), n, config.seed, name=name))

    return build


def run_full_catalogue(
    config: RunConfig,
    out: Path,
    llm: Callable[[], Ranker],
    progress: Callable[[str], Callable[[int, int, int], None] | None] = lambda name: None,
) -> dict[str, Any]:
    """Run (or resume) every method, then write metrics.json and report.md into `out`."""
    open_run_dir(out, config)
    task = load_catalogue_task(config)
    catalogue = list(task.catalog)
    mode = RankMode(config.mode)

    def make_requests(cases: Sequence[RankingCase]) -> list[RankRequest]:
        return [
            catalogue_request(
                case.user, catalogue, case.history_items, k=DEPTH, mode=mode, template=config.llm.template
            )
            for case in cases
        ]

    timings = TimingLog(out)
    for name in config.methods:
        run_method(
            name,
            _builder(name, task, config, llm),
            task,
            out,
            on_progress=progress(name),
            timings=timings,
            make_requests=make_requests,
            judge=judge_catalogue,
        )
    results = {name: read_results(out, name, task) for name in config.methods}
    metrics = _metrics(results, config.reference or None, config.seed)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_report(task, config, metrics, timings.read()), encoding="utf-8")
    return metrics


def _metrics(results: dict[str, list[dict[str, Any]]], reference: str | None, seed: int) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for name, records in results.items():
        metrics[name] = summarize_ranking(records, seed, metrics=METRICS, curve=False)
        if reference and name != reference:
            metrics[name][f"vs_{reference}"] = {
                metric: _paired(records, results[reference], metric, seed) for metric in COMPARED
            }
    return metrics


def _paired(records: list[dict[str, Any]], reference: list[dict[str, Any]], metric: str, seed: int) -> dict:
    result = paired_comparison(
        {r["case_id"]: r["metrics"][metric] for r in records},
        {r["case_id"]: r["metrics"][metric] for r in reference},
        seed=seed,
    )
    return {"difference": result.mean_difference, "ci95": list(result.ci95), "p_value": result.p_value}


def _percent(value: float, interval: Sequence[float]) -> str:
    return f"{100 * value:.2f} [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"


def _report(task: RankingTask, config: RunConfig, metrics: dict[str, Any], timings: dict[str, Any]) -> str:
    described = describe_task(task)
    lines = [
        "# Full-catalogue evaluation",
        "",
        f"- data: `{os.path.relpath(described['source'])}`, {described['cases']} users",  # never absolute
        f"- protocol: {described['description']}",
        f"- retriever statistics from: {described['baseline_statistics_from']}",
    ]
    if any(name.endswith(LLM_SUFFIX) for name in config.methods):
        lines.append(
            f"- LLM: backend {config.llm.backend}, model {config.llm.model or 'bundled SmolLM2-135M'}, "
            f"adapter {config.llm.adapter or 'the package default'}, mode {config.mode}, reranking the "
            f"retriever's top {config.rerank_top or DEFAULT_RERANK_TOP}"
        )
    lines += [
        "- values x100 with percentile-bootstrap 95% CIs; a target outside the top 20 counts as a miss",
        "",
        "| method | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for name, summary in metrics.items():
        cells = [_percent(summary[metric], summary["ci95"][metric]) for metric in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if config.reference:
        lines += ["", f"Paired differences against `{config.reference}` (x100, 95% CI, sign-flip p):", ""]
        lines += ["| method | " + " | ".join(COMPARED) + " |", "|---|" + "---|" * len(COMPARED)]
        for name, summary in metrics.items():
            compared = summary.get(f"vs_{config.reference}")
            if compared:
                cells = [
                    f"{_percent(c['difference'], c['ci95'])} p={c['p_value']:.3g}"
                    for c in (compared[m] for m in COMPARED)
                ]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Timings (seconds): "
        + ", ".join(f"{step} {entry['setup_s'] + entry['answer_s']:.0f}" for step, entry in timings.items()),
    ]
    return "\n".join(lines) + "\n"
