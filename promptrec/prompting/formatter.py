"""Prompt formatting without an engine: the model's chat template, token counts and label token ids.

Everything here needs only the model's tokenizer, so prompts can be built, measured and turned into
training data on a machine that never loads the weights. Every backend holds one `PromptFormatter`
for its model; training uses the same class, so a prompt trained on is exactly a prompt served.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from promptrec.errors import BackendError


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class PromptFormatter:
    """A model's tokenizer-level view of prompts.

    Args:
        tokenizer: a Hugging Face tokenizer (anything with `encode` and `apply_chat_template`).
        max_context_tokens: prompt + new tokens limit of the model.
    """

    def __init__(self, tokenizer: Any, max_context_tokens: int):
        self.tokenizer = tokenizer
        self.max_context_tokens = max_context_tokens

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, max_context_tokens: int | None = None) -> PromptFormatter:
        """The formatter of a local Hugging Face model folder, loading only its tokenizer and config."""
        from transformers import AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        folder = Path(model_dir).expanduser()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"model folder {str(folder)!r} has no readable tokenizer and config.json ({exc}); "
                "pass a local Hugging Face model folder"
            ) from exc
        context = max_context_tokens or config.get("max_position_embeddings")
        if not context:
            raise BackendError(f"model {str(folder)!r} declares no max_position_embeddings; pass one")
        return cls(tokenizer, int(context))

    @functools.cached_property
    def special_tokens(self) -> frozenset[str]:
        """Every string this tokenizer turns into a special or added token (chat markers, `<file_sep>`...).

        Read from the tokenizer itself, so data can be stripped of exactly the tokens that would be
        tokenised as structure for this model.
        """
        special = getattr(self.tokenizer, "all_special_tokens", None) or []
        added = getattr(self.tokenizer, "get_added_vocab", dict)()
        return frozenset([*special, *added])

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
