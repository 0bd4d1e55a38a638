"""Evaluation protocols: where the cases come from, and how one answer is judged against its label.

Two protocols:
  ranking -- rank 1 target among N candidates (an LLMRank ready set, or leave-one-out from a log where
             each user's last interaction by (timestamp, item id) is held out and N negatives the user
             never touched are sampled with a per-user seed);
  tallrec -- one yes/no question per TALLRec row; the score log P(yes) - log P(no) is judged by AUC.

Label safety: methods only ever see `RankRequest`s built by `to_request`, which carry no target. The
`judge_*` functions below are the one place a case's `target_id` or `label` is read.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain
from pathlib import Path
from typing import Any

from promptrec.data.catalog import Catalog
from promptrec.data.dataset import load_dataset
from promptrec.data.recbole import find_item_file, inter_form, load_item_file
from promptrec.data.splits import held_out_users, llmrank_train_histories
from promptrec.data.tallrec import PointwiseCase, load_tallrec
from promptrec.errors import DataError, RequestError
from promptrec.evaluation.metrics import CUTOFFS, case_metrics, ndcg_at_k
from promptrec.models import RankingCase

RANKING_METRICS = (*(f"ndcg@{k}" for k in CUTOFFS), *(f"hr@{k}" for k in CUTOFFS), "mrr")
CURVE_DEPTH = 20  # NDCG@K is recorded per case for K = 1..20 (the NDCG@K curve)


# Published numbers shown beside ours (values x100), by the task's reference_key. Other setups: context only.
PUBLISHED: dict[str, list[tuple[str, dict[str, float]]]] = {
    "games": [
        (
            "LLMRank GPT-4, Games, 1 target + 19 random (Hou et al. 2024)",
            {"ndcg@1": 39.50, "ndcg@5": 58.22, "ndcg@10": 62.88, "ndcg@20": 65.25},
        ),
    ],
    "movielens": [
        (
            "LLMRank gpt-3.5-turbo in-context, ML-1M (not this dataset)",
            {"ndcg@1": 21.77, "ndcg@5": 39.59, "ndcg@10": 45.83, "ndcg@20": 51.62},
        ),
        (
            "LLMRank ChatGPT, ML-1M, 200 users",
            {"ndcg@1": 23.33, "ndcg@5": 42.07, "ndcg@10": 48.80, "ndcg@20": 53.73},
        ),
        ("LLMRank GPT-4, ML-1M", {"ndcg@1": 15.50, "ndcg@5": 40.65, "ndcg@10": 46.74, "ndcg@20": 48.42}),
        (
            "LLMRank Alpaca-7B, ML-1M (~random)",
            {"ndcg@1": 4.00, "ndcg@5": 13.92, "ndcg@10": 23.09, "ndcg@20": 31.54},
        ),
        (
            "SASRec trained on ML-1M (not zero-shot)",
            {"ndcg@1": 61.39, "ndcg@5": 76.39, "ndcg@10": 78.89, "ndcg@20": 79.79},
        ),
    ],
    "generic": [
        ("RecAI RecLM-eval Qwen2.5-7B, Amazon Fashion, 20 candidates", {"ndcg@10": 28.4}),
        ("RecAI RecLM-eval Qwen2.5-14B, Amazon Fashion, 20 candidates", {"ndcg@10": 40.7}),
    ],
    "tallrec-movie": [
        ("TALLRec LLaMA-7B+LoRA, 16 training samples", {"auc": 67.24}),
        ("TALLRec LLaMA-7B+LoRA, 64 training samples", {"auc": 67.48}),
        ("TALLRec LLaMA-7B+LoRA, 256 training samples", {"auc": 71.98}),
        ("best non-LLM baseline in TALLRec (at most)", {"auc": 54.2}),
    ],
    "tallrec-book": [
        ("TALLRec LLaMA-7B+LoRA, 16 training samples", {"auc": 56.36}),
        ("TALLRec LLaMA-7B+LoRA, 64 training samples", {"auc": 60.39}),
        ("TALLRec LLaMA-7B+LoRA, 256 training samples", {"auc": 64.38}),
        ("best non-LLM baseline in TALLRec (at most)", {"auc": 50.2}),
    ],
}
PUBLISHED_NOTES = {
    "games": "LLMRank bootstrapping (3 shuffled candidate orders, scores summed) adds about +8 NDCG@10 "
    "on Games.",
    "movielens": "LlamaRec on MovieLens latest-small (leave-one-out, ties by (timestamp, item id)): "
    "Recall@10 0.1524 vs 0.1426 for its retriever (a different candidate protocol).",
}


class Protocol(StrEnum):
    AUTO = "auto"
    RANKING = "ranking"
    TALLREC = "tallrec"
    FULL_CATALOGUE = "full-catalogue"  # leave-one-out against every catalogue item (full_catalogue.py)


@dataclass(frozen=True)
class RankingTask:
    """Ranking cases plus what the baselines may learn from (train histories only, never a target)."""

    source: str
    description: str
    cases: list[RankingCase]
    train_histories: dict[str, list[str]]
    catalog: Catalog
    train_source: str
    reference_key: str  # which published numbers the report shows beside ours
    quality_summary: str

    protocol = Protocol.RANKING


@dataclass(frozen=True)
class PointwiseTask:
    source: str
    description: str
    cases: list[PointwiseCase]
    reference_key: str

    protocol = Protocol.TALLREC


Task = RankingTask | PointwiseTask


def shown_path(path: Path) -> str:
    """How reports and run.json name a file: relative to the working directory, never a resolved absolute
    path that names the machine it ran on."""
    return os.path.relpath(path) if path.is_absolute() else str(path)


def detect_protocol(dataset: Path) -> Protocol:
    """A TALLRec file is a .json list of instruction rows; everything else load_dataset knows is ranking."""
    return Protocol.TALLREC if dataset.suffix == ".json" else Protocol.RANKING


def fingerprint(path: Path) -> str:
    """sha256 over a file, or over a folder's files (names and bytes), so a resumed run sees the same data."""
    if not path.exists():
        raise DataError("does not exist; check --dataset / --interactions", path=str(path))
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _reference_key(path: Path, protocol: Protocol) -> str:
    name = str(path).lower()
    if protocol is Protocol.TALLREC:
        return "tallrec-book" if "book" in name else "tallrec-movie" if "movie" in name else "tallrec"
    if "games" in name:
        return "games"
    if any(mark in name for mark in ("movielens", "ml-", "ml_", "u.data", "ratings")):
        return "movielens"
    return "generic"


