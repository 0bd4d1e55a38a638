"""The vLLM server client: against a real server process (marked vllm) and against small scripted servers.

The real server is started once for the module on a free local port, with the bundled SmolLM2 and a LoRA
module, and is always stopped (its whole process group) when the module ends.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from promptrec import Recommender
from promptrec.backends.base import ChatMessage, Generation, GenerationConfig, StructuredOutput
from promptrec.backends.openai_backend import OpenAIServerBackend
from promptrec.backends.vllm_server import LocalVLLMServer, free_port
from promptrec.errors import BackendError
from promptrec.models import RankedList
from promptrec.prompting.contract import DEFAULT_LABELS
from tests.test_async_rank import run_without_worker_threads
from tests.test_concurrent_use import REQUESTS, same
from tests.test_vllm_backend import (
    CANDIDATE_IDS,
    LABELS,
    LOGPROB_TOLERANCE,
    candidate_array_schema,
    make_lora_adapter,
    ranking_prompt,
    transformers_label_logprobs,
)

SERVED_NAME = "smol"
LORA_NAME = "smol-lora"


def server_options(adapter: Path) -> list[str]:
    return [
        "--served-model-name", SERVED_NAME, "--max-model-len", "2048", "--dtype", "float32",
        "--enforce-eager", "--seed", "0", "--kv-cache-memory-bytes", "1G",
        "--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"{LORA_NAME}={adapter}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def served(bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, LoRA adapter folder) of a running server."""
    adapter = make_lora_adapter(bundled_model_dir, tmp_path_factory.mktemp("lora") / "adapter")
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with LocalVLLMServer(bundled_model_dir, server_options(adapter), log_path) as server:
        yield server.url, adapter


@pytest.fixture(scope="module")
def client(served: tuple[str, Path]) -> Iterator[OpenAIServerBackend]:
    backend = OpenAIServerBackend(served[0], SERVED_NAME)  # tokenizer: the model root the server reports
    yield backend
    backend.close()


@pytest.mark.vllm
def test_server_generates_in_order_with_exact_token_counts(client: OpenAIServerBackend) -> None:
    prompts = [
        client.format_chat([ChatMessage(role="user", content="Name a colour.")]),
        ranking_prompt(client, CANDIDATE_IDS),
    ]
    config = GenerationConfig(max_new_tokens=12, seed=3)

    first = client.generate(prompts, config)

    assert client.max_context_tokens == 2048
    assert [g.prompt_tokens for g in first] == [client.count_tokens(p) for p in prompts]
    assert all(g.text.strip() and 1 <= g.completion_tokens <= 12 for g in first)
    assert [g.text for g in client.generate(prompts, config)] == [g.text for g in first]


@pytest.mark.vllm
def test_server_json_schema_output_only_names_candidates(client: OpenAIServerBackend) -> None:
    structured = StructuredOutput(json_schema=candidate_array_schema(CANDIDATE_IDS))
    [generation] = client.generate(
        [ranking_prompt(client, CANDIDATE_IDS)], GenerationConfig(max_new_tokens=60, structured=structured)
    )

    answer = json.loads(generation.text)
    assert isinstance(answer, list) and 1 <= len(answer) <= 5
    assert set(answer) <= set(CANDIDATE_IDS)


@pytest.mark.vllm
def test_server_label_scores_match_transformers(client: OpenAIServerBackend, bundled_model_dir: Path) -> None:
    prompt = ranking_prompt(client, LABELS) + "The best candidate is "
    # All 26 default labels: more than the server's default --max-logprobs of 20 top-k entries.
    labels = list(DEFAULT_LABELS)

    scores = client.next_token_logprobs([prompt, prompt], labels)

    assert scores[0] == scores[1] and all(math.isfinite(value) for value in scores[0])
    reference = transformers_label_logprobs(bundled_model_dir, prompt, labels)
    assert scores[0] == pytest.approx(reference, abs=LOGPROB_TOLERANCE)


@pytest.mark.vllm
def test_server_lora_module_is_scored_with_its_adapter(
    served: tuple[str, Path], bundled_model_dir: Path
) -> None:
    url, adapter = served
    tuned = OpenAIServerBackend(url, LORA_NAME, tokenizer=bundled_model_dir)
    try:
        prompt = ranking_prompt(tuned, LABELS) + "The best candidate is "
        scores = tuned.next_token_logprobs([prompt], LABELS)
    finally:
        tuned.close()

    assert tuned.max_context_tokens == 2048, "a LoRA module takes its context length from its base model"
    reference = transformers_label_logprobs(bundled_model_dir, prompt, LABELS, adapter=adapter)
    assert scores[0] == pytest.approx(reference, abs=LOGPROB_TOLERANCE)


@pytest.mark.vllm
def test_server_refuses_multi_token_labels_and_unknown_models(client: OpenAIServerBackend) -> None:
    prompt = client.format_chat([ChatMessage(role="user", content="Pick one.")])
    with pytest.raises(BackendError, match="Recommendation42"):
        client.next_token_logprobs([prompt], ["A", "Recommendation42"])
    with pytest.raises(BackendError, match=f"serves .*{SERVED_NAME}"):
        OpenAIServerBackend(client.base_url, "no-such-model")


