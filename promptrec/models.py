"""Typed records that cross every stage boundary.

Data flows one way: data -> candidates -> demos -> prompt -> backend -> parse -> aggregate -> metrics.
Every model forbids unknown fields, so a misspelt field in a request fails loudly instead of being ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

# Text kept byte for byte (StrictModel strips whitespace from every other string).
VerbatimText = Annotated[str, StringConstraints(strip_whitespace=False)]


def _id_text(value: Any, name: str) -> Any:
    """Ids are strings or integers (kept as their decimal text); a boolean is never an id."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a string or an integer, not a boolean")
    return str(value) if isinstance(value, int) else value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Item(StrictModel):
    """One catalogue entry. `id` is opaque: never parsed, never assumed sequential."""

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    text: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _coerce_id(cls, value: Any) -> Any:
        return _id_text(value, "id")


class Interaction(StrictModel):
    """One thing a user did with an item, in chronological order within a history."""

    item_id: str = Field(min_length=1)
    timestamp: float | None = Field(default=None, allow_inf_nan=False, strict=True)
    rating: float | None = Field(default=None, allow_inf_nan=False, strict=True)
    event: str | None = None

    @field_validator("item_id", mode="before")
    @classmethod
    def _coerce_id(cls, value: Any) -> Any:
        return _id_text(value, "item_id")


class UserContext(StrictModel):
    """What is known about the user: a history, a free-text request, stated preferences, or none."""

    user_id: str | None = None
    history: list[Interaction] = Field(default_factory=list)
    request: str | None = None
    preferences: list[str] = Field(default_factory=list)

    @property
    def is_cold_start(self) -> bool:
        return not self.history


class RankMode(StrEnum):
    """How the backend is asked.

    generate  -- the model writes a ranked list, parsed by the template's contract.
    score     -- listwise: one forward pass, candidates ranked by their label's log-probability.
    pointwise -- one yes/no question per candidate, ranked by log P(yes) - log P(no).
    """

    GENERATE = "generate"
    SCORE = "score"
    POINTWISE = "pointwise"


class Demonstration(StrictModel):
    """A worked example shown to the model before the request, rendered by the same template.

    Built from training data only (promptrec.strategies.demos): another user's history, or the same
    user's history minus its last item, with the item that came next as the answer. `chosen_id` None
    means the user chose none of the candidates (a pointwise "No").
    """

    user: UserContext
    history_items: list[Item] = Field(default_factory=list)
    candidates: list[Item] = Field(min_length=1)
    chosen_id: str | None

    @model_validator(mode="after")
    def _chosen_is_candidate(self) -> Demonstration:
        if self.chosen_id is not None and self.chosen_id not in {item.id for item in self.candidates}:
            raise ValueError(f"demonstration chosen_id={self.chosen_id!r} is not among its candidates")
        return self


class RankRequest(StrictModel):
    """Rank `candidates` for `user`. Candidate order is also the declared back-fill order."""

    user: UserContext
    candidates: list[Item] = Field(min_length=1)
    k: int | None = Field(
        default=None, ge=1, strict=True, description="Length of the returned list; all candidates if unset."
    )
    template: str | None = Field(
        default=None, description="Template name in prompts/; the mode's default if unset."
    )
    mode: RankMode = RankMode.GENERATE
    history_items: list[Item] = Field(
        default_factory=list,
        description="Catalogue records for the history's item ids (titles shown in the prompt).",
    )
    demos: list[Demonstration] = Field(
        default_factory=list,
        description="Few-shot demonstrations, shown first; as many as fit the template's demo budget.",
    )
    hints: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Facts per candidate id (e.g. from training interactions), shown by templates that "
        "use them (listwise_score_hints, pointwise_yesno_hints) as quoted data.",
    )

    def with_default_mode(self, mode: RankMode | None) -> RankRequest:
        """This request in `mode` if it names neither a mode nor a template (an explicit choice wins)."""
        if mode is None or "mode" in self.model_fields_set or self.template is not None:
            return self
        return self.model_copy(update={"mode": mode})

    @model_validator(mode="after")
    def _check_ids(self) -> RankRequest:
        seen: set[str] = set()
        for position, item in enumerate(self.candidates):
            if item.id in seen:
                raise ValueError(
                    f"candidates[{position}].id={item.id!r} is a duplicate candidate id; "
                    "each candidate must appear once"
                )
            seen.add(item.id)
        unknown_hints = sorted(set(self.hints) - seen)
        if unknown_hints:
            raise ValueError(
                f"hints has keys {unknown_hints[:5]} that are not candidate ids; key each hint list by the "
                "id of the candidate it describes"
            )
        known = {item.id for item in self.history_items}
        for position, event in enumerate(self.user.history):
            if event.item_id not in known:
                raise ValueError(
                    f"user.history[{position}].item_id={event.item_id!r} is not in history_items; "
                    "add its catalogue record (id and title) to history_items"
                )
        return self

    @property
    def effective_k(self) -> int:
        return min(self.k or len(self.candidates), len(self.candidates))


