"""Guard against baselines that would learn evaluation targets from the training data they are fitted on.

A ready ranking set whose rows are successive prefixes of one user's sequence (as in the LLaRA / S-DPO
test sets) has each row's target inside later rows' histories. Baselines fitted on the set's own
histories then learn "after these items comes the target" and score far above what they can do (item-kNN
97 NDCG@10 on such a set, against ~23 for random).

The check reads targets, but only to refuse the run; it never changes a ranking. A case counts as leaked
when its target follows its own most recent history items (the last `WINDOW`, in order, contiguously)
inside any training history: that is the continuation of this very sequence, not a popular item that
other users also chose. Real logs have a few such coincidences (users who rate a series in the same order
at the same second: 3 of 610 cases on MovieLens latest-small, 1 of 943 on ML-100K, 0 on Games-200/6k), so
the run is refused only above `MAX_LEAKED_SHARE`; a prefix-structured set leaks in nearly every case.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from promptrec.errors import DataError
from promptrec.models import RankingCase

WINDOW = 3
MAX_LEAKED_SHARE = 0.05
logger = logging.getLogger(__name__)


def leaked_cases(cases: Sequence[RankingCase], train_histories: Mapping[str, Sequence[str]]) -> list[str]:
    """Ids of cases whose target continues their recent history somewhere in `train_histories`."""
    windows: dict[tuple[str, ...], list[str]] = {}
    for case in cases:
        history = [event.item_id for event in case.user.history]
        if len(history) >= WINDOW:  # shorter windows match by coincidence (two popular items in a row)
            windows.setdefault((*history[-WINDOW:], case.target_id), []).append(case.case_id)
    leaked: set[str] = set()
    for history in train_histories.values():
        for start in range(len(history) - WINDOW):
            leaked.update(windows.get(tuple(history[start : start + WINDOW + 1]), ()))
    return sorted(leaked)


def refuse_leaking_training_data(
    cases: Sequence[RankingCase], train_histories: Mapping[str, Sequence[str]], train_source: str
) -> None:
    """DataError naming the share of cases whose target the baselines would see, above MAX_LEAKED_SHARE."""
    leaked = leaked_cases(cases, train_histories)
    if leaked and len(leaked) <= MAX_LEAKED_SHARE * len(cases):
        logger.warning(
            "%d of %d cases have their target after their history in %s",
            len(leaked),
            len(cases),
            train_source,
        )
    elif leaked:
        raise DataError(
            f"{len(leaked)} of {len(cases)} cases ({100 * len(leaked) / len(cases):.1f}%, e.g. {leaked[:3]}) "
            f"have their target inside the baselines' training data ({train_source}): the rows look like "
            "successive prefixes of the same sequences, so a baseline fitted on them would learn the "
            "targets. Pass a proper training log with --interactions (histories that end before each "
            "case's target), or evaluate only the LLM (--methods llm), which is fitted on nothing"
        )
