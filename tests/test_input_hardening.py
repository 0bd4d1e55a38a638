"""Hostile requests through the public entry points: each a typed RequestError/TemplateError, no traceback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from promptrec import RequestLimits, parse_request
from promptrec.cli import app
from promptrec.errors import RequestError
from tests.hostile_server import HostileServer, serve

runner = CliRunner()


def request(**changes) -> dict:
    return {"user": {}, "candidates": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}], **changes}


def rank_file(tmp_path, data: bytes, *options: str):
    path = tmp_path / "request.json"
    path.write_bytes(data)
    return runner.invoke(app, ["rank", "--request", str(path), *options])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"user": {}, "candidates": [{"id": "a", "title": "\xff\xfe"}]}', "not valid UTF-8 (byte 50"),
        (b"[" * 100_000, "nested deeper than 32"),
        (json.dumps(request(candidates=[{"id": True, "title": "A"}])).encode(), "not a boolean"),
        (json.dumps(request(k="3")).encode(), "request.k: Input should be a valid integer"),
        (json.dumps(request(k=2.0)).encode(), "request.k: Input should be a valid integer"),
        (json.dumps(request(k=True)).encode(), "request.k: Input should be a valid integer"),
        (
            json.dumps(
                request(mode="pointwise", candidates=[{"id": i, "title": "t"} for i in range(10_000)])
            ).encode(),
            "10000 candidates, but pointwise mode takes at most 100",
        ),
        (b" " * 2_000_001, "more than the limit of 2000000"),
        (b'{"user": {}, "candidates": [{"id": "\\ud800", "title": "x"}]}', "unpaired surrogate"),
    ],
)
def test_bad_request_files_exit_2_with_a_message_and_no_traceback(tmp_path, data, message):
    result = rank_file(tmp_path, data)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_integer_ids_stay_their_decimal_text():
    assert parse_request(request(candidates=[{"id": 7, "title": "A"}], k=1)).candidates[0].id == "7"


def test_candidate_limits_are_configurable():
    many = request(candidates=[{"id": i, "title": "t"} for i in range(5)])
    with pytest.raises(RequestError, match="5 candidates, but generate mode takes at most 3"):
        parse_request(many, RequestLimits(max_candidates={"generate": 3}))
    assert len(parse_request(many).candidates) == 5


@pytest.mark.parametrize(
    ("options", "changes", "code", "message"),
    [
        (["--template", "/abs/path/name"], {}, 3, "is not a template name"),
        (["--template", "listwise_generate"], {"mode": "score"}, 3, "declares mode 'generate'"),
        (
            [],
            {"candidates": [{"id": "a", "title": "\x00\x01\u200b\u202e"}]},
            2,
            "candidates[0] (id 'a').title",
        ),
    ],
)
def test_template_and_empty_title_errors_through_the_cli(bundled_model_dir, options, changes, code, message):
    models = (200, {"data": [{"id": "m", "root": str(bundled_model_dir), "max_model_len": 2048}]})
    with serve(HostileServer({"/models": [models]})) as url:
        args = ["rank", "--request", "-", "--backend", "openai", "--model", "m", "--base-url", url]
        mode = ["--mode", changes.pop("mode")] if "mode" in changes else []
        result = runner.invoke(app, [*args, *mode, *options], input=json.dumps(request(**changes)))
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
