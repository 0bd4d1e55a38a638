"""Loaders: each format loads; bad records are a DataError naming the record or are counted in the report."""

import json
from pathlib import Path

import pytest

from promptrec.data import (
    InteractionLog,
    interaction_sort_key,
    load_catalog,
    load_dataset,
    load_llmrank_cases,
    load_movielens,
    load_tallrec,
)
from promptrec.errors import DataError
from promptrec.models import RankMode

REAL_GAMES200 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "llmrank-games"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


# --- catalogues -------------------------------------------------------------------------------------


def test_jsonl_catalogue_keeps_text_and_turns_extra_fields_into_attributes(tmp_path):
    rows = [
        {"id": "a", "title": "Alpha", "text": "first", "genres": ["Action", "Drama"], "year": 1999},
        {"id": 7, "title": "Seven"},
    ]
    catalog = load_catalog(write(tmp_path / "items.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n"))
    assert catalog.ids == ["a", "7"]
    assert catalog["a"].text == "first"
    assert catalog["a"].attributes == {"genres": "Action, Drama", "year": "1999"}
    assert catalog["7"].title == "Seven" and "7" in catalog and len(catalog) == 2


def test_csv_catalogue_reads_quoted_cells_and_extra_columns(tmp_path):
    text = 'id,title,text,brand\n1,"Toy Story, The",A toy film,Pixar\n2,Heat,,\n'
    catalog = load_catalog(write(tmp_path / "items.csv", text))
    assert catalog["1"].title == "Toy Story, The"
    assert catalog["1"].attributes == {"brand": "Pixar"}
    assert catalog["2"].text is None and catalog["2"].attributes == {}


def test_duplicate_id_is_an_error_naming_the_line_in_strict_mode(tmp_path):
    path = write(tmp_path / "items.csv", "id,title\n1,One\n2,Two\n1,One again\n")
    with pytest.raises(DataError, match=r"items\.csv, record line 4: id '1' is a duplicate"):
        load_catalog(path)


def test_duplicate_id_is_counted_and_first_record_kept_in_lenient_mode(tmp_path):
    path = write(tmp_path / "items.csv", "id,title\n1,One\n2,Two\n1,One again\n")
    catalog = load_catalog(path, strict=False)
    assert catalog["1"].title == "One"
    assert catalog.quality.duplicate_item_ids.count == 1
    assert catalog.quality.duplicate_item_ids.examples == ["line 4: id 1"]
    assert catalog.quality.records_skipped == 1


def test_missing_title_is_an_error_or_counted(tmp_path):
    path = write(
        tmp_path / "items.jsonl", '{"id": "a", "title": "A"}\n{"id": "b", "title": "  "}\n{"id": "c"}\n'
    )
    with pytest.raises(DataError, match=r"record line 2: item 'b' has a missing, empty or non-text title"):
        load_catalog(path)
    catalog = load_catalog(path, strict=False)
    assert catalog.ids == ["a"]
    assert catalog.quality.missing_titles.count == 2
    assert "no issues" not in catalog.quality.summary()


def test_catalogue_file_problems_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"missing\.csv: item catalogue not found; check the path"):
        load_catalog(tmp_path / "missing.csv")
    undecodable = tmp_path / "latin.csv"
    undecodable.write_bytes("id,title\n1,Caf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv: item catalogue is not valid utf-8-sig .*re-save it"):
        load_catalog(undecodable)
    with pytest.raises(DataError, match=r"unsupported catalogue format '\.txt'"):
        load_catalog(write(tmp_path / "items.txt", "x"))
    with pytest.raises(DataError, match=r"header lacks column\(s\) \['title'\]"):
        load_catalog(write(tmp_path / "no_title.csv", "id,name\n1,x\n"))
    with pytest.raises(DataError, match=r"record line 2: is not valid JSON"):
        load_catalog(write(tmp_path / "bad.jsonl", '{"id": "a", "title": "A"}\n{oops\n'))


# --- MovieLens ---------------------------------------------------------------------------------------


def latest_small(folder: Path, ratings: str) -> Path:
    folder.mkdir()
    write(
        folder / "movies.csv",
        'movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n2,"American President, The (1995)",'
        "Drama\n9,Sudden Death (1995),Action\n10,GoldenEye (1995),(no genres listed)\n",
    )
    write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n" + ratings)
    return folder


