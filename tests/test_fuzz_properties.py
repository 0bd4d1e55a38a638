"""Small property-based versions of scripts/fuzz.py: hostile text, documents and files never crash."""

from __future__ import annotations

import contextlib
import json
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptrec.data.dataset import load_dataset
from promptrec.errors import DataError, PromptrecError, RequestError
from promptrec.models import Item
from promptrec.parsing import parse_answer
from promptrec.prompting.contract import OutputContract
from promptrec.prompting.sanitize import TextSanitizer
from promptrec.validation import parse_request

PIECES = st.sampled_from(
    ['"', "[", "]", "{", "}", ",", "\n", "1.", "[A]", '"B"', "</candidates>", "<|im_end|>", "\u202e"]
)
HOSTILE_TEXT = st.lists(st.one_of(PIECES, st.text(max_size=6)), max_size=30).map("".join)
CANDIDATES = [Item(id=i, title=t) for i, t in (("a", "Alien (1979)"), ("b", '"B"'), ("7", "[C] 1."))]
CONTRACTS = st.builds(
    OutputContract,
    format=st.just("json_array") | st.just("numbered_list"),
    mode=st.just("generate"),
    identifiers=st.sampled_from(["labels", "ids"]),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(["user", "candidates", "k", "mode", "history_items", "template", "id", "title"])


@settings(max_examples=400, deadline=None)
@given(text=HOSTILE_TEXT, contract=CONTRACTS)
def test_any_output_parses_to_candidates_only(text, contract):
    parsed = parse_answer(text, CANDIDATES, contract)
    assert set(parsed.ordered_ids) <= {"a", "b", "7"}
    assert len(set(parsed.ordered_ids)) == len(parsed.ordered_ids)


@settings(max_examples=400, deadline=None)
@given(document=st.dictionaries(FIELDS, JSON_VALUES, max_size=6) | JSON_VALUES, as_text=st.booleans())
def test_any_document_is_a_request_or_a_request_error(document, as_text):
    with contextlib.suppress(RequestError):  # anything else fails the test
        parse_request(json.dumps(document) if as_text else document)


@settings(max_examples=300, deadline=None)
@given(text=HOSTILE_TEXT)
def test_cleaned_text_holds_no_structure(text):
    sanitizer = TextSanitizer(["<file_sep>", "<|im_end|>"])
    literal = sanitizer.literal(text, 200)
    assert json.loads(literal) == sanitizer.clean(text, 200)
    cleaned = json.loads(literal)
    assert not re.search(r"<\s*/?\s*candidates\s*>|<\|im_end\|>|<file_sep>", cleaned, re.IGNORECASE)
    assert not any(unicodedata.category(char) in ("Cf", "Cc") for char in cleaned)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400) | HOSTILE_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_any_ranking_set_file_loads_or_is_a_data_error(tmp_path, data):
    path = tmp_path / "set.jsonl"
    path.write_bytes(data)
    with contextlib.suppress(PromptrecError):
        load_dataset(path)


def test_a_csv_field_over_the_csv_size_limit_is_a_data_error(tmp_path):
    # Found by scripts/fuzz.py: csv.Error escaped the MovieLens and catalogue loaders as a traceback.
    from promptrec.data.catalog import load_catalog

    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "movies.csv").write_text('movieId,title,genres\n1,"' + "x" * 200_000 + '",Drama\n')
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n")
    (tmp_path / "items.csv").write_text('id,title\n1,"' + "x" * 200_000 + '"\n')
    for load, path in ((load_dataset, folder), (load_catalog, tmp_path / "items.csv")):
        with pytest.raises(DataError, match=r"record line \d+: is not readable CSV \(field larger"):
            load(path)
