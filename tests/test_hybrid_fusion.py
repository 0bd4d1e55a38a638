"""Hybrid fusion: a permutation of the candidates always; the weight chosen on validation cases only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptrec.errors import RequestError
from promptrec.evaluation.command import run_evaluation
from promptrec.evaluation.fusion_validation import (
    ValidationOverlapError,
    choose_fusion,
    ensure_disjoint,
    held_out_users,
)
from promptrec.evaluation.protocols import Protocol, load_task
from promptrec.models import Diagnostics, Item, ItemSource, RankedList, RankingCase, RankMode, UserContext
from promptrec.strategies.fusion import FusionMethod, fuse
from promptrec.strategies.hybrid import HybridRanker
from tests.test_eval_runner import config_for, write_ranking_set


def title_score(title: str) -> float:
    return int(hashlib.sha256(title.encode()).hexdigest()[:8], 16) / 2**32


class TitleHashRanker:
    """A label-blind stand-in for the LLM: candidates by a hash of their title, with scores."""

    name = "llm"

    def __init__(self):
        self.calls = 0

    def rank_many(self, requests, on_result=None):
        results = []
        for index, request in enumerate(requests):
            self.calls += 1
            scores = {item.id: title_score(item.title) for item in request.candidates}
            ids = sorted(scores, key=scores.get, reverse=True)[: request.effective_k]
            results.append(
                RankedList(
                    item_ids=ids,
                    scores=[scores[i] for i in ids],
                    sources=[ItemSource.MODEL] * len(ids),
                    diagnostics=Diagnostics(backend="title-hash"),
                )
            )
            if on_result is not None:
                on_result(index, results[-1])
        return results


def ranked(ids, scores=None, source=ItemSource.MODEL) -> RankedList:
    return RankedList(
        item_ids=list(ids), scores=scores, sources=[source] * len(ids), diagnostics=Diagnostics()
    )


def case(user: str, candidates: list[str], target: str) -> RankingCase:
    return RankingCase(
        case_id=user,
        user=UserContext(user_id=user),
        candidates=[Item(id=c, title=f"title {c}") for c in candidates],
        target_id=target,
    )


@st.composite
def two_rankings(draw):
    ids = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=25, unique=True))
    a = draw(st.permutations(ids))
    b = draw(st.permutations(ids))
    score = st.one_of(st.floats(-50, 50), st.just(float("-inf")))
    a_scores = draw(st.one_of(st.none(), st.lists(score, min_size=len(ids), max_size=len(ids))))
    b_scores = draw(
        st.one_of(st.none(), st.lists(st.sampled_from([0.0, 0.5, 2.0]), min_size=len(ids), max_size=len(ids)))
    )
    # A RankedList's scores descend along its items (ties allowed), as every ranker returns them.
    return (
        ids,
        a,
        a_scores and sorted(a_scores, reverse=True),
        b,
        b_scores and sorted(b_scores, reverse=True),
    )


@settings(max_examples=300, deadline=None)
@given(two_rankings(), st.floats(0.0, 1.0), st.sampled_from(list(FusionMethod)), st.integers(1, 30))
def test_fusion_always_returns_a_permutation_of_the_candidates(rankings, weight, method, k):
    ids, a, a_scores, b, b_scores = rankings
    fused, scores = fuse(a, a_scores, b, b_scores, weight, method)
    assert sorted(fused) == sorted(ids) and len(scores) == len(ids)
    hybrid = HybridRanker(None, None, weight, method).combine(ranked(a, a_scores), ranked(b, b_scores), k)
    assert hybrid.item_ids == fused[:k] and len(set(hybrid.item_ids)) == len(hybrid.item_ids)


@given(two_rankings(), st.sampled_from(list(FusionMethod)))
def test_weight_zero_is_the_retriever_and_weight_one_rrf_is_the_llm(rankings, method):
    _, a, a_scores, b, b_scores = rankings
    assert fuse(a, a_scores, b, b_scores, 0.0, method)[0] == b
    assert fuse(a, a_scores, b, b_scores, 1.0, FusionMethod.RRF)[0] == a


def test_fusion_refuses_rankings_of_different_candidates():
    with pytest.raises(RequestError, match="same candidates"):
        fuse(["a", "b"], None, ["a", "c"], None, 0.5)
    with pytest.raises(RequestError, match="weight"):
        fuse(["a"], None, ["a"], None, 1.5)


def test_choice_follows_the_validation_targets_and_never_falls_below_the_retriever():
    candidates = [f"i{n}" for n in range(20)]
    retriever = ranked(candidates, source=ItemSource.RETRIEVER)  # target sits at rank 10 below
    cases = [case(f"u{n}", candidates, "i9") for n in range(5)]
    good_llm = ranked(["i9", *[c for c in candidates if c != "i9"]])  # puts the target first
    bad_llm = ranked([c for c in candidates if c != "i9"] + ["i9"])  # puts it last
    good = choose_fusion(cases, [good_llm] * 5, [retriever] * 5, "test")
    bad = choose_fusion(cases, [bad_llm] * 5, [retriever] * 5, "test")
    assert good.weight > 0 and good.validation_ndcg10 > good.anchor_ndcg10
    assert bad.weight == 0.0 and bad.validation_ndcg10 == bad.anchor_ndcg10


def test_validation_cases_of_test_users_are_refused():
    test = [case("u1", ["a", "b"], "a")]
    with pytest.raises(ValidationOverlapError, match="u1"):
        ensure_disjoint([case("u1", ["a", "b"], "b"), case("u2", ["a", "b"], "a")], test)
    ensure_disjoint([case("u2", ["a", "b"], "a")], test)


def test_held_out_user_split_is_disjoint_deterministic_and_complete(tmp_path):
    task = load_task(write_ranking_set(tmp_path / "set.jsonl", 60))
    test, validation = held_out_users(task, 0.25, seed=0)
    test_ids = {c.case_id for c in test.cases}
    validation_ids = {c.case_id for c in validation}
    assert not test_ids & validation_ids and len(test_ids | validation_ids) == 60
    assert 5 <= len(validation_ids) <= 25
    assert validation_ids == {c.case_id for c in held_out_users(task, 0.25, seed=0)[1]}


def swap_targets(path: Path, out: Path) -> Path:
    """The same set with every target moved to another candidate: only the labels differ."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        others = [c for c in row["candidate_item_ids"] if c != row["target_item_id"]]
        row["target_item_id"] = others[len(row["user_id"]) % len(others)]
        index = row["candidate_item_ids"].index(row["target_item_id"])
        row["target_title"] = row["candidate_titles"][index]
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return out


