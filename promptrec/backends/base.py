"""The one small interface every LLM backend implements.

Stages above the backend hand it finished prompt strings and get back text or label log-probabilities;
they never learn whether transformers, an in-process vLLM engine or a vLLM server answered.
Tokenizer-level work (chat template, token counts, label token ids) is a `PromptFormatter`
(promptrec.prompting.formatter), which needs no engine; every backend holds one for its model.

Both calls also come as coroutines (`agenerate`, `anext_token_logprobs`) for asyncio callers. By default
they run the blocking call in a worker thread; a backend whose calls are network I/O (the vLLM server
client) awaits them for real and says so with `native_async = True`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptrec.prompting.formatter import ChatMessage, PromptFormatter


class StructuredOutput(BaseModel):
    """A constraint on generated text; exactly one of the fields is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    json_schema: dict[str, Any] | None = None
    regex: str | None = None


class GenerationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(default=160, ge=1)
    seed: int = 0
    structured: StructuredOutput | None = None


class Generation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    prompt_tokens: int
    completion_tokens: int


class Backend(ABC):
    """Greedy, seeded, batched access to one causal LM."""

    name: str = "backend"
    # True when calls from several threads at once are safe and useful (a server client); otherwise a
    # Recommender sends one call at a time.
    concurrent_calls: bool = False
    # True when `agenerate` / `anext_token_logprobs` await I/O instead of blocking a worker thread.
    native_async: bool = False

    def __init__(self, tokenizer: Any, max_context_tokens: int):
        self.formatter = PromptFormatter(tokenizer, max_context_tokens)

    # --- tokenizer-level work lives in the formatter; these names keep backend callers short -------------
    @property
    def tokenizer(self) -> Any:
        return self.formatter.tokenizer

    @property
    def max_context_tokens(self) -> int:
        return self.formatter.max_context_tokens

    @property
    def special_tokens(self) -> frozenset[str]:
        return self.formatter.special_tokens

    def count_tokens(self, text: str) -> int:
        return self.formatter.count_tokens(text)

    def format_chat(self, messages: Sequence[ChatMessage], answer_prefix: str = "") -> str:
        return self.formatter.format_chat(messages, answer_prefix)

    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        return self.formatter.label_token_ids(labels)

    # --- what each backend implements -------------------------------------------------------------
    @abstractmethod
    def generate(self, prompts: Sequence[str], config: GenerationConfig) -> list[Generation]:
        """Greedy completions, one per prompt, in order."""

    @abstractmethod
    def next_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        """For each prompt, the log-probability of each label's single token at the next position."""

    async def agenerate(self, prompts: Sequence[str], config: GenerationConfig) -> list[Generation]:
        """`generate` for asyncio callers; by default in a worker thread, so the event loop never blocks."""
        return await asyncio.to_thread(self.generate, prompts, config)

    async def anext_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        """`next_token_logprobs` for asyncio callers; by default in a worker thread."""
        return await asyncio.to_thread(self.next_token_logprobs, prompts, labels)

    def reset_cache(self) -> None:  # noqa: B027 - optional hook
        """Forget cached prompt state (e.g. vLLM's prefix cache) so that timings start cold; default none."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines, servers or sessions; default does nothing."""
