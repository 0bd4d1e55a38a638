"""`load_dataset`: one entry point that recognises a ranking data source and returns its evaluation cases.

Recognised paths:
  *.jsonl                          -- an LLMRank ready ranking set (candidates given);
  a folder with ratings.csv/u.data -- MovieLens, split leave-one-out;
  *.inter with a sibling .item     -- RecBole: atomic logs are split leave-one-out; LLMRank sequence rows
                                      give one case per user, the row's next item as target.
Sampled negatives and candidate order depend only on (seed, user id). Sequence cases are built lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from promptrec.data.catalog import Catalog, InteractionLog
from promptrec.data.llmrank import load_llmrank_cases
from promptrec.data.movielens import load_movielens
from promptrec.data.quality import DataQualityReport
from promptrec.data.recbole import (
    find_item_file,
    inter_form,
    load_atomic_inter,
    load_item_file,
    load_sequence_inter,
)
from promptrec.data.splits import leave_one_out, sequence_case
from promptrec.errors import DataError
from promptrec.models import RankingCase


class RankingDataset:
    """Evaluation cases (one per user) plus what baselines and reports need alongside them."""

    def __init__(
        self,
        *,
        source: str,
        catalog: Catalog,
        user_ids: list[str],
        build_case: Callable[[str], RankingCase],
        train_histories: dict[str, list[str]],
        quality: DataQualityReport,
    ):
        self.source = source
        self.catalog = catalog
        self.user_ids = user_ids
        self.train_histories = train_histories
        self.quality = quality
        self._build_case = build_case
        self._built: dict[str, RankingCase] = {}

    @cached_property
    def cases(self) -> list[RankingCase]:
        return [self.case_for_user(user_id) for user_id in self.user_ids]

    def case_for_user(self, user_id: str) -> RankingCase:
        user_id = str(user_id)
        if user_id not in self._built:
            if user_id not in self._known:
                raise DataError(
                    f"user {user_id!r} has no case in this dataset ({len(self.user_ids)} users); "
                    f"valid ids include {', '.join(self.user_ids[:5])}",
                    path=self.source,
                )
            self._built[user_id] = self._build_case(user_id)
        return self._built[user_id]

    @cached_property
    def _known(self) -> set[str]:
        return set(self.user_ids)

    def __len__(self) -> int:
        return len(self.user_ids)


def _from_cases(
    source: str,
    cases: list[RankingCase],
    catalog: Catalog,
    quality: DataQualityReport,
    train_histories: dict[str, list[str]],
) -> RankingDataset:
    by_user = {case.case_id: case for case in cases}
    return RankingDataset(
        source=source,
        catalog=catalog,
        user_ids=list(by_user),
        build_case=by_user.__getitem__,
        train_histories=train_histories,
        quality=quality,
    )


def _from_log(source: str, log: InteractionLog, n_negatives: int, seed: int) -> RankingDataset:
    split = leave_one_out(log, n_negatives=n_negatives, seed=seed)
    return _from_cases(source, split.cases, log.catalog, split.quality, split.train_histories)


def _from_llmrank_jsonl(path: Path) -> RankingDataset:
    cases = load_llmrank_cases(path)
    catalog = Catalog.from_items(
        (item for case in cases for item in (*case.history_items, *case.candidates)), source=str(path)
    )
    train = {case.case_id: [event.item_id for event in case.user.history] for case in cases}
    return _from_cases(str(path), cases, catalog, catalog.quality, train)


def _from_sequences(
    path: Path, catalog: Catalog, *, strict: bool, n_negatives: int, seed: int
) -> RankingDataset:
    report = catalog.quality
    usable = {}
    for sequence in load_sequence_inter(path, strict=strict, report=report):
        unknown = [item_id for item_id in (*sequence.history, sequence.next_item) if item_id not in catalog]
        if unknown:
            if strict:
                raise DataError(
                    f"user {sequence.user_id!r} has items {unknown[:5]} that are not in the catalogue; "
                    "add them or load with strict=False to skip such users",
                    path=str(path),
                    record=sequence.record,
                )
            # A gap inside a sequence would silently change what "next item" means: skip the whole user.
            report.unknown_history_items.add(
                f"{sequence.record}: user {sequence.user_id}, items {unknown[:5]}"
            )
            continue
        usable[sequence.user_id] = sequence
    return RankingDataset(
        source=str(path),
        catalog=catalog,
        user_ids=list(usable),
        build_case=lambda user_id: sequence_case(
            usable[user_id], catalog, n_negatives=n_negatives, seed=seed
        ),
        train_histories={user_id: list(sequence.history) for user_id, sequence in usable.items()},
        quality=report,
    )


def load_dataset(
    path: str | Path, *, n_negatives: int = 19, seed: int = 0, strict: bool = True
) -> RankingDataset:
    """Load a ranking data source (see the module docstring). strict=False counts bad records instead of
    raising; `n_negatives` and `seed` apply where negatives are sampled (not to ready .jsonl sets)."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            "does not exist; pass a .jsonl ranking set, a MovieLens folder or a RecBole .inter file",
            path=str(path),
        )
    if path.is_dir():
        log = load_movielens(path, strict=strict)
        return _from_log(str(path), log, n_negatives, seed)
    if path.suffix == ".jsonl":
        return _from_llmrank_jsonl(path)
    if path.suffix == ".inter":
        item_path = find_item_file(path)
        report = DataQualityReport(source=str(path))
        catalog = load_item_file(item_path, strict=strict, report=report)
        if inter_form(path) == "sequence":
            return _from_sequences(path, catalog, strict=strict, n_negatives=n_negatives, seed=seed)
        log = load_atomic_inter(path, catalog, strict=strict, report=report)
        return _from_log(str(path), log, n_negatives, seed)
    raise DataError(
        f"unrecognised data source {path.suffix!r}; pass a .jsonl ranking set, a MovieLens folder "
        "(ratings.csv or u.data) or a RecBole .inter file with its .item file",
        path=str(path),
    )
