"""The aggregate stage: turn what the model gave into a RankedList over exactly the request's candidates.

Invariant: `item_ids` is always the first `request.effective_k` entries of a permutation of the
candidate ids, whatever the model wrote.

Back-fill. Candidates the model did not place follow the placed ones in candidate order (the declared
fallback, `Diagnostics.backfill_order == "candidate_order"`), with source `backfill`.

Counts. `missing_count` is over the whole candidate set (placed by the model + missing == number of
candidates), even when the returned list is cut to k; `sources` show which returned positions were
back-filled. `invalid_count` and `duplicate_count` come from the parser (or, for scores, the NaN count).

Status, judged on the returned list: `ok` when every returned position was placed by the model (with
k < n, the model placing the top k is enough), `failed` when the model placed nothing usable (the list is
pure back-fill), otherwise `partial`.

Scores (score and pointwise modes): descending score, ties kept in candidate order. A NaN score is no
usable answer: it is counted invalid, its candidate is treated as missing and back-filled after every
scored candidate (below -inf as well). A non-finite score (NaN, +-inf) is reported as null and counted in
`Diagnostics.nonfinite_scores`, so returned scores are always valid JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from promptrec.errors import BackendError, RequestError
from promptrec.models import Diagnostics, ItemSource, ParseStatus, RankedList, RankRequest
from promptrec.parsing import ParsedAnswer


def assemble_ranked_list(request: RankRequest, parsed: ParsedAnswer, diagnostics: Diagnostics) -> RankedList:
    """The model's placements, then back-fill in candidate order, cut to k; counts and status filled in.

    `diagnostics` carries the fields known before parsing (raw output, tokens, latency...); its
    parse_status and counts are replaced. Raises RequestError if `parsed` names an id that is not one of
    this request's candidates, or names one twice: it was parsed against another candidate set.
    """
    candidate_ids = {item.id for item in request.candidates}
    seen: set[str] = set()
    for position, item_id in enumerate(parsed.ordered_ids):
        if item_id not in candidate_ids or item_id in seen:
            problem = "appears twice" if item_id in seen else "is not a candidate of this request"
            raise RequestError(
                f"parsed.ordered_ids[{position}]={item_id!r} {problem}; parse the answer against "
                "request.candidates with promptrec.parsing.parse_answer"
            )
        seen.add(item_id)
    return _ranked(
        request, parsed.ordered_ids, None, parsed.invalid_count, parsed.duplicate_count, diagnostics
    )


def rank_by_scores(request: RankRequest, scores: Sequence[float], diagnostics: Diagnostics) -> RankedList:
    """Rank candidates by `scores` (aligned with request.candidates), highest first; NaN is back-filled.

    Raises BackendError if there is not exactly one score per candidate.
    """
    if len(scores) != len(request.candidates):
        raise BackendError(
            f"the backend returned {len(scores)} scores for {len(request.candidates)} candidates; "
            "score mode needs exactly one score per candidate, in candidate order"
        )
    values = [float(score) for score in scores]
    scored = [index for index, value in enumerate(values) if not math.isnan(value)]
    # sorted() is stable, also with reverse=True, so equal scores keep candidate order.
    ranked = sorted(scored, key=lambda index: values[index], reverse=True)
    score_by_id = {
        item.id: (value if math.isfinite(value) else None)
        for item, value in zip(request.candidates, values, strict=True)
    }
    model_ids = [request.candidates[index].id for index in ranked]
    nan_count = len(values) - len(scored)
    nonfinite = sum(not math.isfinite(value) for value in values)
    diagnostics = diagnostics.model_copy(update={"nonfinite_scores": nonfinite})
    return _ranked(request, model_ids, score_by_id, nan_count, 0, diagnostics)


def _ranked(
    request: RankRequest,
    model_ids: list[str],
    score_by_id: dict[str, float | None] | None,
    invalid_count: int,
    duplicate_count: int,
    diagnostics: Diagnostics,
) -> RankedList:
    placed = set(model_ids)
    backfill = [item.id for item in request.candidates if item.id not in placed]
    k = request.effective_k
    item_ids = (model_ids + backfill)[:k]
    sources = ([ItemSource.MODEL] * len(model_ids) + [ItemSource.BACKFILL] * len(backfill))[:k]
    if not model_ids:
        status = ParseStatus.FAILED
    elif len(model_ids) >= k:
        status = ParseStatus.OK
    else:
        status = ParseStatus.PARTIAL
    filled = diagnostics.model_copy(
        update={
            "parse_status": status,
            "invalid_count": invalid_count,
            "duplicate_count": duplicate_count,
            "missing_count": len(backfill),
        }
    )
    scores = [score_by_id[item_id] for item_id in item_ids] if score_by_id is not None else None
    return RankedList(item_ids=item_ids, scores=scores, sources=sources, diagnostics=filled)
