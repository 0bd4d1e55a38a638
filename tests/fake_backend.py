"""A scripted backend for unit tests of templating, parsing and the pipeline (never a stand-in for a model).

Its tokenizer counts whitespace-separated words and its chat template joins messages with role tags,
so token budgets are easy to reason about in tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from promptrec.backends.base import Backend, Generation, GenerationConfig


class WordTokenizer:
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [hash(word) % 50_000 for word in text.split()]

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **_: object) -> str:
        text = "".join(f"<{m['role']}>\n{m['content']}\n</{m['role']}>\n" for m in messages)
        return text + ("<assistant>\n" if add_generation_prompt else "")


class ScriptedBackend(Backend):
    name = "scripted"

    def __init__(
        self,
        answer: Callable[[str], str] = lambda prompt: "[]",
        label_scores: Callable[[str, Sequence[str]], list[float]] | None = None,
        max_context_tokens: int = 4096,
    ):
        super().__init__(WordTokenizer(), max_context_tokens)
        self.answer = answer
        self.label_scores = label_scores or (lambda prompt, labels: [-float(i) for i in range(len(labels))])
        self.prompts_seen: list[str] = []
        self.configs_seen: list[GenerationConfig] = []

    def generate(self, prompts: Sequence[str], config: GenerationConfig) -> list[Generation]:
        self.prompts_seen.extend(prompts)
        self.configs_seen.append(config)
        return [
            Generation(text=self.answer(p), prompt_tokens=self.count_tokens(p), completion_tokens=3)
            for p in prompts
        ]

    def next_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        self.prompts_seen.extend(prompts)
        return [self.label_scores(prompt, labels) for prompt in prompts]


class AwaitingScriptedBackend(ScriptedBackend):
    """The scripted backend with coroutines of its own (`native_async`), as the vLLM server client has."""

    name = "scripted-async"
    native_async = True
    concurrent_calls = True

    async def agenerate(self, prompts: Sequence[str], config: GenerationConfig) -> list[Generation]:
        await asyncio.sleep(0)  # give way to the other tasks, as a network call would
        return self.generate(prompts, config)

    async def anext_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        await asyncio.sleep(0)
        return self.next_token_logprobs(prompts, labels)
