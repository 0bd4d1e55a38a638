"""Turn a rank request into finished prompt strings that fit the model's context.

The prompt budget is the context minus the answer reserve. The fixed parts (instructions, candidates)
come first; demonstrations may then use the contract's `demo_share` of what is left, and the history gets
the rest, keeping the newest items. Item text, when a template opts in, is shortened before the
history is cut to nothing.

Titles and user text are treated as data (promptrec.prompting.sanitize): they reach a template as JSON
string literals, already normalised and stripped of control and format characters, of the model's own
special tokens and of our delimiters, so they cannot end a message, open a new turn, close their quoted
field or the delimited block they sit in. Item text (titles, in the history too, descriptions, attributes
and the titles hints quote) also loses segments that address the recommender, the ranking or the user
(sanitize step 6); the customer's own request and preferences do not. `BuiltPrompts.item_text_filtered`
counts the request's item fields that lost such text, and the prompt shows what was kept.

Demonstrations are rendered by the same template as the request, each as a user turn followed by its
gold answer (promptrec.prompting.gold) as the assistant turn, before the request's own turn: the text
shared by every candidate prompt (system, demonstrations, history) stays first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptrec.errors import RequestError
from promptrec.models import Demonstration, Item, RankMode, RankRequest, UserContext
from promptrec.prompting.contract import OutputContract, OutputFormat
from promptrec.prompting.formatter import ChatMessage, PromptFormatter
from promptrec.prompting.gold import gold_answer
from promptrec.prompting.recency import history_ages
from promptrec.prompting.sanitize import TextSanitizer
from promptrec.prompting.templates import PromptTemplate

MAX_TITLE_CHARS = 200
MAX_REQUEST_CHARS = 1000
MAX_HINT_CHARS = 300  # a hint quotes at most one title
# A demonstration shows only its user's newest items: it teaches the answer format and the task, and a
# short history leaves the budget to the request's own history.
DEMO_HISTORY_ITEMS = 10
_QUOTED_TITLE = re.compile(r"«([^«»]*)»")  # a title a hint quotes (promptrec.strategies.hints)


def _literal(field: str, text: str, cleaned: str, item: bool = False) -> str:
    """`cleaned` as an inert JSON literal; a RequestError naming `field` if nothing is left of `text`."""
    if not cleaned:
        removed = "special tokens, delimiters" + (" and text addressed to the recommender" if item else "")
        raise RequestError(
            f"{field}: {text[:60]!r} is empty once control characters, {removed} are removed; "
            "give it readable text"
        )
    return json.dumps(cleaned, ensure_ascii=False)


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
    # Item fields (titles, text, attributes, hints) of the request that lost text addressed to the
    # recommender, the ranking or the user (sanitize step 6).
    item_text_filtered: int = 0


def _labels(contract: OutputContract, candidates: Sequence[Item], template_name: str) -> list[str]:
    if contract.identifiers != "labels":
        return []
    if len(candidates) > len(contract.labels):
        raise RequestError(
            f"candidates: {len(candidates)} candidates but template {template_name!r} has only "
            f"{len(contract.labels)} labels; pass fewer candidates or a template with identifiers = 'ids'"
        )
    return contract.labels[: len(candidates)]


def _answer_words(contract: OutputContract, labels: list[str]) -> list[str]:
    """What the model answers with in this prompt; data may not name them as answers (sanitize step 5).
    Catalogue ids are left alone: an id such as `1995` would take the year out of `Heat (1995)`."""
    if contract.format is OutputFormat.YES_NO:
        return [contract.yes_label, contract.no_label]
    return labels


class _Scene:
    """The template variables of one user and candidate set (the request's, or a demonstration's), with
    every piece of untrusted text already made inert; `where` names the record in error messages."""

    def __init__(
        self,
        sanitizer: TextSanitizer,
        contract: OutputContract,
        user: UserContext,
        history_items: Sequence[Item],
        candidates: Sequence[Item],
        *,
        labels: list[str],
        k: int,
        max_history: int,
        hints: Mapping[str, list[str]] | None = None,
        redact: bool = False,
        where: str = "",
    ):
        self.sanitizer = sanitizer
        self.contract = contract
        self.labels = labels
        self.candidates = candidates
        self.hints = hints or {}
        self.where = where
        self.filtered: set[str] = set()  # item fields step 6 changed
        titles = {item.id: item.title for item in history_items}
        first = max(len(user.history) - max_history, 0) if max_history else len(user.history)
        self.history = [
            {
                "title": self.item_literal(
                    titles[event.item_id], MAX_TITLE_CHARS, f"history_items (id {event.item_id!r}).title"
                ),
                "rating": event.rating,
                "event": self.literal(event.event, MAX_TITLE_CHARS, f"user.history[{i}].event")
                if event.event
                else None,
                "ago": ago,  # shown only by templates that set show_recency
            }
            for i, (event, ago) in enumerate(
                zip(user.history[first:], history_ages(user.history)[first:], strict=True), start=first
            )
        ]
        self.history_total = len(user.history)
        self.shared = {
            "user_request": self.literal(user.request, MAX_REQUEST_CHARS, "user.request", redact)
            if user.request
            else None,
            "preferences": [
                self.literal(text, MAX_REQUEST_CHARS, f"user.preferences[{i}]", redact)
                for i, text in enumerate(user.preferences)
            ],
            "k": k,
        }

    def literal(self, text: str, max_chars: int, field: str, redact: bool = False) -> str:
        """The customer's own words (or ours): steps 1-5 only."""
        return _literal(self.where + field, text, self.sanitizer.clean(text, max_chars, redact))

    def item_text(self, text: str, max_chars: int, field: str) -> str:
        """Seller text, cleaned with step 6; a field that lost text to it is counted."""
        cleaned, removed = self.sanitizer.clean_item(text, max_chars)
        if removed:
            self.filtered.add(self.where + field)
        return cleaned

    def item_literal(self, text: str, max_chars: int, field: str) -> str:
        return _literal(self.where + field, text, self.item_text(text, max_chars, field), item=True)

    def hint_literal(self, hint: str, field: str) -> str:
        """A hint is our text, but the title it quotes is the seller's."""
        quoted = _QUOTED_TITLE.sub(lambda match: f"«{self.item_text(match[1], MAX_HINT_CHARS, field)}»", hint)
        return self.literal(quoted, MAX_HINT_CHARS, field)

    def candidate_views(self, text_chars: int) -> list[dict[str, Any]]:
        views = []
        for position, item in enumerate(self.candidates):
            field = f"candidates[{position}] (id {item.id!r})"
            view: dict[str, Any] = {
                "label": self.labels[position] if self.labels else None,
                "id": item.id,
                "title": self.item_literal(item.title, MAX_TITLE_CHARS, f"{field}.title"),
                # Empty unless the request carries hints (promptrec.strategies.hints).
                "hints": [
                    self.hint_literal(hint, f"hints[{item.id!r}][{number}]")
                    for number, hint in enumerate(self.hints.get(item.id, []))
                ],
            }
            if self.contract.item_text_chars:
                text = ""
                if item.text and text_chars:
                    text = self.item_text(item.text, text_chars, f"{field}.text")
                view["text"] = json.dumps(text, ensure_ascii=False)
            if self.contract.item_attributes:
                attributes = {
                    self.item_text(key, MAX_TITLE_CHARS, f"{field}.attributes[{key!r}]"): json.dumps(
                        self.item_text(value, MAX_TITLE_CHARS, f"{field}.attributes[{key!r}]"),
                        ensure_ascii=False,
                    )
                    for key, value in item.attributes.items()
                }
                view["attributes"] = {key: value for key, value in attributes.items() if key}
            views.append(view)
        return views

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


