"""Structured-output constraints derived from a template's contract.

Backends that support constrained decoding get a schema that admits only the shown candidate
identifiers, so a well-behaved backend cannot emit an off-list item; the parser still validates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from promptrec.backends.base import StructuredOutput
from promptrec.prompting.contract import OutputContract, OutputFormat


def answer_constraint(contract: OutputContract, identifiers: Sequence[str]) -> StructuredOutput | None:
    """Constraint for a generate-mode answer naming `identifiers` (labels or ids); None if not applicable."""
    if contract.format is OutputFormat.JSON_ARRAY:
        return StructuredOutput(
            json_schema={
                "type": "array",
                "items": {"type": "string", "enum": list(identifiers)},
                "minItems": 1,
                "maxItems": len(identifiers),
            }
        )
    if contract.format is OutputFormat.NUMBERED_LIST:
        choice = "|".join(re.escape(identifier) for identifier in identifiers)
        return StructuredOutput(regex=rf"(\d+\. ({choice})\n){{1,{len(identifiers)}}}")
    return None
