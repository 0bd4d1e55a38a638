"""Tokenizer-level helpers every backend shares: chat formatting with reasoning templates."""

from __future__ import annotations

from typing import Any

from promptrec.backends.base import Backend, ChatMessage


class ReasoningTemplateTokenizer:
    """Mimics a chat template that opens a `<think>` block at the start of the assistant turn."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def apply_chat_template(self, messages, **options) -> str:
        self.calls.append(options)
        turns = "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages)
        return turns + "<|assistant|>\n<think>\n"


class TemplateOnlyBackend(Backend):
    def generate(self, prompts, config):
        raise NotImplementedError

    def next_token_logprobs(self, prompts, labels):
        raise NotImplementedError


def test_a_reasoning_preamble_is_closed_so_the_answer_comes_first() -> None:
    tokenizer = ReasoningTemplateTokenizer()
    backend = TemplateOnlyBackend(tokenizer, max_context_tokens=1024)

    prompt = backend.format_chat([ChatMessage(role="user", content="Rank these.")], answer_prefix='["')

    assert tokenizer.calls[0]["enable_thinking"] is False and tokenizer.calls[0]["add_generation_prompt"]
    assert prompt.endswith('<think>\n\n</think>\n\n["')
    assert prompt.count("<think>") == 1
