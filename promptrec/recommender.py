"""The Python API: `Recommender.rank(request)` and the batched `rank_many(requests)`, and for asyncio
`arank`, `arank_many` and `arecommend`.

Each request goes prompt -> backend -> parse -> aggregate. Requests are batched per mode and template so
the backend sees full batches; the result for every request is an ordering of its own candidates.

The batching and the ranking of one group are plans (promptrec.plans): generators that yield the backend
calls they need (`GenerateCall`, `LabelLogprobsCall`) and receive the answers, so the blocking and the
asyncio path share every line of logic, the fallback included. On a backend with `native_async` (the vLLM
server client) `arank_many` awaits the backend's coroutines, with the calls of one step concurrent;
elsewhere it runs `rank_many` in a worker thread, as an in-process model is not safe to call concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptrec.aggregate import assemble_ranked_list, rank_by_scores
from promptrec.backends.base import Backend, Generation, GenerationConfig, StructuredOutput
from promptrec.errors import BackendError, RequestError
from promptrec.fallback import FALLBACK_CHOICES, fallback_ranking
from promptrec.models import Diagnostics, RankedList, RankMode, RankRequest
from promptrec.parsing import parse_answer
from promptrec.plans import adrive, drive
from promptrec.prompting.builder import BuiltPrompts, PromptBudget, build_prompts
from promptrec.prompting.constraints import answer_constraint
from promptrec.prompting.templates import PromptTemplate, TemplateLibrary
from promptrec.ranker import ResultCallback
from promptrec.retrievers.base import Retriever
from promptrec.validation import DEFAULT_LIMITS, RequestLimits, parse_request

if TYPE_CHECKING:
    from promptrec.models import UserContext
    from promptrec.recommend import CatalogInput, Recommendation


@dataclass(frozen=True)
class GenerateCall:
    """One `generate` call a ranking plan needs."""

    prompts: list[str]
    config: GenerationConfig

    def run(self, backend: Backend) -> list[Generation]:
        return backend.generate(self.prompts, self.config)

    async def arun(self, backend: Backend) -> list[Generation]:
        return await backend.agenerate(self.prompts, self.config)


@dataclass(frozen=True)
class LabelLogprobsCall:
    """One `next_token_logprobs` call a ranking plan needs."""

    prompts: list[str]
    labels: list[str]

    def run(self, backend: Backend) -> list[list[float]]:
        return backend.next_token_logprobs(self.prompts, self.labels)

    async def arun(self, backend: Backend) -> list[list[float]]:
        return await backend.anext_token_logprobs(self.prompts, self.labels)


BackendCall = GenerateCall | LabelLogprobsCall
# A plan step is a list of calls that may run concurrently; the answers come back in the same order.
RankPlan = Generator[list[BackendCall], list[Any], list[RankedList]]
Outcome = tuple[str, int, list[float] | None]  # raw output, completion tokens, scores (score modes)
Group = tuple[list[RankRequest], PromptTemplate]


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
        default_mode: the mode of a request that names neither a mode nor a template (generate if None);
            `load` sets the adapter's training mode. A request naming only a template takes its mode.
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
        default_mode: RankMode | None = None,
    ):
        if fallback not in FALLBACK_CHOICES:
            raise RequestError(f"fallback={fallback!r} is not one of {FALLBACK_CHOICES}")
        self.fallback = fallback
        self.fallback_retriever = fallback_retriever
        self.keep_prompts = keep_prompts
        self.request_limits = request_limits
        self.redact_contacts = redact_contacts
        self.default_mode = default_mode
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
        runs it zero-shot). An adapter with a card is served as it was trained unless told otherwise: a
        request naming no mode (nor template) is ranked in the adapter's mode (pointwise for the shipped
        one), and without a `budget` the history holds as many items as its training prompts (10).
        """
        from promptrec.adapters import default_adapter
        from promptrec.adapters.card import read_card
        from promptrec.backends.loader import load_backend

        if "adapter" not in options and (shipped := default_adapter(backend, model)) is not None:
            options["adapter"] = shipped
        elif options.get("adapter", "") is None:
            del options["adapter"]
        card = read_card(Path(options["adapter"])) if "adapter" in options else None
        options = (card.serving_options() if card is not None else {}) | options  # the caller's choice wins
        recommender_options = {
            name: options.pop(name)
            for name in (
                "budget",
                "default_mode",
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
        return drive(self._batches(requests, on_result), self._rank_groups)

    def _in_served_mode(self, request: RankRequest) -> RankRequest:
        """A request that names a template but no mode ranks in the template's mode; one naming neither
        in `default_mode`."""
        if request.template is not None and "mode" not in request.model_fields_set:
            return request.model_copy(update={"mode": self.templates.load(request.template).contract.mode})
        return request.with_default_mode(self.default_mode)

    def _batches(
        self, requests: Iterable[RankRequest | dict[str, Any] | str], on_result: ResultCallback | None
    ) -> Generator[list[Group], list[list[RankedList]], list[RankedList]]:
        """The batching as a plan: yields each chunk's groups (one mode and template each), receives their
        rankings, and returns one ranking per request, in order."""
        validated = [
            self._in_served_mode(parse_request(request, self.request_limits)) for request in requests
        ]
        results: list[RankedList | None] = [None] * len(validated)
        indices = iter(range(len(validated)))
        while chunk := list(islice(indices, self.batch_size)):
            groups: dict[tuple[RankMode, str | None], list[int]] = defaultdict(list)
            for index in chunk:
                groups[(validated[index].mode, validated[index].template)].append(index)
            rankings = yield [
                ([validated[i] for i in members], self.templates.get(template_name, mode))
                for (mode, template_name), members in groups.items()
            ]
            for members, ranked in zip(groups.values(), rankings, strict=True):
                for index, result in zip(members, ranked, strict=True):
                    results[index] = result
            if on_result is not None:
                for index in chunk:
                    on_result(index, results[index])
        return [result for result in results if result is not None]  # every slot is filled above

    # --- the drivers: blocking (groups and their calls one after the other, under the backend lock) and
    # awaited (groups and the calls of each step concurrently; only for a `native_async` backend) -------
    def _rank_groups(self, groups: list[Group]) -> list[list[RankedList]]:
        rankings = []
        for requests, template in groups:
            with self.backend_lock:
                rankings.append(drive(self._rank_group(requests, template), self._run_calls))
        return rankings

    def _run_calls(self, calls: list[BackendCall]) -> list[Any]:
        return [call.run(self.backend) for call in calls]

    async def _arank_groups(self, groups: list[Group]) -> list[list[RankedList]]:
        return await asyncio.gather(
            *(adrive(self._rank_group(requests, template), self._arun_calls) for requests, template in groups)
        )

    async def _arun_calls(self, calls: list[BackendCall]) -> list[Any]:
        return await asyncio.gather(*(call.arun(self.backend) for call in calls))

    def _fall_back(
        self,
        requests: Sequence[RankRequest],
        prompts: Sequence[BuiltPrompts],
        template: PromptTemplate,
        error: BackendError,
    ) -> list[RankedList]:
        """The fallback rankings for a group whose backend call failed; re-raises without a fallback."""
        if self.fallback is None:
            raise error
        return [
            fallback_ranking(
                request,
                error,
                self.fallback_retriever,
                self.backend.name,
                self.seed,
                template=template.name,
                prompts=list(built.texts) if self.keep_prompts else None,
            )
            for request, built in zip(requests, prompts, strict=True)
        ]

    def recommend(
        self, user: UserContext | dict[str, Any], catalog: CatalogInput, k: int = 10, **options: Any
    ) -> Recommendation:
        """k items from a whole catalogue (path, Catalog or CatalogIndex); see promptrec.recommend."""
        from promptrec.recommend import recommend

        return recommend(self, user, catalog, k=k, **options)

    # --- asyncio: an event loop never blocks on the model ---------------------------------------------
    async def arank(self, request: RankRequest | dict[str, Any] | str) -> RankedList:
        return (await self.arank_many([request]))[0]

    async def arank_many(self, requests: Iterable[RankRequest | dict[str, Any] | str]) -> list[RankedList]:
        """`rank_many` awaited: real async on a `native_async` backend, else in a worker thread."""
        if not self.backend.native_async:
            return await asyncio.to_thread(self.rank_many, list(requests))
        return await adrive(self._batches(requests, None), self._arank_groups)

    async def arecommend(
        self, user: UserContext | dict[str, Any], catalog: CatalogInput, k: int = 10, **options: Any
    ) -> Recommendation:
        """`recommend` in a worker thread: retrieval and the catalogue index are CPU work."""
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

    def _rank_group(self, requests: Sequence[RankRequest], template: PromptTemplate) -> RankPlan:
        """Ranks one group (one mode and template) as a plan: yields backend calls, receives their answers."""
        prompts = [
            build_prompts(
                request, template, self.backend.formatter, self.budget, redact_contacts=self.redact_contacts
            )
            for request in requests
        ]
        started = time.perf_counter()
        mode = template.contract.mode
        try:
            if mode is RankMode.GENERATE:
                outcomes = yield from self._generate(requests, prompts, template)
            elif mode is RankMode.SCORE:
                outcomes = yield from self._score_listwise(prompts)
            else:
                outcomes = yield from self._score_pointwise(prompts, template)
        except BackendError as error:  # the drivers raise a failed call's error here
            return self._fall_back(requests, prompts, template, error)
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
                assert payload is not None, "score modes always carry scores"
                ranked.append(rank_by_scores(request, payload, diagnostics))
        return ranked

    def _generate(
        self, requests: Sequence[RankRequest], prompts: Sequence[BuiltPrompts], template: PromptTemplate
    ) -> Generator[list[BackendCall], list[Any], list[Outcome]]:
        # One backend call per distinct constraint: requests with equal candidate counts share a schema.
        by_constraint: dict[str, tuple[StructuredOutput | None, list[int]]] = {}
        for index, (request, built) in enumerate(zip(requests, prompts, strict=True)):
            names = built.labels or [item.id for item in request.candidates]
            constraint = answer_constraint(template.contract, names) if self.constrained else None
            key = constraint.model_dump_json() if constraint else ""
            by_constraint.setdefault(key, (constraint, []))[1].append(index)
        calls: list[BackendCall] = [
            GenerateCall(
                [prompts[i].texts[0] for i in members],
                GenerationConfig(
                    max_new_tokens=template.contract.max_new_tokens, seed=self.seed, structured=constraint
                ),
            )
            for constraint, members in by_constraint.values()
        ]
        outcomes: list[Outcome] = [("", 0, None)] * len(prompts)
        answers = yield calls
        for (_, members), generations in zip(by_constraint.values(), answers, strict=True):
            for index, generation in zip(members, generations, strict=True):
                outcomes[index] = (generation.text, generation.completion_tokens, None)
        return outcomes

    def _score_listwise(
        self, prompts: Sequence[BuiltPrompts]
    ) -> Generator[list[BackendCall], list[Any], list[Outcome]]:
        outcomes: list[Outcome] = [("", 0, [])] * len(prompts)
        by_labels: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for index, built in enumerate(prompts):
            by_labels[tuple(built.labels)].append(index)
        answers = yield [
            LabelLogprobsCall([prompts[i].texts[0] for i in members], list(labels))
            for labels, members in by_labels.items()
        ]
        for (labels, members), logprobs in zip(by_labels.items(), answers, strict=True):
            for index, scores in zip(members, logprobs, strict=True):
                outcomes[index] = (_describe_scores(labels, scores), 0, scores)
        return outcomes

    def _score_pointwise(
        self, prompts: Sequence[BuiltPrompts], template: PromptTemplate
    ) -> Generator[list[BackendCall], list[Any], list[Outcome]]:
        answers = [template.contract.yes_label, template.contract.no_label]
        # One call per request: its prompts share the user's history, which a backend that reuses a
        # common prefix (transformers) then computes once; across users only the system text is shared.
        replies = yield [LabelLogprobsCall(list(built.texts), answers) for built in prompts]
        outcomes: list[Outcome] = []
        for pairs in replies:
            scores = [yes - no for yes, no in pairs]
            outcomes.append((f"log P(yes) - log P(no) per candidate: {_rounded(scores)}", 0, scores))
        return outcomes


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(value, 4) for value in values]


def _describe_scores(labels: Sequence[str], scores: Sequence[float]) -> str:
    return "label log-probabilities: " + ", ".join(
        f"{label}={score:.4f}" for label, score in zip(labels, scores, strict=True)
    )
