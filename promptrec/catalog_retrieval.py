"""The candidate stage of `recommend`: pick retrievers for what is known about the user, fuse, apply facets.

- a request or stated preferences: BM25 and embedding similarity over item text, fused;
- a history: item-kNN co-occurrence (when the catalogue came with interactions) and embedding similarity
  to the history items, fused (together with the text retrievers when there is also a request);
- nothing at all: popularity (interaction counts), or catalogue order when there are no interactions;
  with a request or history, popularity joins at half weight as a prior (see POPULARITY_PRIOR).

Fusion is reciprocal-rank fusion (sum of weight / (60 + rank) over each retriever's top 200), so scores
on different scales combine without tuning. Facets named in the request (see promptrec.facets) filter the
pool when at least k items match them, and otherwise only lift the matching items to the front. Ties are
broken by the seeded per-user order of promptrec.retrievers.base, never by catalogue position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from promptrec.catalog_index import CatalogIndex
from promptrec.facets import FacetFilter, extract_facets
from promptrec.models import UserContext
from promptrec.retrievers.base import history_ids, order_by_score

RRF_K = 60
PER_RETRIEVER = 200
POPULARITY_PRIOR = 0.5
FacetPolicy = Literal["none", "filter", "boost"]


@dataclass(frozen=True)
class CandidatePool:
    item_ids: list[str]  # best first
    stages: list[str]  # per item: the retrievers that proposed it, joined by "+"
    strategy: str
    retrievers: list[str]
    facets: FacetFilter = field(default_factory=FacetFilter)
    facet_policy: FacetPolicy = "none"
    facet_matches: int | None = None


def query_texts(user: UserContext) -> list[str]:
    return [text for text in [user.request or "", *user.preferences] if text.strip()]


def retrieve_candidates(
    index: CatalogIndex,
    user: UserContext,
    n: int,
    k: int,
    *,
    request_weight: float = 1.0,
    excluded: Sequence[str] = (),
    use_facets: bool = True,
    seed: int = 0,
) -> CandidatePool:
    """The n best catalogue items for `user`, never a history item or one in `excluded`."""
    texts = query_texts(user)
    history = list(dict.fromkeys(history_ids(user)))
    eligible = np.ones(len(index.ids), dtype=bool)
    for item_id in [*history, *excluded]:
        if item_id in index.position:
            eligible[index.position[item_id]] = False

    facets = extract_facets(" ".join(texts), index.vocabulary) if texts and use_facets else FacetFilter()
    policy: FacetPolicy = "none"
    matching = np.zeros(len(index.ids), dtype=bool)
    if not facets.is_empty:
        matching = np.array([facets.matches(item_facets) for item_facets in index.facets]) & eligible
        policy = "filter" if matching.sum() >= k else "boost"
        if policy == "filter":
            eligible = matching

    # (name, scores, weight, only positive scores count as evidence)
    signals: list[tuple[str, np.ndarray, float, bool]] = []
    if texts:
        signals.append(("bm25", index.bm25_scores(" ".join(texts)), request_weight, True))
        signals.append(("embedding", index.text_embedding_scores(texts), request_weight, False))
    if history:
        if index.source.histories:
            signals.append(("itemknn", index.itemknn_scores(history), 1.0, True))
        signals.append(("history-embedding", index.item_embedding_scores(history), 1.0, False))
    if index.source.histories:
        # With a request or a history, popularity is a weak prior that lifts well-known items among
        # equally good text matches; an item nobody rated still gets every other retriever's score.
        weight = 1.0 if not texts and not history else POPULARITY_PRIOR
        signals.append(("popularity", index.popularity_scores(), weight, True))
    elif not texts and not history:
        signals.append(("catalogue-order", -np.arange(len(index.ids), dtype=float), 1.0, False))
    strategy = "+".join(part for part, present in (("request", texts), ("history", history)) if present)

    fused = np.zeros(len(index.ids))
    proposed_by: dict[int, list[str]] = {}
    pool = np.flatnonzero(eligible)
    pool_ids = [index.ids[i] for i in pool]
    for name, scores, weight, positive_only in signals:
        ranked = order_by_score(pool_ids, scores[pool], seed, user)
        if positive_only:
            ranked = [item_id for item_id in ranked if scores[index.position[item_id]] > 0]
        for rank, item_id in enumerate(ranked[:PER_RETRIEVER]):
            position = index.position[item_id]
            fused[position] += weight / (RRF_K + rank + 1)
            proposed_by.setdefault(position, []).append(name)
    if policy == "boost":
        fused[matching] += len(signals) + 1.0  # above any fused sum: every match before every non-match
    order = order_by_score(pool_ids, fused[pool], seed, user)[:n]
    stages = ["+".join(proposed_by.get(index.position[item_id], ["catalogue"])) for item_id in order]
    return CandidatePool(
        item_ids=order,
        stages=stages,
        strategy=strategy or "no-signal",
        retrievers=[name for name, *_ in signals],
        facets=facets,
        facet_policy=policy,
        facet_matches=int(matching.sum()) if policy != "none" else None,
    )
