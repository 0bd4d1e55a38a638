"""Bad input to the CLI fails fast, names the field or record, and exits non-zero (no model is loaded)."""

import json

from typer.testing import CliRunner

from promptrec.cli import app

runner = CliRunner()


def invoke(*args: str, stdin: str | None = None):
    return runner.invoke(app, list(args), input=stdin)


def request_json(**changes) -> str:
    request = {
        "user": {"history": []},
        "candidates": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}],
    }
    request.update(changes)
    return json.dumps(request)


def test_unreadable_request_file(tmp_path):
    result = invoke("rank", "--request", str(tmp_path / "missing.json"))
    assert result.exit_code == 2
    assert "missing.json" in result.output and "cannot read" in result.output


def test_empty_candidates_from_stdin():
    result = invoke("rank", "--request", "-", stdin=request_json(candidates=[]))
    assert result.exit_code == 2
    assert "request.candidates" in result.output


def test_duplicate_candidate_ids():
    result = invoke("rank", "--request", "-", stdin=request_json(candidates=[{"id": "a", "title": "A"}] * 2))
    assert result.exit_code == 2
    assert "candidates[1].id='a'" in result.output


def test_misspelt_field():
    result = invoke("rank", "--request", "-", stdin=request_json(user={"histroy": []}))
    assert result.exit_code == 2
    assert "request.user.histroy" in result.output and "did you mean 'history'" in result.output


def test_history_item_unknown_to_catalogue():
    result = invoke("rank", "--request", "-", stdin=request_json(user={"history": [{"item_id": "zz"}]}))
    assert result.exit_code == 2
    assert "user.history[0].item_id='zz'" in result.output


def test_missing_dataset_file(tmp_path):
    result = invoke("rank", "--dataset", str(tmp_path / "nope.jsonl"), "--user", "1")
    assert result.exit_code == 2
    assert "nope.jsonl" in result.output


def test_unknown_user_in_dataset(tmp_path):
    line = {
        "user_id": "7",
        "history_item_ids": ["1"],
        "history_titles": ["Old"],
        "candidate_item_ids": ["2", "3"],
        "candidate_titles": ["X", "Y"],
        "target_item_id": "2",
        "target_title": "X",
    }
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(line) + "\n")
    result = invoke("rank", "--dataset", str(path), "--user", "8")
    assert result.exit_code == 2
    assert "8" in result.output


def test_neither_request_nor_dataset():
    result = invoke("rank")
    assert result.exit_code == 2
    assert "--request" in result.output and "--dataset" in result.output


def test_error_messages_quote_data_exactly_even_when_it_looks_like_markup():
    # Rich reads "[/x]" as a closing tag (a crash) and "[red]" as a style (text lost); data is not markup.
    extra_field = invoke("rank", "--request", "-", stdin=request_json(**{"[/x]": 1}))
    assert extra_field.exit_code == 2 and "[/x]" in extra_field.output
    duplicate = [{"id": "[red]", "title": "A"}] * 2
    repeated_id = invoke("rank", "--request", "-", stdin=request_json(candidates=duplicate))
    assert repeated_id.exit_code == 2 and "id='[red]'" in repeated_id.output


def test_finetune_refuses_an_empty_lora_module_list(tmp_path):
    result = invoke(
        "finetune",
        "--dataset",
        "promptrec/datasets/ml-latest-small",
        "--out",
        str(tmp_path),
        "--lora-modules",
        " , ",
    )
    assert result.exit_code == 2
    assert "--lora-modules is empty" in result.output


def test_finetune_refuses_a_candidate_count_the_pointwise_objective_would_ignore(tmp_path):
    args = ["finetune", "--dataset", "promptrec/datasets/ml-latest-small", "--out", str(tmp_path)]
    result = invoke(*args, "--candidates", "6")
    assert result.exit_code == 2
    assert "--candidates" in result.output and "--objective ranking" in result.output
    assert (
        invoke(*args, "--candidates", "1", "--objective", "ranking").exit_code == 2
    )  # a group needs a negative


def test_rank_refuses_demonstrations_without_a_dataset_to_draw_them_from():
    result = invoke("rank", "--request", "-", "--demos", "1", stdin=request_json())
    assert result.exit_code == 2
    assert "--demos draws demonstrations" in result.output and "--dataset PATH --user ID" in result.output
