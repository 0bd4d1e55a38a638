import json

import pytest

from promptrec.errors import RequestError
from promptrec.validation import parse_request

VALID = {
    "user": {"user_id": "u1", "history": [{"item_id": "h1"}]},
    "history_items": [{"id": "h1", "title": "Old game"}],
    "candidates": [{"id": "a", "title": "Game A"}, {"id": "b", "title": "Game B"}],
}


def with_changes(**changes):
    return {**json.loads(json.dumps(VALID)), **changes}


def test_valid_request_parses_from_dict_and_json():
    assert parse_request(VALID).candidates[1].id == "b"
    assert parse_request(json.dumps(VALID)).user.history[0].item_id == "h1"


def test_empty_candidate_list_names_the_field():
    with pytest.raises(RequestError, match=r"request\.candidates: .*at least 1"):
        parse_request(with_changes(candidates=[]))


def test_the_error_the_readme_names_can_be_caught_from_the_package():
    import promptrec

    with pytest.raises(promptrec.RequestError):  # what the README's Python example says to catch
        promptrec.parse_request(with_changes(candidates=[]))
    errors = (promptrec.BackendError, promptrec.DataError, promptrec.TemplateError)
    assert all(issubclass(error, promptrec.PromptrecError) for error in errors)


def test_duplicate_candidate_ids_name_the_record():
    duplicate = [{"id": "a", "title": "Game A"}, {"id": "a", "title": "Game A again"}]
    with pytest.raises(RequestError, match=r"candidates\[1\]\.id='a' is a duplicate"):
        parse_request(with_changes(candidates=duplicate))


def test_history_item_unknown_to_the_catalogue_names_the_record():
    request = with_changes(user={"history": [{"item_id": "h1"}, {"item_id": "ghost"}]})
    with pytest.raises(RequestError, match=r"user\.history\[1\]\.item_id='ghost' is not in history_items"):
        parse_request(request)


def test_misspelt_field_is_named_with_a_suggestion():
    request = with_changes(user={"user_id": "u1", "histroy": []})
    with pytest.raises(
        RequestError, match=r"request\.user\.histroy: unknown field; did you mean 'history'\?"
    ):
        parse_request(request)
    with pytest.raises(RequestError, match=r"request\.candiates: unknown field; did you mean 'candidates'\?"):
        parse_request({**VALID, "candiates": VALID["candidates"]})


def test_missing_title_and_bad_k_are_named():
    with pytest.raises(RequestError, match=r"request\.candidates\[0\]\.title"):
        parse_request(with_changes(candidates=[{"id": "a"}]))
    with pytest.raises(RequestError, match=r"request\.k: .*greater than or equal to 1"):
        parse_request(with_changes(k=0))


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(RequestError, match=r"request\.mode: .*'generate', 'score' or 'pointwise'"):
        parse_request(with_changes(mode="listwise"))


def test_invalid_json_gives_position():
    with pytest.raises(RequestError, match="line 1, column"):
        parse_request("{not json")
