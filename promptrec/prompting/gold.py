"""The gold answer of each output contract: the exact text a perfect model would write after the prompt.

Few-shot demonstrations show it as the assistant's reply, and fine-tuning puts its loss on it, so both
teach the model the same answer format the parser reads at inference time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from promptrec.prompting.contract import OutputContract, OutputFormat


def gold_answer(
    contract: OutputContract, *, best_first: Sequence[str] = (), liked: bool | None = None
) -> str:
    """The answer text (after `contract.answer_prefix`) for a known outcome.

    Args:
        contract: the template's declared output contract.
        best_first: listwise contracts: the candidate identifiers (labels or ids, as the template shows
            them) in their true order; score mode needs only the first, the chosen candidate.
        liked: pointwise contracts: whether the user chose the candidate.
    """
    if contract.format is OutputFormat.YES_NO:
        if liked is None:
            raise ValueError("a yes_no contract's gold answer needs liked=True or liked=False")
        return contract.yes_label if liked else contract.no_label
    if not best_first:
        raise ValueError(f"a {contract.format.value} contract's gold answer needs best_first identifiers")
    if contract.format is OutputFormat.LABEL_LOGPROB:
        return best_first[0]
    if contract.format is OutputFormat.JSON_ARRAY:
        # The spelling the answer constraint admits: `["A", "B"]`.
        return json.dumps(list(best_first), ensure_ascii=False)
    return "".join(f"{rank}. {identifier}\n" for rank, identifier in enumerate(best_first, start=1))
