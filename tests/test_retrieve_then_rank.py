"""Retrieve-then-rank returns k distinct catalogue items outside the history; the full-catalogue protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptrec.errors import RequestError
from promptrec.evaluation.command import build_config, run_evaluation
from promptrec.evaluation.protocols import Protocol
from promptrec.models import Interaction, Item, RankMode, UserContext
from promptrec.options import LLMOptions
from promptrec.retrievers import ItemKNNRetriever
from promptrec.strategies.retrieve_then_rank import RetrieveThenRank, catalogue_request
from tests.test_hybrid_fusion import TitleHashRanker

DATASET = Path(__file__).resolve().parent.parent / "promptrec" / "datasets" / "ml-latest-small"
CATALOGUE = {str(n): Item(id=str(n), title=f"Film {n}") for n in range(60)}
TRAIN = {f"t{u}": [str((u * 7 + step * 3) % 60) for step in range(8)] for u in range(40)}


@pytest.fixture(scope="module")
def itemknn() -> ItemKNNRetriever:
    return ItemKNNRetriever().fit(TRAIN, CATALOGUE)


@settings(max_examples=60, deadline=None)
@given(
    history=st.lists(st.sampled_from(sorted(CATALOGUE)), max_size=30, unique=True),
    k=st.integers(1, 80),
    n=st.integers(1, 26),
)
def test_returns_k_distinct_catalogue_items_outside_the_history(itemknn, history, k, n):
    user = UserContext(user_id="u", history=[Interaction(item_id=i) for i in history])
    request = catalogue_request(
        user, CATALOGUE.values(), [CATALOGUE[i] for i in history], k=k, mode=RankMode.SCORE
    )
    ranked = RetrieveThenRank(itemknn, TitleHashRanker(), n).rank_many([request])[0]
    assert len(ranked.item_ids) == min(k, 60 - len(history))
    assert len(set(ranked.item_ids)) == len(ranked.item_ids)
    assert set(ranked.item_ids) <= set(CATALOGUE) and not set(ranked.item_ids) & set(history)


def test_the_llm_orders_the_shortlist_and_the_retriever_the_rest(itemknn):
    user = UserContext(user_id="u", history=[Interaction(item_id="0"), Interaction(item_id="3")])
    request = catalogue_request(
        user, CATALOGUE.values(), [CATALOGUE["0"], CATALOGUE["3"]], k=30, mode="score"
    )
    shortlist = itemknn.retrieve(user, 30)
    ranked = RetrieveThenRank(itemknn, TitleHashRanker(), 10).rank_many([request])[0]
    assert set(ranked.item_ids[:10]) == set(shortlist[:10])
    assert ranked.item_ids[10:] == shortlist[10:]
    llm_order = (
        TitleHashRanker()
        .rank_many(
            [request.model_copy(update={"candidates": [CATALOGUE[i] for i in shortlist[:10]], "k": None})]
        )[0]
        .item_ids
    )
    assert ranked.item_ids[:10] == llm_order


def test_a_shortlist_size_below_one_is_refused(itemknn):
    with pytest.raises(RequestError, match="shortlist"):
        RetrieveThenRank(itemknn, TitleHashRanker(), 0)


def test_full_catalogue_protocol_ranks_every_item_and_resumes(tmp_path):
    def config():
        return build_config(
            DATASET,
            methods="itemknn,itemknn+llm",
            protocol=Protocol.FULL_CATALOGUE,
            interactions=None,
            reference="itemknn",
            limit=12,
            seed=0,
            n_negatives=19,
            mode=RankMode.SCORE,
            llm=LLMOptions(),
            rerank_top=20,
        )

    metrics = run_evaluation(config(), tmp_path, recommender=TitleHashRanker)
    records = [json.loads(line) for line in (tmp_path / "results" / "itemknn+llm.jsonl").open()]
    assert len(records) == 12 and all(len(r["ranked_ids"]) == 20 for r in records)
    # The LLM reorders the retriever's top 20 only: what is in the top 20 (Recall@20) cannot change.
    assert metrics["itemknn+llm"]["recall@20"] == metrics["itemknn"]["recall@20"]
    assert "vs_itemknn" in metrics["itemknn+llm"]
    assert "Full-catalogue evaluation" in (tmp_path / "report.md").read_text()
    before = (tmp_path / "metrics.json").read_bytes()
    run_evaluation(config(), tmp_path, recommender=TitleHashRanker)  # nothing pending: same metrics
    assert (tmp_path / "metrics.json").read_bytes() == before


def test_full_catalogue_refuses_a_ready_candidate_set(tmp_path):
    ready = tmp_path / "set.jsonl"
    ready.write_text("")
    config = build_config(
        DATASET,
        methods="itemknn",
        protocol=Protocol.FULL_CATALOGUE,
        interactions=None,
        reference=None,
        limit=2,
        seed=0,
        n_negatives=19,
        mode=None,
        llm=LLMOptions(),
    )
    with pytest.raises(RequestError, match="full-catalogue"):
        run_evaluation(config.model_copy(update={"dataset": str(ready)}), tmp_path / "run")
