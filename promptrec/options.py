"""How the LLM ranker is built and asked: one definition behind `Recommender.load`, the CLI and RunConfig.

`LLMOptions` is the single source of truth. The CLI's options take their help text from its field
descriptions (promptrec/cli_options.py), `promptrec eval` records it inside RunConfig (so resuming with
any option changed is refused), and `build_llm_ranker` turns it into a ranker: the Recommender, wrapped by
the demonstration and bootstrap strategies when they are asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from promptrec.errors import RequestError
from promptrec.models import Item, RankMode, StrictModel

if TYPE_CHECKING:
    from promptrec.ranker import Ranker

DemoSelector = Literal["self", "random", "similar"]


class LLMOptions(StrictModel):
    backend: str = Field(default="transformers", description="transformers | vllm | openai (a `vllm serve`).")
    model: str | None = Field(
        default=None, description="Local model folder or name; the bundled SmolLM2-135M-Instruct if unset."
    )
    adapter: str | None = Field(
        default=None,
        description="LoRA adapter folder; 'none' runs the model zero-shot. Unset: the shipped fine-tuned "
        "adapter with the bundled model (transformers, vllm), none otherwise.",
    )
    base_url: str | None = Field(
        default=None, description="Server URL for --backend openai, e.g. http://127.0.0.1:8000/v1"
    )
    template: str | None = Field(
        default=None, description="Template name in prompts/; the mode's default if unset."
    )
    max_history: int | None = Field(
        default=None,
        ge=0,
        description="Newest history items offered to the prompt budget. Unset: as many as the adapter was "
        "trained with (10 for the shipped one), else 50.",
    )
    demos: int = Field(
        default=0,
        ge=0,
        description="Few-shot demonstrations per request (as many as fit the budget, at most this).",
    )
    demo_selector: DemoSelector = Field(
        default="self",
        description="self: the user's history minus its last item; random / similar: other training users.",
    )
    bootstrap: int = Field(
        default=1,
        ge=1,
        description="Rank M seeded shuffles of the candidates and aggregate (position-bias control).",
    )

    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Deadline in seconds of each backend call (every backend); a later "
        "answer is a backend error (exit 4), or the fallback's ranking.",
    )
    fallback: Literal["retriever"] | None = Field(
        default=None,
        description="retriever: if the backend fails, answer with a retriever's ranking (candidate order "
        "without one), marked 'fallback' in every item's source.",
    )
    redact_contacts: bool = Field(
        default=False, description="Replace e-mail addresses and phone numbers in the user's words."
    )
    quantization: Literal["4bit", "8bit"] | None = Field(
        default=None,
        description="transformers backend: load the model in 4-bit NF4 or 8-bit through bitsandbytes "
        "(an adapter is then applied unmerged).",
    )

    def served_mode(self) -> RankMode | None:
        """The mode for a request that names none: the template's declared mode, else the mode the
        adapter these options load was trained in (pointwise for the shipped one); None without either."""
        from promptrec.adapters import adapter_options, default_adapter
        from promptrec.adapters.card import read_card
        from promptrec.prompting.templates import TemplateLibrary

        if self.template is not None:
            return TemplateLibrary().load(self.template).contract.mode
        chosen = adapter_options(self.adapter)  # the same reading of --adapter as the backend gets
        folder = chosen["adapter"] if "adapter" in chosen else default_adapter(self.backend, self.model)
        card = read_card(Path(folder)) if folder is not None else None
        return RankMode(card.mode) if card is not None else None

    def backend_options(self) -> dict[str, Any]:
        """Keyword options for `load_backend` beyond the model."""
        from promptrec.adapters import adapter_options

        options: dict[str, Any] = {"base_url": self.base_url} if self.base_url else {}
        options |= adapter_options(self.adapter)
        if self.timeout is not None:
            options["timeout_s"] = self.timeout
        if self.quantization is not None:
            options["quantization"] = self.quantization
        return options


def template_sha256(template: str | None, mode: RankMode) -> str:
    """Content hash of the template a run uses, so editing the file in place is caught on resume."""
    from promptrec.prompting.templates import TemplateLibrary

    path = TemplateLibrary().get(template, mode).path
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_recommender(options: LLMOptions, *, keep_prompts: bool = False) -> Any:
    """The plain LLM `Recommender` on the backend and model `options` name (no strategy around it)."""
    from promptrec.prompting.builder import PromptBudget
    from promptrec.recommender import Recommender

    # Unset, the recommender takes the history length the adapter was trained with.
    history = options.max_history
    budget = {} if history is None else {"budget": PromptBudget(max_history_items=history)}
    return Recommender.load(
        options.backend,
        options.model,
        **budget,
        fallback=options.fallback,
        redact_contacts=options.redact_contacts,
        keep_prompts=keep_prompts,
        **options.backend_options(),
    )


def build_llm_ranker(
    options: LLMOptions,
    *,
    train_histories: Mapping[str, Sequence[str]] | None = None,
    catalog: Mapping[str, Item] | None = None,
    seed: int = 0,
    recommender: Any = None,
    keep_prompts: bool = False,
) -> Ranker:
    """The LLM ranker `options` describe. Demonstrations are drawn from `train_histories` and `catalog`
    (training data only); `recommender` replaces the loaded one (tests inject a scripted backend);
    `keep_prompts` puts the verbatim prompts in each answer's diagnostics."""
    if options.demos and not (train_histories and catalog):
        raise RequestError(
            f"demos={options.demos} needs train_histories and catalog to draw demonstrations and their "
            "negative candidates from; pass both, or demos=0"
        )
    ranker: Ranker = recommender or load_recommender(options, keep_prompts=keep_prompts)
    default_mode = getattr(ranker, "default_mode", None)  # the mode the LLM's adapter was trained for
    if options.demos:
        from promptrec.strategies.demos import DemoPool, DemoRanker

        pool = DemoPool(train_histories or {}, catalog or {}, seed=seed)
        ranker = DemoRanker(ranker, pool, count=options.demos, selector=options.demo_selector)
    if options.bootstrap > 1:
        from promptrec.strategies.bootstrap import BootstrapRanker

        ranker = BootstrapRanker(ranker, passes=options.bootstrap, seed=seed)
    if default_mode is not None and (options.demos or options.bootstrap > 1):
        from promptrec.ranker import DefaultModeRanker

        ranker = DefaultModeRanker(ranker, default_mode)
    return ranker
