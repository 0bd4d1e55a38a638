"""Turn a rank request into finished prompt strings that fit the model's context.

The history is cut to the token budget (context - answer reserve - everything else in the prompt),
keeping the newest items. Titles and user text are treated as data (promptrec.prompting.sanitize): they
reach a template as JSON string literals, already normalised and stripped of control and format
characters, of the model's own special tokens and of our delimiters, so they cannot end a message, open
a new turn, close their quoted field or the delimited block they sit in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptrec.errors import RequestError
from promptrec.models import Item, RankMode, RankRequest
from promptrec.prompting.formatter import PromptFormatter
from promptrec.prompting.sanitize import TextSanitizer
from promptrec.prompting.templates import PromptTemplate

MAX_TITLE_CHARS = 200
MAX_REQUEST_CHARS = 1000


def _literal(sanitizer: TextSanitizer, text: str, max_chars: int, field: str, redact: bool = False) -> str:
    """`text` as an inert JSON literal; a RequestError naming `field` if nothing is left after cleaning."""
    literal = sanitizer.literal(text, max_chars, redact)
    if literal == '""':
        raise RequestError(
            f"{field}: {text[:60]!r} is empty once control characters, special tokens and delimiters "
            "are removed; give it readable text"
        )
    return literal


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


def _candidate_view(sanitizer: TextSanitizer, position: int, item: Item, label: str | None) -> dict[str, Any]:
    field = f"candidates[{position}] (id {item.id!r}).title"
    return {"label": label, "id": item.id, "title": _literal(sanitizer, item.title, MAX_TITLE_CHARS, field)}


def build_prompts(
    request: RankRequest,
    template: PromptTemplate,
    formatter: PromptFormatter,
    budget: PromptBudget,
    *,
    redact_contacts: bool = False,
) -> BuiltPrompts:
    """The request's prompts; `redact_contacts` removes e-mail addresses and phone numbers from the user's
    own words (request and preferences) first."""
    contract = template.contract
    sanitizer = TextSanitizer(formatter.special_tokens)
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
        _candidate_view(sanitizer, i, item, labels[i] if labels else None)
        for i, item in enumerate(candidates)
    ]

    titles = {item.id: item.title for item in request.history_items}
    history = [
        {
            "title": _literal(
                sanitizer,
                titles[event.item_id],
                MAX_TITLE_CHARS,
                f"history_items (id {event.item_id!r}).title",
            ),
            "rating": event.rating,
            "event": _literal(sanitizer, event.event, MAX_TITLE_CHARS, f"user.history[{i}].event")
            if event.event
            else None,
        }
        for i, event in enumerate(request.user.history)
    ]
    kept_by_count = history[-budget.max_history_items :] if budget.max_history_items else []
    user = request.user
    shared = {
        "user_request": _literal(sanitizer, user.request, MAX_REQUEST_CHARS, "user.request", redact_contacts)
        if user.request
        else None,
        "preferences": [
            _literal(sanitizer, text, MAX_REQUEST_CHARS, f"user.preferences[{i}]", redact_contacts)
            for i, text in enumerate(user.preferences)
        ],
        "candidates": candidate_views,
        "k": request.effective_k,
    }

    def render(n_history: int) -> list[str]:
        variables = {**shared, "history": kept_by_count[len(kept_by_count) - n_history :]}
        if contract.mode is RankMode.POINTWISE:
            return [
                formatter.format_chat(
                    template.render({**variables, "candidate": view}), contract.answer_prefix
                )
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