@pytest.mark.vllm
@pytest.mark.parametrize("mode", ["score", "pointwise"])
def test_concurrent_arank_calls_are_real_async_and_equal_sequential_calls(served, mode) -> None:
    # batch_size=2: a pointwise request's 5 prompts go out as 3 batches, concurrently on the async path.
    backend = OpenAIServerBackend(served[0], SERVED_NAME, batch_size=2)
    recommender = Recommender(backend)
    requests = [{**request, "mode": mode} for request in REQUESTS]
    try:
        sequential = [recommender.rank(request) for request in requests]

        async def concurrently() -> list[RankedList]:
            return list(await asyncio.gather(*(recommender.arank(request) for request in requests)))

        concurrent = run_without_worker_threads(concurrently())
    finally:
        recommender.close()

    assert backend.native_async
    assert len({tuple(ranked.item_ids) for ranked in sequential}) > 1, "requests differ, so answers differ"
    assert all(same(a, b) for a, b in zip(concurrent, sequential, strict=True))


def test_server_that_is_down_fails_fast_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()

    with pytest.raises(BackendError) as raised:
        OpenAIServerBackend(url, SERVED_NAME, max_retries=2)

    assert time.monotonic() - started < 5
    assert url in str(raised.value) and "vllm serve" in str(raised.value)


class ScriptedServer:
    """An OpenAI-compatible server that predates `logprob_token_ids`: it ignores the field, answers the top
    `logprobs` tokens (some by text, some as token_id:N), and can be told to answer errors first."""

    def __init__(self, tokenizer_dir: Path, c_token_id: int):
        self.requests: list[dict[str, Any]] = []
        self.error_statuses: list[int] = []
        self.models = {"data": [{"id": "old", "root": str(tokenizer_dir), "max_model_len": 512}]}
        self.ranked_tokens = {"A": -0.5, f"token_id:{c_token_id}": -1.0, "Z": -2.0}

    def completions(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append(body)
        if self.error_statuses:
            return self.error_statuses.pop(0), {"error": {"message": "scripted failure"}}
        top = dict(list(self.ranked_tokens.items())[: body.get("logprobs") or 0])
        return 200, {
            "choices": [
                {"index": index, "text": "ok", "logprobs": {"top_logprobs": [top]} if top else None}
                for index, _ in enumerate(body["prompt"])
            ]
        }


@pytest.fixture
def scripted(bundled_model_dir: Path) -> Iterator[tuple[ScriptedServer, str]]:
    from transformers import AutoTokenizer

    c_token_id = AutoTokenizer.from_pretrained(bundled_model_dir).encode("C", add_special_tokens=False)[0]
    script = ScriptedServer(bundled_model_dir, c_token_id)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(200, script.models)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers["Content-Length"])
            self._answer(*script.completions(json.loads(self.rfile.read(length))))

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield script, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("awaited", [False, True], ids=["sync", "async"])
def test_label_scores_fall_back_to_top_k_when_label_ids_are_ignored(
    scripted: tuple[ScriptedServer, str], awaited: bool
) -> None:
    script, url = scripted
    backend = OpenAIServerBackend(url, "old", fallback_top_k=5)  # base URL without /v1 is completed

    def score(prompts: list[str]) -> list[list[float]]:
        if awaited:
            return run_without_worker_threads(backend.anext_token_logprobs(prompts, ["A", "B", "C"]))
        return backend.next_token_logprobs(prompts, ["A", "B", "C"])

    first = score(["p1", "p2"])
    second = score(["p3"])

    assert first == [[-0.5, -math.inf, -1.0]] * 2 and second == [[-0.5, -math.inf, -1.0]]
    exact, fallback, remembered = script.requests
    assert exact["logprob_token_ids"] == backend.label_token_ids(["A", "B", "C"])
    assert "logprob_token_ids" not in fallback and fallback["logprobs"] == 5
    assert "logprob_token_ids" not in remembered, "the fallback is remembered for later calls"


@pytest.mark.parametrize("awaited", [False, True], ids=["sync", "async"])
def test_busy_server_is_retried_and_request_errors_are_reported(
    scripted: tuple[ScriptedServer, str], awaited: bool
) -> None:
    script, url = scripted
    backend = OpenAIServerBackend(url + "/v1", "old", max_retries=1)

    def generate(prompts: list[str]) -> list[Generation]:
        config = GenerationConfig(max_new_tokens=2)
        if awaited:
            return run_without_worker_threads(backend.agenerate(prompts, config))
        return backend.generate(prompts, config)

    script.error_statuses = [503]
    [generation] = generate(["hello"])
    assert generation.text == "ok" and len(script.requests) == 2

    script.error_statuses = [503, 503]
    with pytest.raises(BackendError, match="HTTP 503: scripted failure"):
        generate(["hello"])

    script.error_statuses = [400]
    with pytest.raises(BackendError, match=f"{url}/v1/completions answered HTTP 400"):
        generate(["hello"])
