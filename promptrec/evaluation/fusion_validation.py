"""Validation cases for choosing a fusion weight, kept apart from the test cases, and the choice itself.

Two sources of validation cases, never a test case:
  a file   -- another ranking set of the same catalogue (Games: games6k_random_cands20.jsonl); its users
              who are test users are left out (they share the test target), and what remains is checked
              to hold no test user;
  a split  -- a held-out share of the task's own users (leave-one-out MovieLens): users are assigned by a
              seeded hash of their id, and the test cases of every method become the remaining users.

`choose_fusion` reads validation targets only: it gets the validation cases, never a test case, so a test
target cannot move the chosen weight. Like `judge_*` in protocols.py it is code that reads labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from statistics import fmean

from pydantic import BaseModel, ConfigDict

from promptrec.data.dataset import load_dataset
from promptrec.errors import RequestError
from promptrec.evaluation.metrics import ndcg_at_k
from promptrec.evaluation.protocols import RankingTask, check_train_ends_with_history
from promptrec.models import RankedList, RankingCase, RankMode
from promptrec.ranker import Ranker, ResultCallback
from promptrec.strategies.fusion import FusionMethod, fuse

WEIGHTS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
VALIDATION_CUTOFF = 10  # the weight maximises mean NDCG@10 over the validation cases


class ValidationOverlapError(RequestError):
    """A validation case belongs to a test user: choosing a weight on it would tune on the test set."""


class FusionChoice(BaseModel):
    """The chosen fusion and what it scored on validation (fractions); saved in the run folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: FusionMethod
    weight: float
    validation_source: str
    validation_cases: int
    validation_ndcg10: float
    anchor_ndcg10: float  # weight 0: the retriever alone
    inner_ndcg10: float  # weight 1 (rrf): the LLM alone
    grid: dict[str, dict[str, float]]  # method -> weight -> mean validation NDCG@10


def ensure_disjoint(validation: Sequence[RankingCase], test: Sequence[RankingCase]) -> None:
    test_users = {case.case_id for case in test} | {case.user.user_id for case in test if case.user.user_id}
    shared = [case.case_id for case in validation if {case.case_id, case.user.user_id} & test_users]
    if shared:
        raise ValidationOverlapError(
            f"{len(shared)} validation cases belong to test users (e.g. {shared[:3]}); validation must hold "
            "other users only: pass a validation set without the test users"
        )


def _in_validation(user_id: str, fraction: float, seed: int) -> bool:
    digest = hashlib.blake2b(f"validation|{seed}|{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def held_out_users(task: RankingTask, fraction: float, seed: int) -> tuple[RankingTask, list[RankingCase]]:
    """(the task restricted to test users, the validation users' cases), users split by a seeded hash."""
    if not 0.0 < fraction < 1.0:
        raise RequestError(f"--validation-users {fraction!r}: give the held-out share of users, in (0, 1)")
    validation = [case for case in task.cases if _in_validation(case.case_id, fraction, seed)]
    test = [case for case in task.cases if not _in_validation(case.case_id, fraction, seed)]
    if not validation or not test:
        raise RequestError(
            f"--validation-users {fraction}: the split of {len(task.cases)} users left an empty side; "
            "evaluate more users (--limit) or pick a share nearer 0.2"
        )
    ensure_disjoint(validation, test)
    description = f"{task.description}; test users only ({fraction:.0%} held out for validation, seed {seed})"
    return replace(task, cases=test, description=description), validation


def validation_cases_from(
    path: Path, task: RankingTask, *, limit: int | None, n_negatives: int, seed: int
) -> list[RankingCase]:
    """The first `limit` cases of another ranking set whose users are not test users of `task`."""
    data = load_dataset(path, n_negatives=n_negatives, seed=seed)
    test_users = {case.case_id for case in task.cases}
    users = [user_id for user_id in data.user_ids if user_id not in test_users][:limit]
    if not users:
        raise RequestError(f"--validation {path}: every user in it is a test user; pass another user set")
    cases = [data.case_for_user(user_id) for user_id in users]
    ensure_disjoint(cases, task.cases)
    if task.train_source != "the dataset's own train histories":  # an --interactions file: same guard
        check_train_ends_with_history(cases, task.train_histories, task.train_source)
    return cases


def choose_fusion(
    cases: Sequence[RankingCase],
    inner: Sequence[RankedList],
    anchor: Sequence[RankedList],
    source: str,
    weights: Sequence[float] = WEIGHTS,
) -> FusionChoice:
    """The (method, weight) with the best mean validation NDCG@10; ties go to the smaller weight (nearer
    the retriever), then to rrf. Weights 0 and 1 are always in the grid, so the choice is >= the retriever."""
    weights = sorted({0.0, 1.0, *weights})
    grid: dict[str, dict[str, float]] = {}
    best: tuple[float, float, int, FusionMethod] | None = None
    for order, method in enumerate(FusionMethod):
        grid[method.value] = {}
        for weight in weights:
            scores = []
            for case, a, b in zip(cases, inner, anchor, strict=True):
                ranked, _ = fuse(a.item_ids, a.scores, b.item_ids, b.scores, weight, method)
                scores.append(ndcg_at_k(ranked, case.target_id, VALIDATION_CUTOFF))
            grid[method.value][str(weight)] = mean = fmean(scores)
            key = (mean, -weight, -order, method)
            if best is None or key[:3] > best[:3]:
                best = key
    assert best is not None  # the grid is never empty
    return FusionChoice(
        method=best[3],
        weight=-best[1],
        validation_source=source,
        validation_cases=len(cases),
        validation_ndcg10=best[0],
        anchor_ndcg10=grid[FusionMethod.RRF.value]["0.0"],
        inner_ndcg10=grid[FusionMethod.RRF.value]["1.0"],
        grid=grid,
    )


def tune_fusion(
    inner: Ranker,
    anchor: Ranker,
    cases: Sequence[RankingCase],
    source: str,
    *,
    mode: RankMode,
    template: str | None,
    weights: Sequence[float] = WEIGHTS,
    on_result: ResultCallback | None = None,
) -> FusionChoice:
    """Rank the validation cases with both rankers (label-free requests), then choose the fusion;
    `on_result` follows the inner ranker (the slow one)."""
    requests = [case.to_request(mode=mode, template=template) for case in cases]
    ranked = inner.rank_many(requests, on_result=on_result)
    return choose_fusion(cases, ranked, anchor.rank_many(requests), source, weights)
