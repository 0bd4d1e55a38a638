"""Opt-in explanations: one short reason per recommended item, checked so it cites only what is real.

The model writes one sentence per item (template `explain_reason`). A reason may quote only an item of the
user's history, words of the user's own request, or the recommended item itself. Everything else it
cites is removed and counted: quoted text that is none of those, and any other catalogue title named
without quotes (titles of at least two words, so ordinary words are not mistaken for titles). A reason
left with too little to say is replaced by one built from evidence alone: the request words the item's
text contains, or the history item it is closest to, so a reason never invents anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from promptrec.backends.base import GenerationConfig
from promptrec.catalog_index import CatalogIndex, search_text
from promptrec.models import Item, RankMode, RankRequest, UserContext
from promptrec.prompting.builder import build_prompts
from promptrec.retrievers.base import history_ids

if TYPE_CHECKING:
    from promptrec.recommender import Recommender

TEMPLATE = "explain_reason"
MAX_REASON_CHARS = 200
MIN_REASON_WORDS = 3
_QUOTED = re.compile(r"[\"“”]([^\"“”\n]{1,160})[\"“”]")
_TITLE_YEAR = re.compile(r"\s*\(\d{4}[^)]*\)\s*$")
_STOPWORDS = frozenset(
    ("a", "an", "the", "and", "or", "for", "of", "to", "in", "on", "with", "from", "me", "my", "i", "we")
    + ("you", "your", "something", "some", "any", "like", "want", "looking", "please", "give")
    + ("recommend", "film", "films", "movie", "movies", "game", "games")
)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _base_title(title: str) -> str:
    return normalise(_TITLE_YEAR.sub("", title))


@dataclass(frozen=True)
class CheckedReason:
    text: str
    removed: int  # invented citations taken out
    fallback: bool  # the model's sentence was replaced by an evidence-only reason


@dataclass(frozen=True)
class CitationRules:
    """What one user's reasons may cite."""

    history_titles: list[str]  # normalised base titles
    request_words: frozenset[str]
    other_titles: list[str]  # normalised base titles of catalogue items outside the history

    @classmethod
    def for_user(cls, index: CatalogIndex, user: UserContext) -> CitationRules:
        history = set(history_ids(user))
        request = " ".join([user.request or "", *user.preferences])
        others = []
        for item in index.items:
            if item.id in history:
                continue
            base = _base_title(item.title)
            if len(base.split()) >= 2 and len(base) >= 8:
                others.append(base)
        return cls(
            history_titles=[_base_title(index.catalog[item_id].title) for item_id in history],
            request_words=frozenset(normalise(request).split()),
            other_titles=others,
        )

    def allows_quote(self, quote: str, own_title: str) -> bool:
        quoted = normalise(quote)
        if not quoted:
            return False
        if any(quoted in title for title in [*self.history_titles, own_title] if len(quoted) >= 3):
            return True
        return all(word in self.request_words for word in quoted.split())


def check_reason(raw: str, item: Item, rules: CitationRules) -> tuple[str, int]:
    """The reason with invented citations removed, and how many were removed."""
    text = raw.strip().splitlines()[0] if raw.strip() else ""
    own = _base_title(item.title)
    removed = 0

    def drop_quote(match: re.Match[str]) -> str:
        nonlocal removed
        if rules.allows_quote(match.group(1), own):
            return match.group(0)
        removed += 1
        return ""

    text = _QUOTED.sub(drop_quote, text)
    allowed = set(rules.history_titles) | {own}
    unquoted = normalise(_QUOTED.sub(" ", text))
    for title in rules.other_titles:
        if title not in allowed and f" {title} " in f" {unquoted} ":
            pattern = r"[\W_]+".join(re.escape(word) for word in title.split())
            text, count = re.subn(rf"(?i)(?<!\w){pattern}(?!\w)", "", text)
            removed += 1
            if not count:  # named, but spelt so it cannot be cut out cleanly: drop the whole sentence
                return "", removed
            unquoted = normalise(_QUOTED.sub(" ", text))
    text = " ".join(text.split())
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1].rstrip() + "…"
    return text, removed


def evidence_reason(item: Item, index: CatalogIndex, user: UserContext, rules: CitationRules) -> str:
    """A reason stated from evidence only: request words in the item's text, else the closest history item."""
    item_words = set(normalise(search_text(item)).split())
    shared = sorted(word for word in rules.request_words & item_words if word not in _STOPWORDS)
    if shared:
        return "Matches your request: " + ", ".join(f'"{word}"' for word in shared) + "."
    history = list(dict.fromkeys(history_ids(user)))
    if history:
        similarity = index.vectors(history) @ index.vectors([item.id])[0]
        closest = index.catalog[history[int(np.argmax(similarity))]].title
        return f'Close to "{closest}" from your history.'
    return "A popular choice in this catalogue."


def explain(
    recommender: Recommender,
    index: CatalogIndex,
    user: UserContext,
    items: Sequence[Item],
    history_items: Sequence[Item],
) -> list[CheckedReason]:
    """One checked reason per item, in order."""
    template = recommender.templates.get(TEMPLATE, RankMode.GENERATE)
    prompts = [
        build_prompts(
            RankRequest(user=user, candidates=[item], history_items=list(history_items), template=TEMPLATE),
            template,
            recommender.backend.formatter,
            recommender.budget,
        ).texts[0]
        for item in items
    ]
    config = GenerationConfig(max_new_tokens=template.contract.max_new_tokens, seed=recommender.seed)
    with recommender.backend_lock:
        generations = recommender.backend.generate(prompts, config)
    rules = CitationRules.for_user(index, user)
    reasons = []
    for item, generation in zip(items, generations, strict=True):
        text, removed = check_reason(generation.text, item, rules)
        if len(re.findall(r"[A-Za-z]+", text)) < MIN_REASON_WORDS:
            reasons.append(CheckedReason(evidence_reason(item, index, user, rules), removed, True))
        else:
            reasons.append(CheckedReason(text, removed, False))
    return reasons
