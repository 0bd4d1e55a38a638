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
from tests.test_eval_runner import ranking_row, title
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


def catalogue_config(dataset: Path, interactions: Path | None, methods: str, limit: int | None = 2):
    return build_config(
        dataset,
        methods=methods,
        protocol=Protocol.FULL_CATALOGUE,
        interactions=interactions,
        reference=None,
        limit=limit,
        seed=0,
        n_negatives=19,
        mode=RankMode.SCORE,
        llm=LLMOptions(),
    )


def test_a_ready_set_needs_its_training_log_and_a_log_needs_none(tmp_path):
    ready, log = tmp_path / "set.jsonl", tmp_path / "log.inter"
    ready.write_text("")
    log.write_text("")
    with pytest.raises(RequestError, match="needs --interactions"):
        run_evaluation(catalogue_config(ready, None, "itemknn"), tmp_path / "a")
    with pytest.raises(RequestError, match="needs no --interactions"):
        run_evaluation(catalogue_config(DATASET, log, "itemknn"), tmp_path / "b")


def test_a_ready_set_keeps_its_targets_and_ranks_its_whole_catalogue(tmp_path):
    """Games-200 style: the set's users and targets, the training log's histories and item catalogue."""
    items = [str(n) for n in range(100)]  # 60..99 are in no candidate list, only in the catalogue
    cases = []
    for user in range(6):
        history = [str((user * 5 + step) % 40) for step in range(4)]
        target = str(40 + user)
        candidates = [target, *(str(n) for n in range(50, 55))]
        cases.append((f"u{user}", history, candidates, target))
    (tmp_path / "set.jsonl").write_text(
        "".join(
            ranking_row(user, [int(i) for i in history], [int(i) for i in candidates], int(target)) + "\n"
            for user, history, candidates, target in cases
        )
    )
    (tmp_path / "log.item").write_text(
        "item_id:token\ttitle:token_seq\n" + "".join(f"{i}\t{title(int(i))}\n" for i in items)
    )
    # Training rows end where the case histories end (the last history item is the validation item).
    (tmp_path / "log.inter").write_text(
        "user_id:token\titem_id_list:token_seq\titem_id:token\n"
        + "".join(f"{user}\t{' '.join(history[:-1])}\t{history[-1]}\n" for user, history, _, _ in cases)
        + "".join(f"other{n}\t{n} {n + 60}\t{n + 61}\n" for n in range(30))
    )

    config = catalogue_config(tmp_path / "set.jsonl", tmp_path / "log.inter", "popularity", limit=None)
    metrics = run_evaluation(config, tmp_path / "run")

    records = [json.loads(line) for line in (tmp_path / "run" / "results" / "popularity.jsonl").open()]
    assert metrics["popularity"]["n"] == len(cases) == len(records)
    ranked = {item for record in records for item in record["ranked_ids"]}
    assert ranked - {i for _, _, candidates, _ in cases for i in candidates}  # beyond the candidate lists
    for record, (_, history, _, _) in zip(records, cases, strict=True):
        assert len(record["ranked_ids"]) == 20 and not set(record["ranked_ids"]) & set(history)
    assert "target from the ready set" in (tmp_path / "run" / "report.md").read_text()