def check_train_ends_with_history(
    cases: Sequence[RankingCase], train: dict[str, list[str]], source: str
) -> None:
    """Label-blind guard: each evaluated user's train history must end exactly where the case history ends.

    If the interactions file ran past the case history (e.g. a .test.inter holding the targets), the
    baselines would count the targets; this compares histories only, never the target.
    """
    for case in cases:
        history = [event.item_id for event in case.user.history]
        known = train.get(case.case_id)
        if known is None:
            raise DataError(
                f"user {case.case_id} of the dataset has no row here; pass the interactions file of the "
                "same split (for LLMRank Games: Games-6k.valid.inter)",
                path=source,
            )
        if history and known[-len(history) :] != history:
            raise DataError(
                f"user {case.case_id}'s train history does not end with their case history, so it may hold "
                "later items (a target); pass the .valid.inter file of the same split, not .test.inter",
                path=source,
            )


def interaction_histories(interactions: Path, catalog: Catalog) -> tuple[dict[str, list[str]], Catalog]:
    if interactions.suffix != ".inter" or inter_form(interactions) != "sequence":
        raise RequestError(
            f"--interactions {interactions}: expected an LLMRank sequence .inter file "
            "(user_id, item_id_list, item_id) such as Games-6k.valid.inter"
        )
    train = llmrank_train_histories(interactions)
    items = load_item_file(find_item_file(interactions))
    merged = Catalog.from_items(chain(catalog, items), source=str(interactions))
    unknown = sorted({item for history in train.values() for item in history if item not in merged})
    if unknown:
        raise DataError(
            f"{len(unknown)} train items have no catalogue record (e.g. {unknown[:5]}); "
            "put the matching .item file beside the .inter file",
            path=str(interactions),
        )
    return train, merged


