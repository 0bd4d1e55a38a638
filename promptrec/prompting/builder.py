"""Turn a rank request into finished prompt strings that fit the model's context.

The prompt budget is the context minus the answer reserve. The fixed parts (instructions, candidates)
come first; demonstrations may then use the contract's `demo_share` of what is left, and the history gets
the rest, keeping the newest items. Item text, when a template opts in, is shortened before the
history is cut to nothing.

Titles and user text are treated as data: control characters, chat-template special tokens and our own
delimiters are removed before they reach a template, so they cannot end a message, open a new turn, or
close the delimited block they sit in.

Demonstrations are rendered by the same template as the request, each as a user turn followed by its
gold answer (promptrec.prompting.gold) as the assistant turn, before the request's own turn: the text
shared by every candidate prompt (system, demonstrations, history) stays first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptrec.errors import RequestError
from promptrec.models import Demonstration, Interaction, Item, RankMode, RankRequest, UserContext
from promptrec.prompting.contract import OutputContract
from promptrec.prompting.formatter import ChatMessage, PromptFormatter
from promptrec.prompting.gold import gold_answer
from promptrec.prompting.templates import PromptTemplate

_SPECIAL_TOKEN_SHAPES = re.compile(
    r"<\|[^|<>]{0,40}\|>|</?s>|\[/?INST\]|</?think>|</?(?:user_request|history|candidates)>", re.IGNORECASE
)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")
MAX_TITLE_CHARS = 200
MAX_REQUEST_CHARS = 1000
# A demonstration shows only its user's newest items: it teaches the answer format and the task, and a
# short history leaves the budget to the request's own history.
DEMO_HISTORY_ITEMS = 10
MAX_HINT_CHARS = 300  # a hint quotes at most one title


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
    demos_used: int = 0


def _labels(contract: OutputContract, candidates: Sequence[Item], template_name: str) -> list[str]:
    if contract.identifiers != "labels":
        return []
    if len(candidates) > len(contract.labels):
        raise RequestError(
            f"candidates: {len(candidates)} candidates but template {template_name!r} has only "
            f"{len(contract.labels)} labels; pass fewer candidates or a template with identifiers = 'ids'"
        )
    return contract.labels[: len(candidates)]


def _item_view(item: Item, contract: OutputContract, text_chars: int) -> dict[str, Any]:
    view: dict[str, Any] = {"id": item.id, "title": as_data(item.title, MAX_TITLE_CHARS)}
    if contract.item_text_chars:
        view["text"] = as_data(item.text, text_chars) if item.text and text_chars else ""
    if contract.item_attributes:
        view["attributes"] = {
            as_data(key, MAX_TITLE_CHARS): as_data(value, MAX_TITLE_CHARS)
            for key, value in item.attributes.items()
        }
    return view


class _Scene:
    """The template variables of one user and candidate set (the request's, or a demonstration's)."""

    def __init__(
        self,
        user: UserContext,
        history_items: Sequence[Item],
        candidates: Sequence[Item],
        labels: list[str],
        k: int,
        contract: OutputContract,
        max_history: int,
        hints: Mapping[str, list[str]] | None = None,
    ):
        self.contract = contract
        self.hints = hints or {}
        self.labels = labels
        self.candidates = candidates
        items = {item.id: item for item in history_items}
        events: list[Interaction] = user.history[-max_history:] if max_history else []
        self.history = [
            {
                "title": as_data(items[event.item_id].title, MAX_TITLE_CHARS),
                "rating": event.rating,
                "event": event.event,
            }
            for event in events
        ]
        self.history_total = len(user.history)
        self.shared = {
            "user_request": as_data(user.request, MAX_REQUEST_CHARS) if user.request else None,
            "preferences": [as_data(text, MAX_REQUEST_CHARS) for text in user.preferences],
            "k": k,
        }

    def candidate_views(self, text_chars: int) -> list[dict[str, Any]]:
        return [
            {
                **_item_view(item, self.contract, text_chars),
                "label": self.labels[i] if self.labels else None,
                # Empty unless the request carries hints (promptrec.strategies.hints).
                "hints": [as_data(hint, MAX_HINT_CHARS) for hint in self.hints.get(item.id, [])],
            }
            for i, item in enumerate(self.candidates)
        ]

    def user_turns(
        self, template: PromptTemplate, n_history: int, text_chars: int
    ) -> list[list[ChatMessage]]:
        """Rendered messages: one list (listwise) or one per candidate (pointwise)."""
        views = self.candidate_views(text_chars)
        variables = {
            **self.shared,
            "candidates": views,
            "history": self.history[len(self.history) - n_history :],
        }
        if self.contract.mode is RankMode.POINTWISE:
            return [template.render({**variables, "candidate": view}) for view in views]
        return [template.render(variables)]


def _demo_turns(demo: Demonstration, template: PromptTemplate, text_chars: int) -> list[ChatMessage]:
    """A demonstration as a user turn and its gold assistant answer (the first rendered prompt's)."""
    contract = template.contract
    labels = _labels(contract, demo.candidates, template.name)
    scene = _Scene(
        demo.user,
        demo.history_items,
        demo.candidates,
        labels,
        len(demo.candidates),
        contract,
        DEMO_HISTORY_ITEMS,
    )
    rendered = scene.user_turns(template, len(scene.history), text_chars)[0]
    if contract.mode is RankMode.POINTWISE:
        answer = gold_answer(contract, liked=demo.chosen_id == demo.candidates[0].id)
    else:
        names = labels or [item.id for item in demo.candidates]
        ids = [item.id for item in demo.candidates]
        chosen = ids.index(demo.chosen_id) if demo.chosen_id in ids else 0
        answer = gold_answer(contract, best_first=[names[chosen], *names[:chosen], *names[chosen + 1 :]])
    user_turn = [message for message in rendered if message.role == "user"]
    return [*user_turn, ChatMessage(role="assistant", content=contract.answer_prefix + answer)]
def build_prompts(
    request: RankRequest, template: PromptTemplate, formatter: PromptFormatter, budget: PromptBudget
) -> BuiltPrompts:
    contract = template.contract
    labels = _labels(contract, request.candidates, template.name)
    scene = _Scene(
        request.user,
        request.history_items,
        request.candidates,
        labels,
        request.effective_k,
        contract,
        budget.max_history_items,
        request.hints,
    )

    def render(n_history: int, n_demos: int, text_chars: int) -> list[str]:
        shown = [turn for demo in request.demos[:n_demos] for turn in _demo_turns(demo, template, text_chars)]
        texts = []
        for messages in scene.user_turns(template, n_history, text_chars):
            system, rest = messages[:1], messages[1:]
            if system and system[0].role != "system":
                system, rest = [], messages
            texts.append(formatter.format_chat([*system, *shown, *rest], contract.answer_prefix))
        return texts

    def longest(texts: list[str]) -> int:
        return max(formatter.count_tokens(text) for text in texts)

    limit = formatter.max_context_tokens - contract.max_new_tokens
    if budget.max_prompt_tokens is not None:
        limit = min(limit, budget.max_prompt_tokens)
    text_chars = contract.item_text_chars
    while longest(render(0, 0, text_chars)) > limit and text_chars > 0:
        text_chars //= 2
    fixed = longest(render(0, 0, text_chars))
    if fixed > limit:
        raise RequestError(
            f"candidates: the prompt without any history needs {fixed} tokens but the budget is "
            f"{limit}; pass fewer candidates, or raise max_prompt_tokens / use a model with a longer context"
        )
    demo_limit = fixed + contract.demo_share * (limit - fixed)
    n_demos = 0
    while n_demos < len(request.demos) and longest(render(0, n_demos + 1, text_chars)) <= demo_limit:
        n_demos += 1
    # Prompt length grows with each history item, so the largest n that fits is found by bisection.
    low, high = 0, len(scene.history)
    while low < high:
        middle = (low + high + 1) // 2
        if longest(render(middle, n_demos, text_chars)) <= limit:
            low = middle
        else:
            high = middle - 1
    texts = render(low, n_demos, text_chars)
    return BuiltPrompts(
        texts=texts,
        labels=labels,
        prompt_tokens=sum(formatter.count_tokens(text) for text in texts),
        history_used=low,
        history_dropped=scene.history_total - low,
        demos_used=n_demos,
    )
