"""Structured-output constraints derived from a template's contract.

Backends that support constrained decoding get a schema that admits only the shown candidate
identifiers, so a well-behaved backend cannot emit an off-list item; the parser still validates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from promptrec.backends.base import StructuredOutput
from promptrec.prompting.contract import OutputContract, OutputFormat


def answer_constraint(contract: OutputContract, identifiers: Sequence[str]) -> StructuredOutput | None:
    """Constraint for a generate-mode answer naming `identifiers` (labels or ids); None if not applicable."""
    if contract.format is OutputFormat.JSON_ARRAY:
        # A regex for the canonical `["A", "B"]` spelling rather than a JSON schema: schema grammars either
        # admit any whitespace (small models then fill the budget with it) or none (vLLM's
        # disable_any_whitespace), and without the ", " they were trained on models close the array
        # after one item. The same regex runs on every backend, so answers do not depend on which runs.
        item = "(" + "|".join(re.escape(json.dumps(name, ensure_ascii=False)) for name in identifiers) + ")"
        return StructuredOutput(regex=rf"\[{item}(, {item}){{0,{len(identifiers) - 1}}}\]")
    if contract.format is OutputFormat.NUMBERED_LIST:
        choice = "|".join(re.escape(identifier) for identifier in identifiers)
        return StructuredOutput(regex=rf"(\d+\. ({choice})\n){{1,{len(identifiers)}}}")
    return None