def test_movielens_latest_small_loads_sorted_histories_with_item_id_tie_break(tmp_path):
    folder = latest_small(tmp_path / "ml", "1,10,4.0,100\n1,2,3.5,50\n1,9,5.0,100\n2,1,2.0,7\n2,2,1.0,8\n")
    log = load_movielens(folder)
    assert isinstance(log, InteractionLog)
    # Ties at t=100 are ordered by item id as integers: 9 before 10.
    assert [event.item_id for event in log.histories["1"]] == ["2", "9", "10"]
    assert log.histories["1"] == sorted(log.histories["1"], key=interaction_sort_key)
    assert log.histories["1"][0].rating == 3.5
    assert log.catalog["2"].title == "American President, The (1995)"
    assert log.catalog["1"].attributes == {"genres": "Animation|Comedy"}
    assert log.catalog["10"].attributes == {}
    assert log.quality.timestamp_ties.count == 1
    assert log.quality.timestamp_ties.examples == ["user 1 at 100: items 9, 10"]
    assert log.quality.users_with_last_timestamp_tie.count == 1
    assert log.quality.users_with_timestamp_ties == 1
    assert log.interaction_count == 5


def test_movielens_rating_for_unknown_movie_is_an_error_or_counted(tmp_path):
    folder = latest_small(tmp_path / "ml", "1,1,4.0,1\n1,404,3.0,2\n1,2,3.0,3\n")
    with pytest.raises(DataError, match=r"ratings\.csv, record line 3: user '1' interacted with item '404'"):
        load_movielens(folder)
    log = load_movielens(folder, strict=False)
    assert [event.item_id for event in log.histories["1"]] == ["1", "2"]
    assert log.quality.unknown_history_items.count == 1
    assert log.quality.unknown_history_items.examples == ["line 3: user 1, item 404"]


def test_movielens_malformed_rating_row_is_an_error_or_counted(tmp_path):
    folder = latest_small(tmp_path / "ml", "1,1,4.0,1\n1,2,high,2\n")
    with pytest.raises(DataError, match=r"record line 3: malformed ratings row"):
        load_movielens(folder)
    log = load_movielens(folder, strict=False)
    assert log.interaction_count == 1
    assert sum(tally.count for tally in log.quality.skipped.values()) == 1


