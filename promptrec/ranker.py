"""The one small protocol every ranking strategy speaks: `rank_many(requests) -> list[RankedList]`.

`Recommender` (an LLM), `RetrieverRanker` (any fitted retriever) and the strategies in
promptrec/strategies/ (bootstrap, hybrid fusion, retrieve-then-rank, demonstrations) all implement it,
so a strategy wraps any ranker and evaluation treats every method the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from promptrec.models import Diagnostics, ItemSource, RankedList, RankMode, RankRequest
from promptrec.retrievers.base import Retriever, order_by_score
from promptrec.validation import RequestLimits, parse_request

ResultCallback = Callable[[int, RankedList], None]


@runtime_checkable
class Ranker(Protocol):
    """Ranks each request's candidates; `on_result(index, ranked)` may fire as results finish."""

    name: str

    def rank_many(
        self, requests: Sequence[RankRequest], on_result: ResultCallback | None = None
    ) -> list[RankedList]: ...


# The candidate caps guard the LLM's cost; a retriever scores a whole catalogue in one request.
RETRIEVER_LIMITS = RequestLimits(max_candidates=dict.fromkeys(RankMode, 10**9))


class RetrieverRanker:
    """A fitted retriever as a ranker: candidates by descending retriever score.

    Ties go by the retriever's seeded per-user order over item ids (promptrec.retrievers.base): label-blind
    and independent of the candidates' positions.
    """

    def __init__(self, retriever: Retriever, seed: int = 0, name: str | None = None):
        self.retriever = retriever
        self.seed = seed
        self.name = name or retriever.name

    def rank_many(
        self, requests: Sequence[RankRequest], on_result: ResultCallback | None = None
    ) -> list[RankedList]:
        results = []
        for index, request in enumerate(requests):
            results.append(self.rank(parse_request(request, RETRIEVER_LIMITS)))
            if on_result is not None:
                on_result(index, results[-1])
        return results

    def rank(self, request: RankRequest) -> RankedList:
        ids = [item.id for item in request.candidates]
        scores = np.asarray(self.retriever.score(request.user, request.candidates), dtype=float)
        ranked = order_by_score(ids, scores, self.seed, request.user)[: request.effective_k]
        score_by_id = dict(zip(ids, scores.tolist(), strict=True))
        return RankedList(
            item_ids=ranked,
            scores=[score_by_id[item_id] for item_id in ranked],
            sources=[ItemSource.RETRIEVER] * len(ranked),
            diagnostics=Diagnostics(backend=f"retriever:{self.retriever.name}", mode=request.mode),
        )


class DefaultModeRanker:
    """Puts a request that names no mode (nor template) in `default_mode` before the strategies it wraps
    see it, so demonstrations and shuffles are built for the mode the LLM will rank in."""

    def __init__(self, ranker: Ranker, default_mode: RankMode):
        self.ranker = ranker
        self.default_mode = default_mode
        self.name = ranker.name

    def rank_many(
        self, requests: Sequence[RankRequest], on_result: ResultCallback | None = None
    ) -> list[RankedList]:
        return self.ranker.rank_many(
            [request.with_default_mode(self.default_mode) for request in requests], on_result
        )