def _demo_turns(
    demo: Demonstration, number: int, template: PromptTemplate, sanitizer: TextSanitizer, text_chars: int
) -> list[ChatMessage]:
    """A demonstration as a user turn and its gold assistant answer (the first rendered prompt's)."""
    contract = template.contract
    labels = _labels(contract, demo.candidates, template.name)
    scene = _Scene(
        sanitizer,
        contract,
        demo.user,
        demo.history_items,
        demo.candidates,
        labels=labels,
        k=len(demo.candidates),
        max_history=DEMO_HISTORY_ITEMS,
        where=f"demos[{number}].",
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
    labels = _labels(contract, request.candidates, template.name)
    sanitizer = TextSanitizer(formatter.special_tokens, answer_words=_answer_words(contract, labels))
    scene = _Scene(
        sanitizer,
        contract,
        request.user,
        request.history_items,
        request.candidates,
        labels=labels,
        k=request.effective_k,
        max_history=budget.max_history_items,
        hints=request.hints,
        redact=redact_contacts,
    )

    def render(n_history: int, n_demos: int, text_chars: int) -> list[str]:
        shown = [
            turn
            for number, demo in enumerate(request.demos[:n_demos])
            for turn in _demo_turns(demo, number, template, sanitizer, text_chars)
        ]
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
        item_text_filtered=len(scene.filtered),
    )
