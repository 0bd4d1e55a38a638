"""The one small interface every LLM backend implements.

Stages above the backend hand it finished prompt strings and get back text or label log-probabilities;
they never learn whether transformers, an in-process vLLM engine or a vLLM server answered.
Tokenizer-level work (chat template, token counts, label token ids) is shared here because every
backend loads the same Hugging Face tokenizer for its model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from promptrec.errors import BackendError


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


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

    def __init__(self, tokenizer: Any, max_context_tokens: int):
        self.tokenizer = tokenizer
        self.max_context_tokens = max_context_tokens

    # --- tokenizer-level helpers shared by all backends -------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def format_chat(self, messages: Sequence[ChatMessage], answer_prefix: str = "") -> str:
        """Apply the model's own chat template, open the assistant turn, and append `answer_prefix`.

        Templates with a reasoning preamble (e.g. `<think>`) are asked to skip it; if the generation
        prompt still opens a thinking block, it is closed empty so the answer comes first.
        """
        prompt = self.tokenizer.apply_chat_template(
            [message.model_dump() for message in messages],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=False,
        )
        if prompt.rstrip().endswith("<think>"):
            prompt = prompt.rstrip() + "\n\n</think>\n\n"
        return prompt + answer_prefix

    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        """Token id of each label, read from the tokenizer; each label must be one distinct token."""
        token_ids: list[int] = []
        for label in labels:
            encoded = self.tokenizer.encode(label, add_special_tokens=False)
            if len(encoded) != 1:
                raise BackendError(
                    f"label {label!r} is {len(encoded)} tokens for this tokenizer; score mode needs "
                    "single-token labels: choose another label set in the template contract"
                )
            token_ids.append(encoded[0])
        if len(set(token_ids)) != len(token_ids):
            raise BackendError(f"labels {list(labels)!r} do not map to distinct tokens; choose other labels")
        return token_ids

    # --- what each backend implements -------------------------------------------------------------
    @abstractmethod
    def generate(self, prompts: Sequence[str], config: GenerationConfig) -> list[Generation]:
        """Greedy completions, one per prompt, in order."""

    @abstractmethod
    def next_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        """For each prompt, the log-probability of each label's single token at the next position."""

    def reset_cache(self) -> None:  # noqa: B027 - optional hook
        """Forget cached prompt state (e.g. vLLM's prefix cache) so that timings start cold; default none."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines, servers or sessions; default does nothing."""
