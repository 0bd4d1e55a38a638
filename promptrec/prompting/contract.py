"""The output contract a template declares: how the model must answer and how the answer is read."""

from __future__ import annotations

import string
from enum import StrEnum

from pydantic import Field, model_validator

from promptrec.models import RankMode, StrictModel

# Single characters are one token in every tokenizer we target; the backend still checks at run time.
DEFAULT_LABELS: tuple[str, ...] = tuple(string.ascii_uppercase)


class OutputFormat(StrEnum):
    JSON_ARRAY = "json_array"  # ["C", "A", ...]: a JSON array of candidate identifiers
    NUMBERED_LIST = "numbered_list"  # "1. C" / "2. <title>" lines
    LABEL_LOGPROB = "label_logprob"  # score mode: log-probability of each label at the answer position
    YES_NO = "yes_no"  # pointwise: log P(yes label) - log P(no label) per candidate
    REASON = "reason"  # one sentence of free text about one item: explanations only, never a ranking


class OutputContract(StrictModel):
    """Declared in each template's header; the parser and the backend call follow it."""

    format: OutputFormat
    mode: RankMode
    description: str = ""
    identifiers: str = Field(
        default="labels", pattern="^(labels|ids)$", description="How candidates are named to the model."
    )
    labels: list[str] = Field(default_factory=lambda: list(DEFAULT_LABELS))
    answer_prefix: str = Field(default="", description="Text appended after the assistant turn opens.")
    max_new_tokens: int = Field(default=160, ge=1)
    yes_label: str = "Yes"
    no_label: str = "No"
    demo_share: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Share of the prompt budget (after the fixed parts) demonstrations may use; the history "
        "gets the rest.",
    )
    item_text_chars: int = Field(
        default=0, ge=0, description="Characters of each item's `text` shown to the template (0: none)."
    )
    item_attributes: bool = Field(default=False, description="Show each item's `attributes` to the template.")

    @model_validator(mode="after")
    def _consistent(self) -> OutputContract:
        expected = {
            OutputFormat.JSON_ARRAY: RankMode.GENERATE,
            OutputFormat.NUMBERED_LIST: RankMode.GENERATE,
            OutputFormat.LABEL_LOGPROB: RankMode.SCORE,
            OutputFormat.YES_NO: RankMode.POINTWISE,
            OutputFormat.REASON: RankMode.GENERATE,
        }[self.format]
        if self.mode is not expected:
            raise ValueError(
                f"format {self.format.value!r} needs mode {expected.value!r}, not {self.mode.value!r}"
            )
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be distinct")
        return self
