"""A broken or hostile OpenAI-compatible server: every fault is a BackendError by the deadline, never a hang
or a traceback, and non-finite scores never reach JSON output."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from promptrec.backends.base import GenerationConfig
from promptrec.backends.openai_backend import OpenAIServerBackend
from promptrec.errors import BackendError
from promptrec.recommender import Recommender
from tests.hostile_server import HostileServer, http_response, serve


def models(tokenizer_dir: Path) -> tuple[int, dict]:
    return 200, {"data": [{"id": "m", "root": str(tokenizer_dir), "max_model_len": 2048}]}


def completion(*choices: dict) -> tuple[int, dict]:
    return 200, {"choices": list(choices)}


def logprob_choice(index: int, top: dict) -> dict:
    return {"index": index, "text": "A", "logprobs": {"top_logprobs": [top]}}


@pytest.mark.parametrize("slow_part", ["headers", "body"])
def test_a_server_trickling_one_byte_at_a_time_is_cut_off_at_the_deadline(bundled_model_dir, slow_part):
    answer = http_response(*completion({"index": 0, "text": "x" * 200}))
    script = HostileServer({"/models": [models(bundled_model_dir)], "/completions": [answer]})
    with serve(script) as url:
        backend = OpenAIServerBackend(url, "m", timeout_s=2, max_retries=3)
        script.byte_delay_s = 0.2
        if slow_part == "body":  # headers at once, then the body byte by byte
            head, _, body = answer.partition(b"\r\n\r\n")
            script.routes["/completions"] = [head + b"\r\n\r\n" + body]
        started = time.monotonic()
        with pytest.raises(BackendError, match="deadline of 2 s"):
            backend.generate(["hello"], GenerationConfig(max_new_tokens=2))
        assert time.monotonic() - started < 10, "the deadline bounds the call (it hung for minutes before)"
        backend.close()


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (completion({"index": 0}), "choices.0.text: Field required"),
        (completion({"text": "x"}), "choices.0.index: Field required"),
        (completion({"index": "0", "text": "x"}), "choices.0.index: Input should be a valid integer"),
        (completion({"index": 0, "text": 5}), "choices.0.text"),
        ((200, {"choice": []}), "choices: Field required"),
        ((200, ["not", "an", "object"]), "Completion"),
        ((200, b"{not json"), "Invalid JSON"),
        ((200, b"[" * 100_000), "Invalid JSON"),
        ((200, b""), "Invalid JSON"),
        (
            completion({"index": 0, "text": "a"}, {"index": 0, "text": "b"}),
            "answered 2 choices for 1 prompts",
        ),
        (completion({"index": 0, "text": "a", "token_ids": ["1"]}), "choices.0.token_ids.0"),
        ((500, b"\xff\xfe oops"), "HTTP 500"),
    ],
)
def test_wrong_shaped_completions_are_backend_errors_naming_the_fault(bundled_model_dir, answer, named):
    script = HostileServer({"/models": [models(bundled_model_dir)], "/completions": [answer]})
    with serve(script) as url:
        backend = OpenAIServerBackend(url, "m", timeout_s=5, max_retries=0)
        with pytest.raises(BackendError, match=named.replace("(", r"\(").replace("[", r"\[")):
            backend.generate(["hello"], GenerationConfig(max_new_tokens=2))
        backend.close()


@pytest.mark.parametrize(
    ("top", "named"),
    [
        ({"A": "-0.5"}, "valid number"),
        ({"token_id:abc": -0.5}, "token_id:abc"),
        ({"token_id:-1": -0.5}, "token_id:-1"),
        ([["A", -0.5]], "top_logprobs.0"),
    ],
)
def test_wrong_shaped_logprobs_are_backend_errors(bundled_model_dir, top, named):
    script = HostileServer(
        {"/models": [models(bundled_model_dir)], "/completions": [completion(logprob_choice(0, top))]}
    )
    with serve(script) as url:
        backend = OpenAIServerBackend(url, "m", timeout_s=5, max_retries=0)
        with pytest.raises(BackendError, match=named):
            backend.next_token_logprobs(["p"], ["A", "B"])
        backend.close()


@pytest.mark.parametrize("card", [{"root": "x"}, {"id": 5}, {"id": "m", "max_model_len": "2048"}])
def test_wrong_shaped_model_lists_are_backend_errors(card):
    with (
        serve(HostileServer({"/models": [(200, {"data": [card]})]})) as url,
        pytest.raises(BackendError, match="malformed ModelList"),
    ):
        OpenAIServerBackend(url, "m", timeout_s=5)


def test_an_oversized_answer_is_refused(bundled_model_dir):
    script = HostileServer(
        {
            "/models": [models(bundled_model_dir)],
            "/completions": [completion({"index": 0, "text": "x" * 5000})],
        }
    )
    with serve(script) as url:
        backend = OpenAIServerBackend(url, "m", timeout_s=5)
        backend._client.max_response_bytes = 1000
        with pytest.raises(BackendError, match="limit is 1000"):
            backend.generate(["hello"], GenerationConfig(max_new_tokens=2))
        backend.close()


def test_transient_faults_are_retried_with_backoff_within_the_deadline(bundled_model_dir):
    ok = completion({"index": 0, "text": "fine"})
    script = HostileServer(
        {"/models": [models(bundled_model_dir)], "/completions": [(429, {}), b"", (503, {}), ok]}
    )
    with serve(script) as url:
        backend = OpenAIServerBackend(url, "m", timeout_s=10, max_retries=3)
        [generation] = backend.generate(["hello"], GenerationConfig(max_new_tokens=2))
        assert generation.text == "fine"
        assert [path for path, _ in script.requests].count("/completions") == 4
        backend.close()


def test_retries_stop_at_the_limit(bundled_model_dir):
    script = HostileServer(
        {"/models": [models(bundled_model_dir)], "/completions": [(503, {"error": {"message": "busy"}})]}
    )
    with serve(script) as url:
        backend = OpenAIServerBackend(url, "m", timeout_s=10, max_retries=2)
        with pytest.raises(BackendError, match="HTTP 503: busy"):
            backend.generate(["hello"], GenerationConfig(max_new_tokens=2))
        assert [path for path, _ in script.requests].count("/completions") == 3
        backend.close()


def test_nan_and_infinite_log_probabilities_never_reach_json(bundled_model_dir):
    nan_top = {"A": float("nan"), "B": -math.inf, "C": -1.0}
    body = json.dumps({"choices": [logprob_choice(0, nan_top)]}).encode()  # json writes NaN / -Infinity
    script = HostileServer({"/models": [models(bundled_model_dir)], "/completions": [(200, body)]})
    with serve(script) as url:
        recommender = Recommender.load("openai", "m", base_url=url, timeout_s=5, fallback_top_k=5)
        ranked = recommender.rank(
            {"user": {}, "mode": "score", "candidates": [{"id": i, "title": t} for i, t in enumerate("xyz")]}
        )
        recommender.backend.close()
    output = json.dumps(ranked.model_dump(mode="json"), allow_nan=False)  # raises on NaN / Infinity
    assert ranked.item_ids == ["2", "1", "0"] and ranked.scores == [-1.0, None, None]
    assert ranked.diagnostics.nonfinite_scores == 2
    assert '"scores": [-1.0, null, null]' in output


def test_the_transformers_backend_keeps_its_deadline_too(tiny_llama_dir):
    from promptrec.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(tiny_llama_dir, timeout_s=0.001, batch_size=1)
    with pytest.raises(BackendError, match="deadline of 0.001 s"):
        backend.generate(["hello there"] * 3, GenerationConfig(max_new_tokens=50))
    with pytest.raises(BackendError, match="deadline of 0.001 s"):
        backend.next_token_logprobs(["hello there"] * 3, ["A", "B"])
    backend.timeout_s = 60
    assert len(backend.next_token_logprobs(["hello there"] * 3, ["A", "B"])) == 3