class ItemSource(StrEnum):
    MODEL = "model"  # placed or scored by the LLM
    BACKFILL = "backfill"  # not placed by the model; appended in candidate order
    RETRIEVER = "retriever"  # ordered by a retriever alone
    FUSED = "fused"  # ordered by fusing several rankings (e.g. the LLM's and a retriever's)
    FALLBACK = "fallback"  # the backend failed; a retriever (or candidate order) ranked this list


class ParseStatus(StrEnum):
    OK = "ok"  # every candidate placed by the model
    PARTIAL = "partial"  # some placed by the model, the rest back-filled
    FAILED = "failed"  # nothing usable; the list is entirely back-fill


class Diagnostics(StrictModel):
    raw_output: str = ""
    parse_status: ParseStatus = ParseStatus.OK
    invalid_count: int = Field(
        default=0, description="Mentions that matched no candidate (invented ids, junk)."
    )
    duplicate_count: int = 0
    missing_count: int = Field(default=0, description="Candidates the model did not place; back-filled.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    history_used: int = Field(default=0, description="History items that fit the token budget.")
    history_dropped: int = Field(default=0, description="Oldest history items cut to fit the token budget.")
    demos_used: int = Field(default=0, description="Demonstrations that fit the demo budget.")
    item_text_filtered: int = Field(
        default=0,
        description="Item fields (titles, text, attributes, quoted titles in hints) that lost text addressed "
        "to the recommender, the ranking or the user (promptrec.prompting.sanitize step 6); the prompt "
        "shows what was kept.",
    )
    latency_s: float = 0.0
    backend: str = ""
    mode: RankMode = RankMode.GENERATE
    template: str = ""
    backfill_order: Literal["candidate_order"] = "candidate_order"
    prompts: list[VerbatimText] | None = Field(
        default=None,
        description="Exactly the text the model received, chat template applied (one per pointwise "
        "candidate); kept only with Recommender(keep_prompts=True) or `promptrec rank --show-prompt`.",
    )
    fallback_reason: str | None = Field(
        default=None,
        description="Set when the backend failed and a fallback ranked the list: why, and by what.",
    )
    nonfinite_scores: int = Field(
        default=0, description="Scores that were NaN or +-infinity: reported as null, never as non-JSON."
    )


class RankedList(StrictModel):
    """The answer: an ordering of (the first k of) the candidate set, always.

    `diagnostics` describes the answer as a whole. A strategy that combines several rankings (bootstrap
    shuffles, fusion with a retriever) keeps each pass's own diagnostics, raw model text included, in
    `passes`, in the order the passes ran.
    """

    item_ids: list[str]
    scores: list[float | None] | None = Field(
        default=None, description="Score per item (score modes); null where the model gave no finite score."
    )
    sources: list[ItemSource]
    diagnostics: Diagnostics
    passes: list[Diagnostics] = Field(default_factory=list)

    @model_validator(mode="after")
    def _aligned(self) -> RankedList:
        if len(self.sources) != len(self.item_ids):
            raise ValueError("sources must have one entry per item id")
        if self.scores is not None and len(self.scores) != len(self.item_ids):
            raise ValueError("scores must have one entry per item id")
        return self


class RankingCase(StrictModel):
    """One evaluation case: a request's inputs plus the held-out target, kept apart.

    `to_request` is the only way a case reaches the ranking pipeline, and it never carries the target.
    """

    case_id: str
    user: UserContext
    candidates: list[Item] = Field(min_length=1)
    history_items: list[Item] = Field(default_factory=list)
    target_id: str

    @model_validator(mode="after")
    def _target_is_candidate(self) -> RankingCase:
        if self.target_id not in {item.id for item in self.candidates}:
            raise ValueError(
                f"case {self.case_id!r}: target_id={self.target_id!r} is not among its candidates"
            )
        return self

    def with_newest_history(self, count: int) -> RankingCase:
        """This case as a colder user: only the newest `count` history events (and their items) remain;
        target and candidates are unchanged."""
        kept = self.user.history[len(self.user.history) - count :] if count else []
        shown = {event.item_id for event in kept}
        return self.model_copy(
            update={
                "user": self.user.model_copy(update={"history": kept}),
                "history_items": [item for item in self.history_items if item.id in shown],
            }
        )

    def to_request(
        self, mode: RankMode | None = None, template: str | None = None, k: int | None = None
    ) -> RankRequest:
        """The case as a request; without `mode` the request names none, so the ranker's default applies."""
        named_mode = {} if mode is None else {"mode": mode}
        return RankRequest(
            user=self.user,
            candidates=self.candidates,
            history_items=self.history_items,
            template=template,
            k=k,
            **named_mode,
        )
