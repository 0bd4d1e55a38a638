"""Baseline retrievers on a tiny hand-made catalogue: each ranks the item its signal points at first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptrec.errors import DataError, RequestError
from promptrec.models import Interaction, Item, UserContext
from promptrec.retrievers import (
    RETRIEVERS,
    BM25Retriever,
    EmbeddingRetriever,
    ItemKNNRetriever,
    PopularityRetriever,
    RandomRetriever,
    Retriever,
    make_retriever,
)

TITLES = {
    "mk": "Mario Kart 8 Deluxe",
    "mp": "Mario Party Superstars",
    "zl": "Zelda Breath of the Wild",
    "gt": "Gran Turismo Sport",
    "gt7": "Gran Turismo 7",
    "ft": "FIFA 22 Soccer",
    "hs": "Wireless Gaming Headset with Microphone",
    "eb": "Bluetooth Earbuds",
    "ch": "Chess Strategy Board Game",
    "new": "Brand New Release",  # never in training: stands for a held-out test target
    **{f"n{index}": f"Unplayed Item {index}" for index in range(10)},
}
CATALOG = {item_id: Item(id=item_id, title=title) for item_id, title in TITLES.items()}
TRAIN = {"u1": ["mk", "mp", "zl"], "u2": ["mk", "mp"], "u3": ["mk", "zl"], "u4": ["gt", "ft"], "u5": ["mk"]}
UNSEEN = [CATALOG[f"n{index}"] for index in range(10)]


def user(*history: str, user_id: str | None = "test-user", request: str | None = None) -> UserContext:
    events = [Interaction(item_id=item) for item in history]
    return UserContext(user_id=user_id, history=events, request=request)


def items(*ids: str) -> list[Item]:
    return [CATALOG[item_id] for item_id in ids]


@pytest.fixture(scope="module")
def embedding() -> EmbeddingRetriever:
    return EmbeddingRetriever().fit(TRAIN, CATALOG)


# --- each retriever follows its signal ---------------------------------------------------------------


def test_popularity_ranks_the_most_frequent_training_item_first() -> None:
    retriever = PopularityRetriever().fit(TRAIN, CATALOG)
    assert retriever.score(user(), items("new", "zl", "mk")) == [0.0, 2.0, 4.0]
    assert retriever.rank(user(), items("gt", "zl", "mk", "new"))[0] == "mk"


def test_itemknn_ranks_the_co_occurring_item_first() -> None:
    retriever = ItemKNNRetriever().fit(TRAIN, CATALOG)
    # ft co-occurred with gt (once, in u4); mk is far more popular but never met gt.
    assert retriever.rank(user("gt"), items("mk", "zl", "ft", "mp"))[0] == "ft"
    # sim(mk, mp) = 2 / sqrt(4 * 2): cosine over distinct users.
    assert retriever.score(user("mk"), items("mp"))[0] == pytest.approx(2 / 8**0.5)


def test_bm25_ranks_the_textually_matching_item_first() -> None:
    retriever = BM25Retriever().fit(TRAIN, CATALOG)
    assert retriever.rank(user("gt"), items("mk", "ft", "gt7", "zl"))[0] == "gt7"
    scores = retriever.score(user("gt"), items("mk", "gt7"))
    assert scores[0] == 0.0 < scores[1]


def test_bm25_reads_a_cold_start_request() -> None:
    retriever = BM25Retriever().fit(TRAIN, CATALOG)
    assert retriever.rank(user(request="a zelda adventure"), items("mk", "zl", "gt7"))[0] == "zl"


def test_embedding_ranks_the_semantically_matching_title_first(embedding: EmbeddingRetriever) -> None:
    # "Bluetooth Earbuds" shares no word with the headset title: only the meaning connects them.
    ranked = embedding.rank(user("hs"), items("ch", "gt7", "eb", "ft"))
    assert ranked[0] == "eb"
    scores = embedding.score(user("hs"), items("hs", "eb"))
    assert scores[0] == pytest.approx(1.0, abs=1e-5)  # cosine of a title with itself
    assert -1.0 <= scores[1] < scores[0]


def test_embedding_without_history_or_request_ties_everything(embedding: EmbeddingRetriever) -> None:
    assert set(embedding.score(user(), items("eb", "ch"))) == {0.0}


# --- ties: seeded, per user, never by candidate position ---------------------------------------------


def test_all_tie_ranking_ignores_candidate_order() -> None:
    retriever = PopularityRetriever().fit(TRAIN, CATALOG)
    forward = retriever.rank(user(), UNSEEN, seed=3)
    backward = retriever.rank(user(), list(reversed(UNSEEN)), seed=3)
    assert forward == backward
    assert sorted(forward) == sorted(item.id for item in UNSEEN)


def test_tie_order_varies_by_user_and_seed_not_by_position() -> None:
    retriever = PopularityRetriever().fit(TRAIN, CATALOG)
    first_positions = {
        [item.id for item in UNSEEN].index(retriever.rank(user(user_id=f"user{index}"), UNSEEN)[0])
        for index in range(40)
    }
    assert len(first_positions) >= 5  # a position rule would always put the same slot first
    assert retriever.rank(user(), UNSEEN, seed=0) != retriever.rank(user(), UNSEEN, seed=1)


def test_ties_only_reorder_equal_scores() -> None:
    retriever = PopularityRetriever().fit(TRAIN, CATALOG)
    ranked = retriever.rank(user(), [*UNSEEN[:3], CATALOG["mp"], CATALOG["mk"], CATALOG["zl"]])
    assert ranked[0] == "mk"
    assert set(ranked[1:3]) == {"mp", "zl"}


def test_tie_order_is_identical_across_processes() -> None:
    script = (
        "import json; from tests.test_retrievers import PopularityRetriever, TRAIN, CATALOG, UNSEEN, user; "
        "print(json.dumps(PopularityRetriever().fit(TRAIN, CATALOG).rank(user(), UNSEEN, seed=7)))"
    )
    root = Path(__file__).resolve().parent.parent
    rankings = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", script],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONHASHSEED": hash_seed},
            ).stdout
        )
        for hash_seed in ("1", "2")
    ]
    in_process = PopularityRetriever().fit(TRAIN, CATALOG).rank(user(), UNSEEN, seed=7)
    assert rankings[0] == rankings[1] == in_process


def test_random_retriever_is_reproducible_and_position_blind() -> None:
    candidates = items("mk", "mp", "zl", "gt", "gt7", "ft")
    first = RandomRetriever(seed=1).fit(TRAIN, CATALOG)
    ranking = first.rank(user(), candidates)
    assert ranking == RandomRetriever(seed=1).fit(TRAIN, CATALOG).rank(user(), list(reversed(candidates)))
    assert len(set(first.score(user(), candidates))) == len(candidates)
    assert all(0.0 <= value < 1.0 for value in first.score(user(), candidates))
    other_seeds = {
        tuple(RandomRetriever(seed=seed).fit(TRAIN, CATALOG).rank(user(), candidates)) for seed in range(2, 8)
    }
    assert len(other_seeds) > 1


# --- training data only ------------------------------------------------------------------------------


def test_statistics_come_from_training_histories_only() -> None:
    popularity = PopularityRetriever().fit(TRAIN, CATALOG)
    assert popularity.counts == {"mk": 4, "mp": 2, "zl": 2, "gt": 1, "ft": 1}
    knn = ItemKNNRetriever().fit(TRAIN, CATALOG)
    # Scoring a user whose history pairs mk with an unseen item must not teach the model that pair.
    assert knn.score(user("mk", "new"), items("new", "mp"))[0] == 0.0
    assert knn.score(user("new"), items("mk", "mp")) == [0.0, 0.0]
    assert popularity.score(user("new", "new"), items("new")) == [0.0]


def test_fit_rejects_history_items_missing_from_the_catalogue() -> None:
    with pytest.raises(DataError, match="not in the catalogue"):
        ItemKNNRetriever().fit({"u1": ["mk", "ghost"]}, CATALOG)


# --- catalogue retrieval and request errors ----------------------------------------------------------


def test_retrieve_returns_top_k_from_the_catalogue_without_history() -> None:
    retriever = PopularityRetriever().fit(TRAIN, CATALOG)
    assert set(retriever.retrieve(user("mk"), k=2)) == {"mp", "zl"}
    assert retriever.retrieve(user("mk"), k=1, exclude_history=False) == ["mk"]
    assert len(retriever.retrieve(user(), k=100)) == len(CATALOG)
    assert ItemKNNRetriever().fit(TRAIN, CATALOG).retrieve(user("gt"), k=1) == ["ft"]
    with pytest.raises(RequestError, match="k=0"):
        retriever.retrieve(user(), k=0)


def test_embedding_retrieve_covers_the_catalogue(embedding: EmbeddingRetriever) -> None:
    assert embedding.retrieve(user("gt"), k=1) == ["gt7"]


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_every_retriever_refuses_to_score_before_fit(name: str) -> None:
    with pytest.raises(RequestError, match="not fitted"):
        make_retriever(name).score(user(), items("mk"))


def test_duplicate_candidates_and_unknown_ids_are_request_errors() -> None:
    bm25 = BM25Retriever().fit(TRAIN, CATALOG)
    with pytest.raises(RequestError, match="duplicate"):
        bm25.rank(user(), items("mk", "mk"))
    with pytest.raises(RequestError, match="not in the catalogue"):
        bm25.score(user(), [Item(id="elsewhere", title="Not In Catalogue")])
    with pytest.raises(RequestError, match="history\\[0\\]"):
        bm25.score(user("elsewhere"), items("mk"))


def test_registry_builds_each_retriever_and_names_the_valid_ones() -> None:
    assert set(RETRIEVERS) == {"random", "popularity", "bm25", "itemknn", "embedding"}
    for name in RETRIEVERS:
        retriever = make_retriever(name)
        assert isinstance(retriever, Retriever) and retriever.name == name
    assert make_retriever("random", seed=9).seed == 9  # type: ignore[attr-defined]
    valid = "valid names: bm25, embedding, itemknn, popularity, random"
    with pytest.raises(ValueError, match=valid) as caught:
        make_retriever("sasrec")
    assert isinstance(caught.value, RequestError)
    with pytest.raises(RequestError, match="does not accept options"):
        make_retriever("popularity", seed=1)
