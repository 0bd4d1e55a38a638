"""`RetrieveThenRank`: a retriever shortlists the top n of the pool, an inner ranker (the LLM) orders them.

LlamaRec's two-stage shape. The pool is the request's candidates minus the user's history items; for
catalogue-wide recommendation pass the whole catalogue as candidates (`catalogue_request`). The answer
is the inner ranker's order of the shortlist, then the rest of the pool in retriever order, cut to k:
always distinct pool items, never a history item.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from promptrec.errors import RequestError
from promptrec.models import Item, ItemSource, RankedList, RankMode, RankRequest, UserContext
from promptrec.ranker import RETRIEVER_LIMITS, Ranker, ResultCallback
from promptrec.retrievers.base import Retriever, history_ids, order_by_score
from promptrec.validation import parse_request


def catalogue_request(
    user: UserContext,
    catalogue: Iterable[Item],
    history_items: Sequence[Item],
    *,
    k: int,
    mode: RankMode,
    template: str | None = None,
) -> RankRequest:
    """A request whose candidates are every catalogue item outside the user's history."""
    seen = set(history_ids(user))
    return RankRequest(
        user=user,
        candidates=[item for item in catalogue if item.id not in seen],
        history_items=list(history_items),
        k=k,
        mode=mode,
        template=template,
    )


class RetrieveThenRank:
    def __init__(self, retriever: Retriever, ranker: Ranker, n: int, seed: int = 0, name: str | None = None):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RequestError(f"n={n!r}: the shortlist size must be an integer >= 1 (e.g. 20)")
        self.retriever = retriever
        self.ranker = ranker
        self.n = n
        self.seed = seed
        self.name = name or f"{retriever.name}+{ranker.name}"
        self.batch_size = getattr(ranker, "batch_size", 256)

    def rank_many(
        self, requests: Sequence[RankRequest], on_result: ResultCallback | None = None
    ) -> list[RankedList]:
        # The whole catalogue arrives here; only the shortlist of n reaches the LLM and its limits.
        parsed = [parse_request(request, RETRIEVER_LIMITS) for request in requests]
        orders = [self._retriever_order(request) for request in parsed]
        shortlists = [
            request.model_copy(update={"candidates": order[: self.n], "k": None})
            for request, order in zip(parsed, orders, strict=True)
        ]
        results: list[RankedList | None] = [None] * len(parsed)

        def finish(index: int, ranked: RankedList) -> None:
            results[index] = self._combine(ranked, orders[index], parsed[index].effective_k)
            if on_result is not None:
                on_result(index, results[index])

        for index, ranked in enumerate(self.ranker.rank_many(shortlists, on_result=finish)):
            if results[index] is None:  # the inner ranker did not report it
                finish(index, ranked)
        return [result for result in results if result is not None]

    def _retriever_order(self, request: RankRequest) -> list[Item]:
        seen = set(history_ids(request.user))
        pool = [item for item in request.candidates if item.id not in seen]
        if not pool:
            raise RequestError(
                "candidates: every candidate is in the user's history; nothing is left to rank"
            )
        scores = np.asarray(self.retriever.score(request.user, pool), dtype=float)
        by_id = {item.id: item for item in pool}
        return [by_id[item_id] for item_id in order_by_score(list(by_id), scores, self.seed, request.user)]

    def _combine(self, ranked: RankedList, order: list[Item], k: int) -> RankedList:
        shortlisted = set(ranked.item_ids)
        rest = [item.id for item in order[self.n :] if item.id not in shortlisted]
        sources = [*ranked.sources, *[ItemSource.RETRIEVER] * len(rest)][:k]
        diagnostics = ranked.diagnostics.model_copy(
            update={"backend": f"{self.name}({ranked.diagnostics.backend})"}
        )
        return RankedList(
            item_ids=[*ranked.item_ids, *rest][:k],
            sources=sources,
            diagnostics=diagnostics,
            passes=ranked.passes or [ranked.diagnostics],
        )
