"""Turn a rank request into finished prompt strings that fit the model's context.

The history is cut to the token budget (context - answer reserve - everything else in the prompt),
keeping the newest items. Titles and user text are treated as data: control characters, chat-template
special tokens and our own delimiters are removed before they reach a template, so they cannot end a
message, open a new turn, or close the delimited block they sit in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from promptrec.errors import RequestError
from promptrec.models import Item, RankMode, RankRequest
from promptrec.prompting.formatter import PromptFormatter
from promptrec.prompting.recency import history_ages
from promptrec.prompting.templates import PromptTemplate

_SPECIAL_TOKEN_SHAPES = re.compile(
    r"<\|[^|<>]{0,40}\|>|</?s>|\[/?INST\]|</?think>|</?(?:user_request|history|candidates)>", re.IGNORECASE
)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")
MAX_TITLE_CHARS = 200
MAX_REQUEST_CHARS = 1000


def as_data(text: str, max_chars: int) -> str:
    """Flatten free text into one inert line for a prompt."""
    text = _SPECIAL_TOKEN_SHAPES.sub(" ", text)
    text = _CONTROL_CHARACTERS.sub(" ", text)
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


@dataclass(frozen=True)
class PromptBudget:
    """Caps below the model's own context; on CPU a shorter history is much faster."""

    max_history_items: int = 50
    max_prompt_tokens: int | None = None


@dataclass(frozen=True)
class BuiltPrompts:
    texts: list[str]  # one prompt (listwise) or one per candidate (pointwise), shared text first
    labels: list[str]  # labels[i] names request.candidates[i] (empty when candidates go by id)
    prompt_tokens: int
    history_used: int
    history_dropped: int


def _candidate_view(item: Item, label: str | None) -> dict[str, Any]:
    return {"label": label, "id": item.id, "title": as_data(item.title, MAX_TITLE_CHARS)}


def build_prompts(
    request: RankRequest, template: PromptTemplate, formatter: PromptFormatter, budget: PromptBudget
) -> BuiltPrompts:
    contract = template.contract
    candidates = request.candidates
    labels: list[str] = []
    if contract.identifiers == "labels":
        if len(candidates) > len(contract.labels):
            raise RequestError(
                f"candidates: {len(candidates)} candidates but template {template.name!r} has only "
                f"{len(contract.labels)} labels; pass fewer candidates or a template with identifiers = 'ids'"
            )
        labels = contract.labels[: len(candidates)]
    candidate_views = [
        _candidate_view(item, labels[i] if labels else None) for i, item in enumerate(candidates)
    ]

    titles = {item.id: item for item in request.history_items}
    history = [
        {
            "title": as_data(titles[event.item_id].title, MAX_TITLE_CHARS),
            "rating": event.rating,
            "event": event.event,
            "ago": ago,  # shown only by templates that set show_recency
        }
        for event, ago in zip(request.user.history, history_ages(request.user.history), strict=True)
    ]
    kept_by_count = history[-budget.max_history_items :] if budget.max_history_items else []
    user = request.user
    shared = {
        "user_request": as_data(user.request, MAX_REQUEST_CHARS) if user.request else None,
        "preferences": [as_data(text, MAX_REQUEST_CHARS) for text in user.preferences],
        "candidates": candidate_views,
        "k": request.effective_k,
    }

    def render(n_history: int) -> list[str]:
        variables = {**shared, "history": kept_by_count[len(kept_by_count) - n_history :]}
        if contract.mode is RankMode.POINTWISE:
            return [
                formatter.format_chat(template.render({**variables, "candidate": view}), contract.answer_prefix)
                for view in candidate_views
            ]
        return [formatter.format_chat(template.render(variables), contract.answer_prefix)]

    def longest(texts: list[str]) -> int:
        return max(formatter.count_tokens(text) for text in texts)

    limit = formatter.max_context_tokens - contract.max_new_tokens
    if budget.max_prompt_tokens is not None:
        limit = min(limit, budget.max_prompt_tokens)
    if longest(render(0)) > limit:
        raise RequestError(
            f"candidates: the prompt without any history needs {longest(render(0))} tokens but the budget is "
            f"{limit}; pass fewer candidates, or raise max_prompt_tokens / use a model with a longer context"
        )
    # Prompt length grows with each history item, so the largest n that fits is found by bisection.
    low, high = 0, len(kept_by_count)
    while low < high:
        middle = (low + high + 1) // 2
        if longest(render(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    texts = render(low)
    return BuiltPrompts(
        texts=texts,
        labels=labels,
        prompt_tokens=sum(formatter.count_tokens(text) for text in texts),
        history_used=low,
        history_dropped=len(history) - low,
    )
