"""`recommend`: from a whole catalogue to k items, for a new user, a short history or a free-text request.

catalogue index -> candidates (promptrec.catalog_retrieval: retrievers chosen for the case, fused,
facets applied) -> the LLM ranks the top n through `Recommender.rank` with the scenario's template (or,
serving a pointwise-trained adapter, the prompt it was trained on) -> optional MMR diversity -> top k ->
optional checked explanations.

The result is always k distinct catalogue items (fewer only when the catalogue, less the user's own
items, holds fewer), none of them from the user's history.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError

from promptrec.catalog_index import CatalogIndex, open_catalog
from promptrec.catalog_retrieval import CandidatePool, retrieve_candidates
from promptrec.data.catalog import Catalog
from promptrec.data.catalog_file import CatalogSource
from promptrec.diversity import mmr_order
from promptrec.errors import RequestError
from promptrec.explanations import explain
from promptrec.facets import FacetFilter
from promptrec.models import Diagnostics, RankMode, StrictModel, UserContext
from promptrec.scenarios import POLICIES, Scenario
from promptrec.validation import describe_validation_error

if TYPE_CHECKING:
    from promptrec.prompting.templates import PromptTemplate
    from promptrec.recommender import Recommender

CatalogInput = str | Path | Catalog | CatalogSource | CatalogIndex


class RecommendOptions(StrictModel):
    k: int = Field(default=10, ge=1, description="Items returned.")
    n_candidates: int = Field(default=20, ge=1, description="Retrieved items the LLM ranks (at least k).")
    scenario: Scenario = Scenario.BROWSE
    template: str | None = Field(default=None, description="Overrides the scenario's template.")
    diversity: float | None = Field(
        default=None, ge=0.0, le=1.0, description="MMR lambda: 0 keeps the ranking, 1 only spreads it."
    )
    explain: bool = False
    facets: bool = Field(default=True, description="False: ignore facets the request names (an ablation).")
    use_llm: bool = Field(default=True, description="False: the retriever's order alone (a baseline).")


class RecommendDiagnostics(StrictModel):
    strategy: str = Field(description="What the candidates came from: request, history, both, or neither.")
    retrievers: list[str]
    facets: FacetFilter
    facet_policy: str = Field(description="none | filter (k or more items match) | boost (fewer match).")
    facet_matches: int | None = None
    candidates_ranked: int
    scenario: Scenario
    template: str | None
    diversity: float | None
    index_hash: str
    index_cache: str = Field(description="hit: read from the disk cache; built: built now and stored.")
    explanation_citations_removed: int = 0
    explanation_fallbacks: int = 0
    timings_s: dict[str, float]
    rank: Diagnostics | None = None


class Recommendation(StrictModel):
    item_ids: list[str]
    titles: list[str]
    stages: list[str] = Field(description="Per item: the retrievers that proposed it, joined by '+'.")
    sources: list[str] = Field(description="Per item: model, backfill (rank path) or retriever (no LLM).")
    explanations: list[str] | None = None
    diagnostics: RecommendDiagnostics


def _user(user: UserContext | dict[str, Any]) -> UserContext:
    if isinstance(user, UserContext):
        return user
    try:
        return UserContext.model_validate(user)
    except ValidationError as error:
        raise RequestError(describe_validation_error(error, UserContext, root="user")) from error


def _options(options: dict[str, Any]) -> RecommendOptions:
    try:
        return RecommendOptions.model_validate(options)
    except ValidationError as error:
        raise RequestError(describe_validation_error(error, RecommendOptions, root="options")) from error


def recommend(
    recommender: Recommender,
    user: UserContext | dict[str, Any],
    catalog: CatalogInput,
    **options: Any,
) -> Recommendation:
    started = time.perf_counter()
    settings = _options(options)
    user = _user(user)
    index = open_catalog(catalog)
    indexed = time.perf_counter()
    for position, event in enumerate(user.history):
        if event.item_id not in index.position:
            raise RequestError(
                f"user.history[{position}].item_id={event.item_id!r} is not in the catalogue "
                f"({len(index.ids)} items); pass ids of catalogue items only"
            )
    policy = POLICIES[settings.scenario]
    n = max(settings.n_candidates, settings.k)
    pool = retrieve_candidates(
        index,
        user,
        n,
        settings.k,
        request_weight=policy.request_weight,
        excluded=_near_copies(index, user, policy.near_copy_similarity),
        use_facets=settings.facets,
        seed=recommender.seed,
    )
    retrieved = time.perf_counter()
    stage_of = dict(zip(pool.item_ids, pool.stages, strict=True))
    history_items = [index.catalog[item_id] for item_id in dict.fromkeys(e.item_id for e in user.history)]

    rank_diagnostics = None
    template = (
        _shortlist_template(recommender, settings.template, policy.template) if settings.use_llm else None
    )
    order, sources = pool.item_ids, ["retriever"] * len(pool.item_ids)
    if template is not None and pool.item_ids:
        ranked = recommender.rank(
            {
                "user": user,
                "candidates": [index.catalog[item_id] for item_id in pool.item_ids],
                "history_items": history_items,
                "mode": template.contract.mode,
                "template": template.name,
            }
        )
        order, sources = ranked.item_ids, [source.value for source in ranked.sources]
        rank_diagnostics = ranked.diagnostics
    ranked_at = time.perf_counter()
    if settings.diversity is not None and order:
        source_of = dict(zip(order, sources, strict=True))
        order = mmr_order(order, index.vectors(order), settings.diversity)
        sources = [source_of[item_id] for item_id in order]
    order, sources = order[: settings.k], sources[: settings.k]
    items = [index.catalog[item_id] for item_id in order]

    explanations = None
    removed = fallbacks = 0
    if settings.explain and items:
        reasons = explain(recommender, index, user, items, history_items)
        explanations = [reason.text for reason in reasons]
        removed = sum(reason.removed for reason in reasons)
        fallbacks = sum(reason.fallback for reason in reasons)
    finished = time.perf_counter()
    return Recommendation(
        item_ids=order,
        titles=[item.title for item in items],
        stages=[stage_of[item_id] for item_id in order],
        sources=sources,
        explanations=explanations,
        diagnostics=_diagnostics(
            pool,
            settings,
            template.name if template is not None else None,
            index,
            rank_diagnostics,
            removed,
            fallbacks,
            {
                "index_s": round(indexed - started, 4),
                "retrieve_s": round(retrieved - indexed, 4),
                "rank_s": round(ranked_at - retrieved, 4),
                "explain_s": round(finished - ranked_at, 4),
                "total_s": round(finished - started, 4),
            },
        ),
    )


def _shortlist_template(
    recommender: Recommender, requested: str | None, scenario_template: str
) -> PromptTemplate:
    """The template the shortlist is ranked with: the caller's, else the scenario's, except for a recommender
    serving a pointwise-trained adapter (the shipped one), which ranks with the pointwise prompt it was
    trained on. The scenario's listwise prompt is one such an adapter never saw; with it the shipped adapter
    ranks at random (MovieLens 21.3 NDCG@10, random 22.7). The scenario still shapes the candidates (near
    copies, the request's weight)."""
    if requested is None and recommender.default_mode is RankMode.POINTWISE:
        return recommender.templates.get(None, RankMode.POINTWISE)
    return recommender.templates.load(requested or scenario_template)


def _near_copies(index: CatalogIndex, user: UserContext, threshold: float | None) -> list[str]:
    """Catalogue items at least `threshold` similar to a history item (cart/post-purchase substitutes)."""
    history = [event.item_id for event in user.history]
    if threshold is None or not history:
        return []
    closest = (index.embeddings @ index.vectors(history).T).max(axis=1)
    return [index.ids[i] for i in (closest >= threshold).nonzero()[0]]


def _diagnostics(
    pool: CandidatePool,
    settings: RecommendOptions,
    template: str | None,
    index: CatalogIndex,
    rank: Diagnostics | None,
    removed: int,
    fallbacks: int,
    timings: dict[str, float],
) -> RecommendDiagnostics:
    return RecommendDiagnostics(
        strategy=pool.strategy,
        retrievers=pool.retrievers,
        facets=pool.facets,
        facet_policy=pool.facet_policy,
        facet_matches=pool.facet_matches,
        candidates_ranked=len(pool.item_ids) if settings.use_llm else 0,
        scenario=settings.scenario,
        template=template,
        diversity=settings.diversity,
        index_hash=index.content_hash,
        index_cache=index.cache_status,
        explanation_citations_removed=removed,
        explanation_fallbacks=fallbacks,
        timings_s=timings,
        rank=rank,
    )