def load_task(
    dataset: Path,
    protocol: Protocol = Protocol.AUTO,
    *,
    interactions: Path | None = None,
    limit: int | None = None,
    n_negatives: int = 19,
    seed: int = 0,
    held_out: bool = False,
    history_items: int | None = None,
) -> Task:
    """Load the evaluation cases (the first `limit` in file order) for a protocol ('auto' detects it).

    `held_out` keeps only the users of the held-out split, the users fine-tuning on this log never saw.
    `history_items` shows each case only its newest N history items (cold start); baselines still fit on
    the full training log, and targets and candidates are unchanged.
    """
    protocol = detect_protocol(dataset) if protocol is Protocol.AUTO else protocol
    if protocol is Protocol.TALLREC:
        if interactions is not None:
            raise RequestError("--interactions does not apply to the tallrec protocol; drop it")
        pointwise = load_tallrec(dataset)[:limit]
        return PointwiseTask(
            source=shown_path(dataset),
            description="TALLRec pointwise: one yes/no question per row, score = log P(yes) - log P(no), AUC",
            cases=pointwise,
            reference_key=_reference_key(dataset, protocol),
        )
    data = load_dataset(dataset, n_negatives=n_negatives, seed=seed)
    user_ids = data.user_ids
    if held_out:
        kept = held_out_users(user_ids)
        user_ids = [user_id for user_id in user_ids if user_id in kept]
    cases = [data.case_for_user(user_id) for user_id in user_ids[:limit]]  # only the cases evaluated
    if dataset.suffix == ".jsonl":
        description = "LLMRank ready ranking set: candidates and their order as given in the file"
    else:
        description = (
            f"leave-one-out: each user's last interaction by (timestamp, item id) is the target; "
            f"{n_negatives} negatives sampled from items the user never interacted with (seed {seed})"
        )
    train, catalog, train_source = data.train_histories, data.catalog, "the dataset's own train histories"
    if interactions is not None:
        train, catalog = interaction_histories(interactions, data.catalog)
        check_train_ends_with_history(cases, train, str(interactions))
        where = shown_path(interactions)
        train_source = f"{where} (each user's history plus validation item; no test target)"
    if history_items is not None:
        cases = [case.with_newest_history(history_items) for case in cases]
        description += f"; cold start: each case shows only its newest {history_items} history items"
    return RankingTask(
        source=shown_path(dataset),
        description=description,
        cases=cases,
        train_histories=train,
        catalog=catalog,
        train_source=train_source,
        reference_key=_reference_key(dataset, protocol),
        quality_summary=data.quality.summary(),
    )


# --- judging: the only code that reads a label -------------------------------------------------------


def judge_ranking(
    case: RankingCase, ranked_ids: Sequence[str], scores: dict[str, float] | None = None
) -> dict[str, Any]:
    """Per-case metrics for one ranking of this case's candidates (which must be a full permutation).

    With scores, also how many other candidates scored exactly what the target scored: where that is
    non-zero, the target's rank was decided by the tie-break rule, not by the method.
    """
    candidate_ids = [item.id for item in case.candidates]
    if sorted(ranked_ids) != sorted(candidate_ids):
        raise RequestError(
            f"case {case.case_id}: the method returned {len(ranked_ids)} ids that are not a permutation of "
            f"its {len(candidate_ids)} candidates; evaluation needs every candidate ranked"
        )
    ranked = list(ranked_ids)
    judged: dict[str, Any] = {
        "target_position": candidate_ids.index(case.target_id) + 1,
        "target_rank": ranked.index(case.target_id) + 1,
        "metrics": case_metrics(ranked, case.target_id),
        "ndcg_curve": [ndcg_at_k(ranked, case.target_id, k) for k in range(1, CURVE_DEPTH + 1)],
    }
    if scores is not None:
        target_score = scores[case.target_id]
        judged["target_tied_with"] = sum(score == target_score for score in scores.values()) - 1
    return judged


def judge_pointwise(case: PointwiseCase, score: float) -> dict[str, Any]:
    """The label beside the method's score; AUC is computed over all cases in the report."""
    if not math.isfinite(score):
        raise RequestError(
            f"case {case.case_id}: score is {score}; a pointwise method must return a finite number "
            "(the backend returned NaN log-probabilities: check the model and its dtype)"
        )
    return {"label": int(case.label), "score": score}


def history_length(case: RankingCase | PointwiseCase) -> int:
    if isinstance(case, PointwiseCase):
        return len(case.liked_titles) + len(case.disliked_titles)
    return len(case.user.history)


def describe_task(task: Task) -> dict[str, Any]:
    """What the report states about the data (JSON-ready)."""
    summary: dict[str, Any] = {
        "protocol": task.protocol.value,
        "source": task.source,
        "description": task.description,
        "cases": len(task.cases),
    }
    if isinstance(task, RankingTask):
        summary["candidates_per_case"] = sorted({len(case.candidates) for case in task.cases})
        summary["baseline_statistics_from"] = task.train_source
        summary["data_quality"] = task.quality_summary
    return summary
