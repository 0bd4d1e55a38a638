"""The Python API: `Recommender.rank(request)` and the batched `rank_many(requests)`.

Each request goes prompt -> backend -> parse -> aggregate. Requests are batched per mode and template so
the backend sees full batches; the result for every request is an ordering of its own candidates.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from promptrec.aggregate import assemble_ranked_list, rank_by_scores
from promptrec.backends.base import Backend, GenerationConfig, StructuredOutput
from promptrec.errors import BackendError, RequestError
from promptrec.fallback import FALLBACK_CHOICES, fallback_ranking
from promptrec.models import Diagnostics, RankedList, RankMode, RankRequest
from promptrec.parsing import parse_answer
from promptrec.prompting.builder import BuiltPrompts, PromptBudget, build_prompts
from promptrec.prompting.constraints import answer_constraint
from promptrec.prompting.templates import PromptTemplate, TemplateLibrary
from promptrec.ranker import ResultCallback
from promptrec.retrievers.base import Retriever
from promptrec.validation import DEFAULT_LIMITS, RequestLimits, parse_request

if TYPE_CHECKING:
    from promptrec.models import UserContext
    from promptrec.recommend import CatalogInput, Recommendation


class Recommender:
    """Ranks candidates for users with one LLM backend.

    Args:
        backend: any `Backend` (transformers, in-process vLLM, or a vLLM server client).
        templates: where prompt templates are looked up; the bundled `prompts/` by default.
        budget: history and prompt-length caps below the model's context.
        constrained: in generate mode, ask the backend to constrain the answer to the candidates.
        batch_size: requests sent to the backend together.
        fallback: None (a backend failure raises BackendError) or "retriever": a failing backend call yields
            `fallback_retriever`'s ranking (candidate order if None), marked `fallback` (promptrec.fallback).
        fallback_retriever: a fitted retriever for the fallback.
        keep_prompts: put the exact prompt strings sent to the backend in `Diagnostics.prompts` (debugging
            a template); off by default, as prompts are large and may hold the user's own words.
        request_limits: size, nesting and candidate-count limits every request is validated against.
        redact_contacts: replace e-mail addresses and phone numbers in the user's request and preferences
            by placeholders before they reach the prompt.
    """

    name = "llm"

    def __init__(
        self,
        backend: Backend,
        templates: TemplateLibrary | None = None,
        budget: PromptBudget | None = None,
        constrained: bool = True,
        batch_size: int = 8,
        seed: int = 0,
        fallback: str | None = None,
        fallback_retriever: Retriever | None = None,
        keep_prompts: bool = False,
        request_limits: RequestLimits = DEFAULT_LIMITS,
        redact_contacts: bool = False,
    ):
        if fallback not in FALLBACK_CHOICES:
            raise RequestError(f"fallback={fallback!r} is not one of {FALLBACK_CHOICES}")
        self.fallback = fallback
        self.fallback_retriever = fallback_retriever
        self.keep_prompts = keep_prompts
        self.request_limits = request_limits
        self.redact_contacts = redact_contacts
        self.backend = backend
        self.templates = templates or TemplateLibrary()
        self.budget = budget or PromptBudget()
        self.constrained = constrained
        self.batch_size = batch_size
        self.seed = seed
        # One backend call at a time unless the backend takes concurrent calls (a server does; an in-process
        # model does not promise it), so threads sharing a Recommender get exactly the sequential results.
        self.backend_lock: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if backend.concurrent_calls else threading.RLock()
        )

    @classmethod
    def load(cls, backend: str = "transformers", model: str | None = None, **options: Any) -> Recommender:
        """Build a recommender on a named backend; `model=None` means the bundled SmolLM2.

        The bundled model runs with the shipped fine-tuned adapter unless `adapter` is given (`adapter=None`
        runs it zero-shot).
        """
        from promptrec.adapters import default_adapter
        from promptrec.backends.loader import load_backend

        if "adapter" not in options and (shipped := default_adapter(backend, model)) is not None:
            options["adapter"] = shipped
        elif options.get("adapter", "") is None:
            del options["adapter"]
        recommender_options = {
            name: options.pop(name)
            for name in (
                "budget",
                "constrained",
                "batch_size",
                "fallback",
                "fallback_retriever",
                "keep_prompts",
                "request_limits",
                "redact_contacts",
            )  # fmt: skip
            if name in options
        }
        return cls(load_backend(backend, model, **options), **recommender_options)

    def rank(self, request: RankRequest | dict[str, Any] | str) -> RankedList:
        return self.rank_many([request])[0]

    def rank_many(
        self,
        requests: Iterable[RankRequest | dict[str, Any] | str],
        on_result: ResultCallback | None = None,
    ) -> list[RankedList]:
        """Rank every request; `on_result(index, ranked)` fires as each batch finishes (progress, resume)."""
        validated = [parse_request(request, self.request_limits) for request in requests]
        results: list[RankedList | None] = [None] * len(validated)
        indices = iter(range(len(validated)))
        while chunk := list(islice(indices, self.batch_size)):
            groups: dict[tuple[RankMode, str | None], list[int]] = defaultdict(list)
            for index in chunk:
                groups[(validated[index].mode, validated[index].template)].append(index)
            for (mode, template_name), members in groups.items():
                template = self.templates.get(template_name, mode)
                with self.backend_lock:
                    ranked = self._rank_group_or_fall_back([validated[i] for i in members], template)
                for index, result in zip(members, ranked, strict=True):
                    results[index] = result
            if on_result is not None:
                for index in chunk:
                    on_result(index, results[index])
        return [result for result in results if result is not None]  # every slot is filled above

    def _rank_group_or_fall_back(
        self, requests: Sequence[RankRequest], template: PromptTemplate
    ) -> list[RankedList]:
        try:
            return self._rank_group(requests, template)
        except BackendError as error:
            if self.fallback is None:
                raise
            return [
                fallback_ranking(request, error, self.fallback_retriever, self.backend.name, self.seed)
                for request in requests
            ]

    def recommend(
        self, user: UserContext | dict[str, Any], catalog: CatalogInput, k: int = 10, **options: Any
    ) -> Recommendation:
        """k items from a whole catalogue (path, Catalog or CatalogIndex); see promptrec.recommend."""
        from promptrec.recommend import recommend

        return recommend(self, user, catalog, k=k, **options)

    # --- asyncio: the work runs in a worker thread, so an event loop never blocks on the model ----------
    async def arank(self, request: RankRequest | dict[str, Any] | str) -> RankedList:
        return await asyncio.to_thread(self.rank, request)

    async def arank_many(self, requests: Iterable[RankRequest | dict[str, Any] | str]) -> list[RankedList]:
        return await asyncio.to_thread(self.rank_many, list(requests))

    async def arecommend(
        self, user: UserContext | dict[str, Any], catalog: CatalogInput, k: int = 10, **options: Any
    ) -> Recommendation:
        return await asyncio.to_thread(self.recommend, user, catalog, k, **options)

    def close(self) -> None:
        """Release the backend (engine, model or server session); the recommender is unusable after."""
        self.backend.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Recommender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def _rank_group(self, requests: Sequence[RankRequest], template: PromptTemplate) -> list[RankedList]:
        prompts = [
            build_prompts(
                request, template, self.backend.formatter, self.budget, redact_contacts=self.redact_contacts
            )
            for request in requests
        ]
        started = time.perf_counter()
        mode = template.contract.mode
        if mode is RankMode.GENERATE:
            outcomes = self._generate(requests, prompts, template)
        elif mode is RankMode.SCORE:
            outcomes = self._score_listwise(prompts)
        else:
            outcomes = self._score_pointwise(prompts, template)
        latency = (time.perf_counter() - started) / len(requests)
        ranked = []
        for request, built, (raw_output, completion_tokens, payload) in zip(
            requests, prompts, outcomes, strict=True
        ):
            diagnostics = Diagnostics(
                raw_output=raw_output,
                prompt_tokens=built.prompt_tokens,
                completion_tokens=completion_tokens,
                history_used=built.history_used,
                history_dropped=built.history_dropped,
                demos_used=built.demos_used,
                item_text_filtered=built.item_text_filtered,
                latency_s=latency,
                backend=self.backend.name,
                mode=mode,
                template=template.name,
                prompts=list(built.texts) if self.keep_prompts else None,
            )
            if mode is RankMode.GENERATE:
                parsed = parse_answer(raw_output, request.candidates, template.contract)
                ranked.append(assemble_ranked_list(request, parsed, diagnostics))
            else:
                ranked.append(rank_by_scores(request, payload, diagnostics))
        return ranked

    def _generate(
        self, requests: Sequence[RankRequest], prompts: Sequence[BuiltPrompts], template: PromptTemplate
    ) -> list[tuple[str, int, None]]:
        # One backend call per distinct constraint: requests with equal candidate counts share a schema.
        by_constraint: dict[str, tuple[StructuredOutput | None, list[int]]] = {}
        for index, (request, built) in enumerate(zip(requests, prompts, strict=True)):
            names = built.labels or [item.id for item in request.candidates]
            constraint = answer_constraint(template.contract, names) if self.constrained else None
            key = constraint.model_dump_json() if constraint else ""
            by_constraint.setdefault(key, (constraint, []))[1].append(index)
        outcomes: list[tuple[str, int, None]] = [("", 0, None)] * len(prompts)
        for constraint, members in by_constraint.values():
            config = GenerationConfig(
                max_new_tokens=template.contract.max_new_tokens, seed=self.seed, structured=constraint
            )
            generations = self.backend.generate([prompts[i].texts[0] for i in members], config)
            for index, generation in zip(members, generations, strict=True):
                outcomes[index] = (generation.text, generation.completion_tokens, None)
        return outcomes

    def _score_listwise(self, prompts: Sequence[BuiltPrompts]) -> list[tuple[str, int, list[float]]]:
        outcomes: list[tuple[str, int, list[float]]] = [("", 0, [])] * len(prompts)
        by_labels: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for index, built in enumerate(prompts):
            by_labels[tuple(built.labels)].append(index)
        for labels, members in by_labels.items():
            logprobs = self.backend.next_token_logprobs([prompts[i].texts[0] for i in members], list(labels))
            for index, scores in zip(members, logprobs, strict=True):
                outcomes[index] = (_describe_scores(labels, scores), 0, scores)
        return outcomes

    def _score_pointwise(
        self, prompts: Sequence[BuiltPrompts], template: PromptTemplate
    ) -> list[tuple[str, int, list[float]]]:
        answers = [template.contract.yes_label, template.contract.no_label]
        outcomes = []
        for built in prompts:
            # One call per request: its prompts share the user's history, which a backend that reuses a
            # common prefix (transformers) then computes once; across users only the system text is shared.
            pairs = self.backend.next_token_logprobs(built.texts, answers)
            scores = [yes - no for yes, no in pairs]
            outcomes.append((f"log P(yes) - log P(no) per candidate: {_rounded(scores)}", 0, scores))
        return outcomes


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(value, 4) for value in values]


def _describe_scores(labels: Sequence[str], scores: Sequence[float]) -> str:
    return "label log-probabilities: " + ", ".join(
        f"{label}={score:.4f}" for label, score in zip(labels, scores, strict=True)
    )