def run_hybrid(dataset: Path, validation: Path, out: Path) -> dict:
    config = config_for(
        dataset,
        "itemknn,hybrid",
        protocol=Protocol.RANKING,
        reference="itemknn",
        mode=RankMode.SCORE,
        validation=validation,
    )
    return run_evaluation(config, out, recommender=TitleHashRanker)


def test_test_targets_cannot_move_the_chosen_weight(tmp_path):
    test_set = write_ranking_set(tmp_path / "test.jsonl", 12, seed=1)
    # Validation users u0..u29 include the 12 test users u0..u11: those must be left out.
    validation = write_ranking_set(tmp_path / "validation.jsonl", 30, seed=2)
    run_hybrid(test_set, validation, tmp_path / "run")
    run_hybrid(swap_targets(test_set, tmp_path / "swapped.jsonl"), validation, tmp_path / "swapped-run")
    chosen = json.loads((tmp_path / "run" / "hybrid-fusion.json").read_text())
    assert chosen == json.loads((tmp_path / "swapped-run" / "hybrid-fusion.json").read_text())
    assert chosen["validation_cases"] == 18
    assert chosen["validation_ndcg10"] >= chosen["anchor_ndcg10"]
    rankings = [
        [json.loads(line)["ranked_ids"] for line in (tmp_path / run / "results" / "hybrid.jsonl").open()]
        for run in ("run", "swapped-run")
    ]
    assert rankings[0] == rankings[1]


def test_validation_targets_do_move_the_chosen_weight(tmp_path):
    """The check above can fail: the same runs with validation targets changed choose differently."""
    test_set = write_ranking_set(tmp_path / "test.jsonl", 4, seed=1)
    validation = write_ranking_set(tmp_path / "validation.jsonl", 40, seed=2)
    run_hybrid(test_set, validation, tmp_path / "a")
    weights = {json.loads((tmp_path / "a" / "hybrid-fusion.json").read_text())["weight"]}
    rows = [json.loads(line) for line in validation.read_text().splitlines()]
    for row in rows:  # make each validation target the stand-in LLM's top candidate
        top = max(row["candidate_titles"], key=title_score)
        row["target_item_id"] = row["candidate_item_ids"][row["candidate_titles"].index(top)]
        row["target_title"] = top
    favourable = tmp_path / "favourable.jsonl"
    favourable.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run_hybrid(test_set, favourable, tmp_path / "b")
    weights.add(json.loads((tmp_path / "b" / "hybrid-fusion.json").read_text())["weight"])
    assert len(weights) == 2


def test_hybrid_without_validation_is_refused(tmp_path):
    test_set = write_ranking_set(tmp_path / "test.jsonl", 3)
    with pytest.raises(RequestError, match="--validation"):
        run_hybrid(test_set, None, tmp_path / "run")
