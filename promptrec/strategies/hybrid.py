"""`HybridRanker`: an inner ranker (the LLM) fused with an anchor ranker (a retriever) at a fixed weight.

The weight is an input, chosen beforehand on validation cases (promptrec/evaluation/fusion_validation.py),
never on the cases being ranked. Weight 0 is the anchor alone, so a weight chosen on validation is at
least as good as the anchor there by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

from promptrec.models import ItemSource, RankedList, RankRequest
from promptrec.ranker import Ranker, ResultCallback
from promptrec.strategies.fusion import FusionMethod, fuse
from promptrec.validation import parse_request


class HybridRanker:
    """Ranks every request with both rankers (all candidates), fuses, and keeps the first k.

    The result's diagnostics are the inner ranker's (its prompt, raw output, latency); `passes` holds the
    inner's then the anchor's diagnostics.
    """

    def __init__(
        self,
        inner: Ranker,
        anchor: Ranker,
        weight: float,
        method: FusionMethod = FusionMethod.RRF,
        name: str = "hybrid",
    ):
        self.inner = inner
        self.anchor = anchor
        self.weight = weight
        self.method = FusionMethod(method)
        self.name = name
        self.batch_size = getattr(inner, "batch_size", 256)

    def rank_many(
        self, requests: Sequence[RankRequest], on_result: ResultCallback | None = None
    ) -> list[RankedList]:
        parsed = [parse_request(request) for request in requests]
        full = [request.model_copy(update={"k": None}) for request in parsed]
        anchored = self.anchor.rank_many(full)
        results: list[RankedList | None] = [None] * len(full)

        def fused(index: int, inner: RankedList) -> None:
            results[index] = self.combine(inner, anchored[index], parsed[index].effective_k)
            if on_result is not None:
                on_result(index, results[index])

        # `on_result` is optional in the protocol: whatever the inner ranker did not report is fused here.
        for index, inner in enumerate(self.inner.rank_many(full, on_result=fused)):
            if results[index] is None:
                fused(index, inner)
        return [result for result in results if result is not None]

    def combine(self, inner: RankedList, anchor: RankedList, k: int) -> RankedList:
        ids, scores = fuse(
            inner.item_ids, inner.scores, anchor.item_ids, anchor.scores, self.weight, self.method
        )
        diagnostics = inner.diagnostics.model_copy(
            update={"backend": f"{self.name}({inner.diagnostics.backend}+{anchor.diagnostics.backend})"}
        )
        return RankedList(
            item_ids=ids[:k],
            scores=scores[:k],
            sources=[ItemSource.FUSED] * min(k, len(ids)),
            diagnostics=diagnostics,
            passes=[*(inner.passes or [inner.diagnostics]), *(anchor.passes or [anchor.diagnostics])],
        )
