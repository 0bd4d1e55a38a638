"""Collaborative hints: per-candidate facts from training interactions, added to requests for the LLM.

Two facts, both read from retrievers fitted on training histories only (never a target):
  popularity  -- the candidate's training interaction count against the catalogue's: "many users chose
                 this" (top 10% of items by count), "few users chose this" (bottom half, unseen items
                 included), nothing in between;
  co-choice   -- "often chosen together with «title»": the history item with the highest item-kNN
                 similarity to the candidate, when that cosine is at least MIN_SIMILARITY.
`HintsRanker` wraps any ranker; the prompt builder sanitises hints like titles and only templates that
use them (listwise_score_hints, pointwise_yesno_hints) show them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from promptrec.models import Item, RankedList, RankMode, RankRequest
from promptrec.ranker import Ranker, ResultCallback
from promptrec.retrievers import ItemKNNRetriever, PopularityRetriever
from promptrec.retrievers.base import history_ids
from promptrec.validation import parse_request

HINT_TEMPLATES = {RankMode.SCORE: "listwise_score_hints", RankMode.POINTWISE: "pointwise_yesno_hints"}
MANY_SHARE = 0.10  # the most-chosen tenth of the catalogue is "many"
FEW_SHARE = 0.50  # the least-chosen half is "few"
MIN_SIMILARITY = 0.05  # item-kNN cosine below which two items are not "often chosen together"
MAX_QUOTED_TITLE = 80


class CollaborativeHints:
    """Hints for a request's candidates from fitted popularity and item-kNN retrievers."""

    def __init__(
        self, popularity: PopularityRetriever, itemknn: ItemKNNRetriever, catalogue: Mapping[str, Item]
    ):
        self.popularity = popularity
        self.itemknn = itemknn
        self.titles = {item_id: item.title for item_id, item in catalogue.items()}
        counts = np.sort([popularity.counts.get(item_id, 0) for item_id in catalogue])
        # Cuts by rank in the catalogue; "many" needs a count above the "few" cut, so ties at 0 stay few.
        self.few_at_most = int(counts[max(int(len(counts) * FEW_SHARE) - 1, 0)])
        self.many_at_least = max(int(counts[int(len(counts) * (1 - MANY_SHARE))]), self.few_at_most + 1)

    def for_request(self, request: RankRequest) -> dict[str, list[str]]:
        index = self.itemknn.index
        history = [item_id for item_id in dict.fromkeys(history_ids(request.user)) if item_id in index]
        known = [item.id for item in request.candidates if item.id in index]
        similarity = (
            self.itemknn.similarity[[index[i] for i in history]][:, [index[i] for i in known]].toarray()
            if history and known
            else np.zeros((0, len(known)))
        )
        column_of = {item_id: column for column, item_id in enumerate(known)}
        hints: dict[str, list[str]] = {}
        for item in request.candidates:
            facts = []
            count = self.popularity.counts.get(item.id, 0)
            if count >= self.many_at_least:
                facts.append("many users chose this")
            elif count <= self.few_at_most:
                facts.append("few users chose this")
            if similarity.size and item.id in column_of:
                column = similarity[:, column_of[item.id]]
                best = int(column.argmax())
                if column[best] >= MIN_SIMILARITY:
                    title = self.titles.get(history[best], history[best])[:MAX_QUOTED_TITLE]
                    facts.append(f"often chosen together with «{title}»")
            if facts:
                hints[item.id] = facts
        return hints


class HintsRanker:
    """Adds collaborative hints to every request, and the mode's hints template where none is named."""

    def __init__(self, inner: Ranker, hints: CollaborativeHints, name: str = "hints"):
        self.inner = inner
        self.hints = hints
        self.name = name
        self.batch_size = getattr(inner, "batch_size", 256)

    def with_hints(self, request: RankRequest) -> RankRequest:
        template = request.template or HINT_TEMPLATES.get(request.mode)
        return request.model_copy(update={"hints": self.hints.for_request(request), "template": template})

    def rank_many(
        self, requests: Sequence[RankRequest], on_result: ResultCallback | None = None
    ) -> list[RankedList]:
        return self.inner.rank_many(
            [self.with_hints(parse_request(request)) for request in requests], on_result=on_result
        )
