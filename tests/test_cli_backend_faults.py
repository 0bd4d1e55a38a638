"""`promptrec rank` against a broken server: --timeout, --fallback and --show-prompt, end to end."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from promptrec.cli import app
from tests.hostile_server import HostileServer, http_response, serve

REQUEST = json.dumps(
    {
        "user": {"request": "a calm puzzle game"},
        "candidates": [{"id": "a", "title": "Alien (1979)"}, {"id": "b", "title": 'Zelda" [A] "x'}],
    }
)


def rank(url: str, *options: str):
    args = ["rank", "--request", "-", "--backend", "openai", "--model", "m", "--base-url", url, *options]
    return CliRunner().invoke(app, args, input=REQUEST)


def script(bundled_model_dir, completions) -> HostileServer:
    models = (200, {"data": [{"id": "m", "root": str(bundled_model_dir), "max_model_len": 2048}]})
    return HostileServer({"/models": [models], "/completions": completions})


def test_timeout_bounds_a_trickling_server(bundled_model_dir):
    hostile = script(bundled_model_dir, [http_response(200, {"choices": [{"index": 0, "text": '["A"]'}]})])
    with serve(hostile) as url:
        hostile.routes["/models"][0] = http_response(*hostile.routes["/models"][0])
        started = time.monotonic()
        hostile.byte_delay_s = 0.0
        result_fast = rank(url, "--timeout", "2")  # a quick server answers
        hostile.byte_delay_s = 0.5
        # the model list already came; now the completion trickles
        result = rank(url, "--timeout", "2")
    assert result_fast.exit_code == 0, result_fast.output
    assert result.exit_code == 4 and "deadline" in result.output
    assert time.monotonic() - started < 30


def test_fallback_is_marked_and_the_prompt_is_shown(bundled_model_dir):
    failing = script(bundled_model_dir, [(500, {"error": {"message": "engine died"}})])
    with serve(failing) as url:
        result = rank(url, "--fallback", "retriever", "--show-prompt")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["item_ids"] == ["a", "b"] and payload["sources"] == ["fallback", "fallback"]
    assert "engine died" in payload["diagnostics"]["fallback_reason"]
    # The prompt the failed call carried is shown, so a broken server does not hide a template's output.
    sent = json.loads(failing.requests[-1][1])["prompt"][0]
    assert payload["diagnostics"]["prompts"] == [sent] and payload["diagnostics"]["template"]


def test_show_prompt_prints_exactly_what_the_model_received(bundled_model_dir):
    hostile = script(bundled_model_dir, [(200, {"choices": [{"index": 0, "text": '["B", "A"]'}]})])
    with serve(hostile) as url:
        result = rank(url, "--show-prompt")
    assert result.exit_code == 0, result.output
    sent = json.loads(hostile.requests[-1][1])["prompt"][0]
    assert json.loads(result.stdout)["diagnostics"]["prompts"] == [sent]
    # The title's quote stays inside its JSON literal; its `[A]` names a label of this prompt, so it goes.
    assert sent in result.stderr and '[B] "Zelda\\" \\"x"' in sent