def test_movielens_100k_reads_latin1_titles_and_genre_flags(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    flags_action_comedy = ["0", "1"] + ["0"] * 3 + ["1"] + ["0"] * 13
    items = [
        "1|Caf\u00e9 Society (1995)|01-Jan-1995||http://x|" + "|".join(flags_action_comedy),
        "2|unknown||||" + "|".join(["1"] + ["0"] * 18),
    ]
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    write(folder / "u.data", "7\t1\t4\t881250949\n7\t2\t3\t881250949\n8\t2\t5\t1\n")
    log = load_movielens(folder)
    assert log.catalog["1"].title == "Caf\u00e9 Society (1995)"
    assert log.catalog["1"].attributes == {"genres": "Action|Comedy"}
    assert log.catalog["2"].attributes == {"genres": "unknown"}
    assert [event.item_id for event in log.histories["7"]] == ["1", "2"]
    assert log.quality.users_with_last_timestamp_tie.count == 1


def test_folder_that_is_not_movielens_is_rejected(tmp_path):
    with pytest.raises(DataError, match=r"is not a MovieLens folder"):
        load_movielens(tmp_path)


# --- RecBole -----------------------------------------------------------------------------------------


def test_recbole_atomic_inter_with_item_file_is_split_leave_one_out(tmp_path):
    write(
        tmp_path / "toy.item",
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        + "".join(f"i{n}\tMovie {n}\tDrama\n" for n in range(30)),
    )
    write(
        tmp_path / "toy.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u1\ti3\t4\t20\nu1\ti1\t5\t10\nu1\ti2\t3\t30\nu2\ti5\t1\t1\nu2\ti6\t1\t2\n",
    )
    dataset = load_dataset(tmp_path / "toy.inter", n_negatives=5)
    case = dataset.case_for_user("u1")
    assert case.target_id == "i2"
    assert [event.item_id for event in case.user.history] == ["i1", "i3"]
    assert len(case.candidates) == 6
    assert dataset.catalog["i4"].title == "Movie 4"
    assert dataset.catalog["i4"].attributes == {"class": "Drama"}
    assert dataset.train_histories == {"u1": ["i1", "i3"], "u2": ["i5"]}


def test_recbole_sequence_inter_finds_the_dataset_item_file(tmp_path):
    write(
        tmp_path / "Toy.item",
        "item_id:token\ttitle:token_seq\n" + "".join(f"{n}\tGame {n}\n" for n in range(40)),
    )
    write(
        tmp_path / "Toy-1k.test.inter",
        "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t0 1 2\t3\n1\t4 5\t6\n",
    )
    dataset = load_dataset(tmp_path / "Toy-1k.test.inter", n_negatives=9)
    case = dataset.case_for_user("1")
    assert [event.item_id for event in case.user.history] == ["4", "5"]
    assert [item.title for item in case.history_items] == ["Game 4", "Game 5"]
    assert case.target_id == "6" and len(case.candidates) == 10
    assert dataset.train_histories == {"0": ["0", "1", "2"], "1": ["4", "5"]}
    assert [case.case_id for case in dataset.cases] == ["0", "1"]


def test_recbole_sequence_with_unknown_item_is_an_error_or_skips_the_user(tmp_path):
    write(
        tmp_path / "Toy.item",
        "item_id:token\ttitle:token_seq\n" + "".join(f"{n}\tGame {n}\n" for n in range(30)),
    )
    inter = write(
        tmp_path / "Toy.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t0 99\t3\n1\t4\t5\n"
    )
    with pytest.raises(
        DataError, match=r"record line 2: user '0' has items \['99'\] that are not in the catalogue"
    ):
        load_dataset(inter)
    dataset = load_dataset(inter, strict=False)
    assert dataset.user_ids == ["1"]
    assert dataset.quality.unknown_history_items.count == 1


def test_recbole_header_and_sibling_problems_are_named(tmp_path):
    write(tmp_path / "a.inter", "user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\n")
    with pytest.raises(DataError, match=r"no RecBole \.item file beside it \(tried a\.item\)"):
        load_dataset(tmp_path / "a.inter")
    write(tmp_path / "a.item", "item_id:token\ttitle\n")
    with pytest.raises(DataError, match=r"a\.item, record line 1: header column 'title' is not `name:type`"):
        load_dataset(tmp_path / "a.inter")
    write(tmp_path / "a.item", "item_id:token\ttitle:token_seq\ni\tI\n")
    write(tmp_path / "a.inter", "user_id:token\titem_id:token\nu\ti\n")
    with pytest.raises(DataError, match=r"lacks the 'timestamp' field"):
        load_dataset(tmp_path / "a.inter")


# --- LLMRank ready ranking sets ---------------------------------------------------------------------


def llmrank_row(user: str, **changes) -> dict:
    row = {
        "user_id": user,
        "history_item_ids": ["h1", "h2"],
        "history_titles": ["Old One", "Old Two"],
        "candidate_item_ids": ["c1", "t", "c2"],
        "candidate_titles": ["Cand One", "Target", "Cand Two"],
        "target_item_id": "t",
        "target_title": "Target",
    }
    return row | changes


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def test_llmrank_set_loads_cases_that_keep_the_target_out_of_requests(tmp_path):
    cases = load_llmrank_cases(write_jsonl(tmp_path / "set.jsonl", [llmrank_row("u1"), llmrank_row("u2")]))
    case = cases[0]
    assert case.case_id == "u1" and case.target_id == "t"
    assert [item.id for item in case.candidates] == ["c1", "t", "c2"]
    assert [event.item_id for event in case.user.history] == ["h1", "h2"]
    assert [item.title for item in case.history_items] == ["Old One", "Old Two"]
    request = case.to_request(mode=RankMode.SCORE)
    assert "target_id" not in request.model_dump_json()
    assert "t" not in [event.item_id for event in request.user.history]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_item_id": "zz"}, r"line 2: .*user u2: target_item_id 'zz' is not among the candidates"),
        (
            {"candidate_item_ids": ["c1", "t", "c1"]},
            r"line 2: .*user u2: candidate ids \['c1'\] appear more than once",
        ),
        ({"history_titles": ["Only one"]}, r"line 2: .*user u2: 2 history ids but 1 history titles"),
        ({"candidate_titles": ["A", "B"]}, r"line 2: .*user u2: 3 candidate ids but 2 candidate titles"),
        ({"user_id": "u1"}, r"line 2: .*user u1 already has a case on line 1"),
        (
            {"candidate_titles": ["Renamed", "Target", "Cand Two"]},
            r"line 2: item 'c1' is titled 'Renamed' here",
        ),
    ],
)
def test_llmrank_violations_name_line_and_user(tmp_path, changes, message):
    path = write_jsonl(tmp_path / "set.jsonl", [llmrank_row("u1"), llmrank_row("u2", **changes)])
    with pytest.raises(DataError, match=message):
        load_llmrank_cases(path)


