"""What a failing backend yields with `Recommender(fallback="retriever")`: a ranking that is marked as such.

The list comes from a fitted retriever when one is given, else it keeps candidate order (the declared
back-fill order), which assumes nothing about popularity. Every item's source is `fallback` and
`Diagnostics.fallback_reason` says what failed and what ranked instead, so a fallback is never silent.
"""

from __future__ import annotations

import logging

import numpy as np

from promptrec.errors import BackendError
from promptrec.models import Diagnostics, ItemSource, ParseStatus, RankedList, RankRequest
from promptrec.retrievers.base import Retriever, order_by_score

FALLBACK_CHOICES = (None, "retriever")
logger = logging.getLogger(__name__)


def fallback_ranking(
    request: RankRequest,
    error: BackendError,
    retriever: Retriever | None,
    backend: str,
    seed: int = 0,
    template: str | None = None,
    prompts: list[str] | None = None,
) -> RankedList:
    """The request's candidates ranked without the LLM, marked `fallback` throughout; `template` and `prompts`
    say what the failed call was asked (for `--show-prompt`)."""
    ids = [item.id for item in request.candidates]
    if retriever is None:
        ranked, scores, ranker = ids, None, "candidate order"
    else:
        values = np.asarray(retriever.score(request.user, request.candidates), dtype=float)
        ranked = order_by_score(ids, values, seed, request.user)
        by_id = dict(zip(ids, values.tolist(), strict=True))
        scores, ranker = [by_id[item_id] for item_id in ranked], f"the {retriever.name} retriever"
    k = request.effective_k
    reason = f"backend {backend} failed ({error}); ranked by {ranker}"
    # The error text may quote the server, which may quote the prompt: only its type goes to the log.
    logger.warning("backend %s failed (%s); ranked by %s instead", backend, type(error).__name__, ranker)
    return RankedList(
        item_ids=ranked[:k],
        scores=scores[:k] if scores is not None else None,
        sources=[ItemSource.FALLBACK] * k,
        diagnostics=Diagnostics(
            parse_status=ParseStatus.FAILED,
            missing_count=len(ids),
            backend=backend,
            mode=request.mode,
            template=template or request.template or "",
            fallback_reason=reason,
            prompts=prompts,
        ),
    )
