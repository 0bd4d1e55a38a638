"""Bootstrap position-bias control: rank M label-blind shuffles of the candidates and aggregate.

A small model favours whatever sits in certain slots. Each pass shows the candidates in a different
seeded order (pass 0 keeps the given order); the passes of every request go to the inner ranker in one
batch, so an engine with a prefix cache (vLLM) computes the shared history once. Aggregation: with scores,
each pass's scores are min-max normalised to [0, 1] and summed; without (generate mode), Borda points
(n - rank) are summed. Ties keep the given candidate order. The shuffle seed depends on the seed, the pass
and the user key only, never on the label.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import numpy as np

from promptrec.models import Diagnostics, ItemSource, RankedList, RankRequest
from promptrec.ranker import Ranker, ResultCallback
from promptrec.retrievers.base import user_key
from promptrec.validation import parse_request


def shuffled_request(request: RankRequest, seed: int, pass_index: int) -> RankRequest:
    if pass_index == 0:
        return request
    key = hashlib.blake2b(f"{seed}|{pass_index}|{user_key(request.user)}".encode(), digest_size=8).digest()
    candidates = list(request.candidates)
    random.Random(int.from_bytes(key, "big")).shuffle(candidates)
    return request.model_copy(update={"candidates": candidates})


def _pass_points(ranked: RankedList, ids: Sequence[str]) -> np.ndarray:
    """Per-candidate points of one pass, aligned with `ids`: normalised scores, or Borda points."""
    position = {item_id: rank for rank, item_id in enumerate(ranked.item_ids)}
    if ranked.scores is not None:
        score = dict(zip(ranked.item_ids, ranked.scores, strict=True))
        values = np.array([score[item_id] for item_id in ids], dtype=float)
        finite = np.isfinite(values)
        if not finite.any():
            return np.zeros(len(ids))
        low, high = values[finite].min(), values[finite].max()
        points = np.zeros(len(ids))  # a non-finite score (a back-filled candidate) earns nothing
        # Halved first, so that even scores near the float limits cannot overflow the difference; a span
        # that halving rounds to zero (subnormal scores) counts as no spread.
        span = high / 2 - low / 2
        points[finite] = (values[finite] / 2 - low / 2) / span if span > 0 else 0.5
        return points
    return np.array([len(ids) - position[item_id] for item_id in ids], dtype=float)


def aggregate_passes(request: RankRequest, passes: Sequence[RankedList]) -> RankedList:
    """One ranking of `request`'s candidates from several full rankings of them."""
    ids = [item.id for item in request.candidates]
    totals = sum(_pass_points(ranked, ids) for ranked in passes)
    order = sorted(range(len(ids)), key=lambda index: -totals[index])  # stable: ties keep given order
    ranked_ids = [ids[index] for index in order][: request.effective_k]
    scores = [float(totals[index]) for index in order][: request.effective_k]
    first = passes[0].diagnostics
    summary = first.model_copy(
        update={
            "raw_output": f"bootstrap over {len(passes)} shuffled passes; see passes for each raw output",
            "prompt_tokens": sum(ranked.diagnostics.prompt_tokens for ranked in passes),
            "completion_tokens": sum(ranked.diagnostics.completion_tokens for ranked in passes),
            "latency_s": sum(ranked.diagnostics.latency_s for ranked in passes),
            "invalid_count": sum(ranked.diagnostics.invalid_count for ranked in passes),
            "duplicate_count": sum(ranked.diagnostics.duplicate_count for ranked in passes),
            "missing_count": sum(ranked.diagnostics.missing_count for ranked in passes),
        }
    )
    model_placed = {
        item_id
        for ranked in passes
        for item_id, source in zip(ranked.item_ids, ranked.sources, strict=True)
        if source is not ItemSource.BACKFILL
    }
    sources = [ItemSource.MODEL if item_id in model_placed else ItemSource.BACKFILL for item_id in ranked_ids]
    return RankedList(
        item_ids=ranked_ids,
        scores=scores,
        sources=sources,
        diagnostics=summary,
        passes=[diagnostics for ranked in passes for diagnostics in _pass_diagnostics(ranked)],
    )


def _pass_diagnostics(ranked: RankedList) -> list[Diagnostics]:
    return ranked.passes or [ranked.diagnostics]


class BootstrapRanker:
    """Wraps a ranker: every request is ranked in `passes` seeded shuffles and the results aggregated."""

    def __init__(self, inner: Ranker, passes: int = 3, seed: int = 0):
        if passes < 1:
            raise ValueError(f"passes={passes} must be >= 1")
        self.inner = inner
        self.passes = passes
        self.seed = seed
        self.name = f"{inner.name}+bootstrap{passes}"
        self.batch_size = getattr(inner, "batch_size", 8)

    def rank_many(
        self, requests: Sequence[RankRequest], on_result: ResultCallback | None = None
    ) -> list[RankedList]:
        results = []
        for start in range(0, len(requests), self.batch_size):
            chunk = [parse_request(request) for request in requests[start : start + self.batch_size]]
            # Inner results must be full rankings to aggregate; k is applied after aggregation.
            expanded = [
                shuffled_request(request.model_copy(update={"k": None}), self.seed, pass_index)
                for request in chunk
                for pass_index in range(self.passes)
            ]
            ranked = self.inner.rank_many(expanded)
            for offset, request in enumerate(chunk):
                passes = ranked[offset * self.passes : (offset + 1) * self.passes]
                results.append(aggregate_passes(request, passes))
                if on_result is not None:
                    on_result(start + offset, results[-1])
        return results