def test_dataset_from_llmrank_set_looks_users_up(tmp_path):
    dataset = load_dataset(write_jsonl(tmp_path / "set.jsonl", [llmrank_row("u1"), llmrank_row("u2")]))
    assert dataset.case_for_user("u2").case_id == "u2"
    assert dataset.train_histories["u1"] == ["h1", "h2"]
    assert sorted(item.id for item in dataset.catalog) == ["c1", "c2", "h1", "h2", "t"]
    with pytest.raises(DataError, match=r"user 'nobody' has no case .*valid ids include u1, u2"):
        dataset.case_for_user("nobody")


def test_dataset_paths_that_cannot_be_loaded_name_the_path(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: does not exist"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match=r"data\.parquet: unrecognised data source '\.parquet'"):
        load_dataset(write(tmp_path / "data.parquet", ""))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=r"bad\.jsonl: LLMRank ranking set is not valid utf-8"):
        load_dataset(bad)


@pytest.mark.skipif(
    not (REAL_GAMES200 / "games200_random_cands20.jsonl").is_file(),
    reason="needs ../shared/data/llmrank-games beside the repository",
)
def test_real_games200_set_loads():
    # Load time is a benchmark figure, not a test: timed asserts fail on a loaded machine.
    dataset = load_dataset(REAL_GAMES200 / "games200_random_cands20.jsonl")
    assert len(dataset.cases) == 200
    assert all(len(case.candidates) == 20 for case in dataset.cases)
    case = dataset.case_for_user("40610")
    assert case.target_id in {item.id for item in case.candidates}
    assert case.target_id not in {event.item_id for event in case.user.history}


# --- TALLRec -----------------------------------------------------------------------------------------

INSTRUCTION = (
    "Given the user's preference and unpreference, identify whether the user will like the target movie."
)


def tallrec_row(liked: str, disliked: str, target: str, output: str, kind: str = "movie") -> dict:
    question = f"Whether the user will like the target {kind} {target}?"
    text = f"User Preference: {liked}\nUser Unpreference: {disliked}\n{question}"
    return {"instruction": INSTRUCTION, "input": text, "output": output}


def test_tallrec_movie_rows_become_pointwise_cases(tmp_path):
    rows = [
        tallrec_row('"Heat (1995)", "Casino, The (1995)"', '"Babe (1995)"', '"Fargo (1996)"', "Yes."),
        tallrec_row("", '"Babe (1995)"', '"Jaws (1975)"', "No."),
    ]
    cases = load_tallrec(write(tmp_path / "test.json", json.dumps(rows)))
    first = cases[0]
    assert first.liked_titles == ["Heat (1995)", "Casino, The (1995)"]
    assert first.disliked_titles == ["Babe (1995)"]
    assert first.target_title == "Fargo (1996)" and first.label is True
    assert cases[1].liked_titles == [] and cases[1].label is False
    request = first.to_request()
    assert request.mode == RankMode.POINTWISE
    assert [item.id for item in request.candidates] == ["Fargo (1996)"]
    assert [(event.item_id, event.event) for event in request.user.history] == [
        ("Heat (1995)", "like"),
        ("Casino, The (1995)", "like"),
        ("Babe (1995)", "dislike"),
    ]
    assert {item.id for item in request.history_items} == {"Heat (1995)", "Casino, The (1995)", "Babe (1995)"}


def test_tallrec_book_rows_keep_the_author(tmp_path):
    row = tallrec_row(
        '"Sula" written by Toni Morrison', "", '""Beloved" written by Toni Morrison"', "Yes.", "book"
    )
    case = load_tallrec(write(tmp_path / "book.json", json.dumps([row])))[0]
    assert case.liked_titles == ["Sula written by Toni Morrison"]
    assert case.target_title == "Beloved written by Toni Morrison"


def test_tallrec_bad_rows_name_the_row(tmp_path):
    good = tallrec_row('"A"', '"B"', '"C"', "Yes.")
    with pytest.raises(DataError, match=r"record row 1: output 'Maybe' is neither"):
        load_tallrec(write(tmp_path / "a.json", json.dumps([good, good | {"output": "Maybe"}])))
    with pytest.raises(DataError, match=r"record row 0: input does not follow the TALLRec layout"):
        load_tallrec(write(tmp_path / "b.json", json.dumps([good | {"input": "Do you like C?"}])))
    with pytest.raises(DataError, match=r"record row 0: a title list is not a comma-separated list"):
        load_tallrec(write(tmp_path / "c.json", json.dumps([tallrec_row("A, B", '"B"', '"C"', "No.")])))
    with pytest.raises(DataError, match=r"must be a non-empty JSON list"):
        load_tallrec(write(tmp_path / "d.json", "{}"))
