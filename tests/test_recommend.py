"""`recommend` end to end on a small catalogue: real embedder, real BM25, a real (tiny, random) transformers
model for the ranking step, so every stage runs; quality is not asserted here, only guarantees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from promptrec import Recommender
from promptrec.catalog_index import build_index, open_catalog
from promptrec.data.catalog import Catalog
from promptrec.data.catalog_file import CatalogSource
from promptrec.errors import DataError, RequestError
from promptrec.models import RankMode

MOVIES = [
    ("1", "Toy Story (1995)", "Adventure|Animation|Children|Comedy"),
    ("2", "Jumanji (1995)", "Adventure|Children|Fantasy"),
    ("3", "Grumpier Old Men (1995)", "Comedy|Romance"),
    ("4", "Heat (1995)", "Action|Crime|Thriller"),
    ("5", "Clueless (1995)", "Comedy|Romance"),
    ("6", "Groundhog Day (1993)", "Comedy|Fantasy|Romance"),
    ("7", "Dumb & Dumber (1994)", "Adventure|Comedy"),
    ("8", "Mrs. Doubtfire (1993)", "Comedy|Drama"),
    ("9", "The Mask (1994)", "Action|Comedy|Crime|Fantasy"),
    ("10", "Home Alone (1990)", "Children|Comedy"),
    ("11", "Airplane! (1980)", "Comedy"),
    ("12", "Ghostbusters (1984)", "Action|Comedy|Sci-Fi"),
    ("13", "Alien (1979)", "Horror|Sci-Fi"),
    ("14", "The Shining (1980)", "Horror"),
    ("15", "Shrek (2001)", "Adventure|Animation|Children|Comedy|Fantasy"),
    ("16", "Finding Nemo (2003)", "Adventure|Animation|Children|Comedy"),
    ("17", "Spirited Away (2001)", "Adventure|Animation|Fantasy"),
    ("18", "The Matrix (1999)", "Action|Sci-Fi|Thriller"),
    ("19", "Bowling for Columbine (2002)", "Documentary"),
    ("20", "Super Size Me (2004)", "Comedy|Documentary"),
    ("21", "Heat Wave in the Deep: Underwater Volcano Diaries (2015)", "Documentary"),
    ("22", "Big Lebowski, The (1998)", "Comedy|Crime"),
    ("23", "Office Space (1999)", "Comedy|Crime"),
    ("24", "Fargo (1996)", "Comedy|Crime|Drama|Thriller"),
]
# Training interactions: item 21 (the volcano documentary) has none.
HISTORIES = {
    "u1": ["1", "2", "15", "16"],
    "u2": ["4", "18", "12", "13"],
    "u3": ["3", "5", "6", "8", "22"],
    "u4": ["1", "15", "16", "17", "10"],
}


def write_movies_csv(folder: Path, rows=MOVIES) -> Path:
    lines = ["movieId,title,genres", *(f'{i},"{title}",{genres}' for i, title, genres in rows)]
    path = folder / "movies.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTREC_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> CatalogSource:
    from promptrec.data.movielens import load_movielens_movies

    catalog = load_movielens_movies(write_movies_csv(tmp_path_factory.mktemp("movies")))
    return CatalogSource(catalog, HISTORIES)


@pytest.fixture(scope="module")
def index(source: CatalogSource, tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROMPTREC_CACHE", str(tmp_path_factory.mktemp("index-cache")))
        return build_index(source)


@pytest.fixture(scope="module")
def recommender(tiny_llama_dir: Path) -> Recommender:
    return Recommender.load("transformers", str(tiny_llama_dir))


USERS = {
    "request": {"request": "a 90s comedy"},
    "history": {"history": [{"item_id": "1"}, {"item_id": "15"}]},
    "request and history": {"request": "something scary", "history": [{"item_id": "18"}]},
    "preference": {"preferences": ["animated films"]},
    "nothing": {},
}


@pytest.mark.parametrize("kind", list(USERS))
@pytest.mark.parametrize("use_llm", [True, False])
def test_every_result_is_k_distinct_catalogue_items_outside_the_history(index, recommender, kind, use_llm):
    user = USERS[kind]
    result = recommender.recommend(user, index, k=5, use_llm=use_llm)
    history = {event["item_id"] for event in user.get("history", [])}
    assert len(result.item_ids) == 5
    assert len(set(result.item_ids)) == 5
    assert all(item_id in index.catalog and item_id not in history for item_id in result.item_ids)
    assert result.titles == [index.catalog[item_id].title for item_id in result.item_ids]
    assert len(result.stages) == len(result.sources) == 5
    if use_llm:
        assert set(result.sources) <= {"model", "backfill"}
        assert result.diagnostics.rank is not None and 5 <= result.diagnostics.candidates_ranked <= 20
    else:
        assert result.sources == ["retriever"] * 5 and result.diagnostics.rank is None


def test_strategy_follows_what_is_known(index, recommender):
    def retrievers(user):
        return recommender.recommend(user, index, k=3, use_llm=False).diagnostics.retrievers

    assert retrievers({"request": "a comedy"}) == ["bm25", "embedding", "popularity"]
    assert retrievers({"history": [{"item_id": "1"}]}) == ["itemknn", "history-embedding", "popularity"]
    assert retrievers({}) == ["popularity"]
    bare = build_index(CatalogSource(index.catalog))  # no interactions at all
    assert recommender.recommend({}, bare, k=3, use_llm=False).diagnostics.retrievers == ["catalogue-order"]


def test_an_item_nobody_interacted_with_is_reachable_through_its_text(index, recommender):
    assert not any("21" in items for items in HISTORIES.values())
    user = {"request": "underwater volcano diaries"}
    alone = recommender.recommend(user, index, k=3, use_llm=False)
    assert alone.item_ids[0] == "21"
    assert "bm25" in alone.stages[0] and "embedding" in alone.stages[0]
    with_llm = recommender.recommend(user, index, k=20)
    assert "21" in with_llm.item_ids


def test_a_request_naming_facets_is_filtered_by_them(index, recommender):
    result = recommender.recommend({"request": "a 90s comedy"}, index, k=5)
    diagnostics = result.diagnostics
    assert diagnostics.facets.genres == ["comedy"]
    assert (diagnostics.facets.year_from, diagnostics.facets.year_to) == (1990, 1999)
    assert diagnostics.facet_policy == "filter" and diagnostics.facet_matches == 11
    for item_id in result.item_ids:
        facets = index.facets[index.position[item_id]]
        assert "comedy" in facets.genres and 1990 <= facets.year <= 1999


def test_too_few_facet_matches_are_boosted_to_the_front_not_filtered(index, recommender):
    result = recommender.recommend({"request": "a documentary"}, index, k=5, use_llm=False)
    assert result.diagnostics.facet_policy == "boost" and result.diagnostics.facet_matches == 3
    assert set(result.item_ids[:3]) == {"19", "20", "21"}
    assert len(result.item_ids) == 5


def test_mmr_with_lambda_zero_equals_the_plain_ranking(index, recommender):
    user = {"request": "a fun film for the family", "history": [{"item_id": "1"}]}
    plain = recommender.recommend(user, index, k=8)
    unchanged = recommender.recommend(user, index, k=8, diversity=0.0)
    assert unchanged.item_ids == plain.item_ids and unchanged.sources == plain.sources
    spread = recommender.recommend(user, index, k=8, diversity=0.9)
    assert spread.item_ids[0] == plain.item_ids[0] and set(spread.item_ids) <= set(index.ids)


def test_cart_and_post_purchase_leave_out_near_copies_of_the_users_items(index, recommender):
    user = {"history": [{"item_id": "15"}]}
    for scenario in ("cart", "post_purchase"):
        result = recommender.recommend(user, index, k=5, scenario=scenario, use_llm=False)
        closest = index.vectors(result.item_ids) @ index.vectors(["15"])[0]
        assert (closest < 0.9).all()
        assert result.diagnostics.scenario == scenario


def test_explanations_never_cite_an_item_outside_the_history(index, recommender):
    user = {"request": "a 90s comedy", "history": [{"item_id": "1"}, {"item_id": "10"}]}
    result = recommender.recommend(user, index, k=5, explain=True)
    assert result.explanations is not None and len(result.explanations) == 5
    history_titles = ["toy story (1995)", "home alone (1990)"]
    for item_id, reason in zip(result.item_ids, result.explanations, strict=True):
        own = index.catalog[item_id].title.lower()
        for item in index.catalog:
            if item.id not in {"1", "10", item_id} and len(item.title.split()) >= 3:
                assert item.title.lower().rsplit(" (", 1)[0] not in reason.lower()
        for quote in re.findall(r'"([^"]+)"', reason):
            quote = quote.lower()
            from_request = set(quote.split()) <= {"a", "90s", "comedy"}
            assert from_request or quote in own or any(quote in title for title in history_titles)


def test_history_ids_outside_the_catalogue_are_named(index, recommender):
    with pytest.raises(RequestError, match=r"user.history\[0\].item_id='999'"):
        recommender.recommend({"history": [{"item_id": "999"}]}, index, k=3)
    with pytest.raises(RequestError, match="options.k"):
        recommender.recommend({}, index, k=0)
    with pytest.raises(RequestError, match="user.hsitory"):
        recommender.recommend({"hsitory": []}, index, k=3)


def test_the_index_is_cached_by_content_and_rebuilt_when_the_catalogue_changes(tmp_path: Path):
    path = write_movies_csv(tmp_path)
    first = open_catalog(path)
    assert first.cache_status == "built"
    assert open_catalog(path) is first  # same file, same process: kept in memory
    again = build_index(CatalogSource(first.catalog, path=path))
    assert again.cache_status == "hit" and again.content_hash == first.content_hash
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    stored = list((tmp_path / "cache" / "catalog-index").iterdir())
    assert len(stored) == 1

    changed = [*MOVIES[:-1], ("24", "Fargo (1996)", "Comedy|Crime|Drama")]  # one attribute differs
    write_movies_csv(tmp_path, changed)
    rebuilt = open_catalog(path)
    assert rebuilt.cache_status == "built" and rebuilt.content_hash != first.content_hash
    stored = list((tmp_path / "cache" / "catalog-index").iterdir())
    assert len(stored) == 1, "the stale index of the same file is removed"
    assert json.loads((stored[0] / "meta.json").read_text())["source"] == str(path.resolve())


def test_catalogue_formats(tmp_path: Path):
    jsonl = tmp_path / "games.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps({"id": f"g{i}", "title": title, "categories": "Games"})
            for i, title in enumerate(
                ["Mario Kart 8 Deluxe - Nintendo Switch", "Halo 5 - Xbox One", "Zelda: Breath of the Wild"]
            )
        )
    )
    index = open_catalog(jsonl)
    assert index.vocabulary.platforms == {"Nintendo Switch", "Xbox One"}
    item_file = tmp_path / "Games.item"
    item_file.write_text("item_id:token\ttitle:token_seq\n0\tFire Emblem\n1\tHalo 3 - Xbox 360\n")
    assert open_catalog(item_file).ids == ["0", "1"]
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(DataError, match="unsupported catalogue format"):
        open_catalog(tmp_path / "x.parquet")


def test_a_pointwise_trained_recommender_ranks_the_shortlist_with_the_prompt_it_was_trained_on(
    index, recommender, tiny_llama_dir: Path
):
    # The shipped adapter answers Yes/No; a scenario's listwise prompt is one it never saw.
    user = {"history": [{"item_id": "1"}, {"item_id": "15"}]}
    pointwise = Recommender.load("transformers", str(tiny_llama_dir), default_mode=RankMode.POINTWISE)
    served = pointwise.recommend(user, index, k=5, scenario="cart")
    assert served.diagnostics.template == "pointwise_yesno"
    rank = served.diagnostics.rank
    assert rank is not None and rank.mode is RankMode.POINTWISE and rank.template == "pointwise_yesno"
    assert len(set(served.item_ids)) == 5 and not {"1", "15"} & set(served.item_ids)
    # A template the caller names wins; a recommender without a pointwise adapter keeps the scenario's.
    for result in (
        pointwise.recommend(user, index, k=5, template="scenario_cart"),
        recommender.recommend(user, index, k=5, scenario="cart"),
    ):
        rank = result.diagnostics.rank
        assert result.diagnostics.template == "scenario_cart"
        assert rank is not None and rank.mode is RankMode.SCORE


def test_a_platform_request_is_honoured(tmp_path: Path, recommender):
    titles = [f"Game {n} - {platform}" for n in range(6) for platform in ("Nintendo Switch", "PlayStation 4")]
    catalog = Catalog.from_records((str(i), {"id": str(i), "title": title}) for i, title in enumerate(titles))
    result = recommender.recommend({"request": "a racing game for the Switch"}, catalog, k=5)
    assert result.diagnostics.facets.platforms == ["Nintendo Switch"]
    assert all(title.endswith("Nintendo Switch") for title in result.titles)


def test_the_recommend_command_prints_json_and_a_table(tmp_path: Path, tiny_llama_dir: Path):
    from typer.testing import CliRunner

    from promptrec.cli import app

    catalog = write_movies_csv(tmp_path)
    runner = CliRunner()
    base = ["recommend", "--catalog", str(catalog), "--model", str(tiny_llama_dir)]
    result = runner.invoke(app, [*base, "--request-text", "a 90s comedy", "--k", "4", "--history", "1"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (
        len(payload["item_ids"]) == 4
        and len(set(payload["item_ids"])) == 4
        and "1" not in payload["item_ids"]
    )
    assert len(payload["titles"]) == len(payload["stages"]) == 4
    assert payload["diagnostics"]["facet_policy"] == "filter"
    assert payload["diagnostics"]["template"] == "scenario_browse"

    named = runner.invoke(app, [*base, "--k", "3", "--template", "pointwise_yesno"])
    assert named.exit_code == 0, named.output
    assert json.loads(named.stdout)["diagnostics"]["rank"]["mode"] == "pointwise"

    table = runner.invoke(app, [*base, "--k", "3", "--format", "table", "--scenario", "support_chat"])
    assert table.exit_code == 0, table.output
    assert "3 recommendations (support_chat)" in table.stdout

    # Titles are shown as written, never read as Rich markup ("[/x]" would crash, "[red]" would vanish).
    (tmp_path / "marked").mkdir()
    marked = write_movies_csv(tmp_path / "marked", [(i, f"[red]Film {i}[/x]", "Comedy") for i in range(1, 6)])
    marked_table = runner.invoke(
        app,
        [
            "recommend",
            "--catalog",
            str(marked),
            "--model",
            str(tiny_llama_dir),
            "--k",
            "5",
            "--format",
            "table",
        ],
    )
    assert marked_table.exit_code == 0, marked_table.output
    assert marked_table.stdout.count("[red]Film") == 5

    unknown = runner.invoke(app, [*base, "--history", "999"])
    assert unknown.exit_code == 2 and "user.history[0].item_id='999'" in unknown.output
