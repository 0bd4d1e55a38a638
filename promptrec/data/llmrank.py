"""LLMRank ready ranking sets: JSONL, one user per line, candidates already sampled and shuffled.

Fields: user_id, history_item_ids, history_titles (chronological), candidate_item_ids, candidate_titles,
target_item_id, target_title. The target is kept only in `RankingCase.target_id`, which never reaches a
request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from promptrec.data.quality import read_text_file
from promptrec.errors import DataError
from promptrec.models import Interaction, Item, RankingCase, UserContext

Fail = Callable[[str], NoReturn]
ID_LIST_FIELDS = ("history_item_ids", "history_titles", "candidate_item_ids", "candidate_titles")


def _as_text_list(record: dict[str, Any], field: str, fail: Fail) -> list[str]:
    value = record.get(field)
    if not isinstance(value, list) or not all(isinstance(part, str | int) for part in value):
        fail(f"field {field!r} must be a list of strings")
    return [str(part).strip() for part in value]


class _TitleBook:
    """Remembers each id's title across lines so that one id never names two items."""

    def __init__(self) -> None:
        self.titles: dict[str, str] = {}
        self.items: dict[str, Item] = {}

    def item(self, item_id: str, title: str, fail: Fail) -> Item:
        known = self.titles.setdefault(item_id, title)
        if known != title:
            fail(f"item {item_id!r} is titled {title!r} here but {known!r} earlier; an id names one item")
        if item_id not in self.items:
            try:
                self.items[item_id] = Item(id=item_id, title=title)
            except ValidationError as exc:
                fail(f"item {item_id!r} is invalid: {exc.errors()[0]['msg']}")
        return self.items[item_id]


def _case_from_record(record: dict[str, Any], book: _TitleBook, fail: Fail) -> RankingCase:
    user_id = str(record.get("user_id", "")).strip()
    if not user_id:
        fail("field 'user_id' is missing or empty")
    history_ids, history_titles, candidate_ids, candidate_titles = (
        _as_text_list(record, field, fail) for field in ID_LIST_FIELDS
    )
    if len(history_ids) != len(history_titles):
        fail(f"user {user_id}: {len(history_ids)} history ids but {len(history_titles)} history titles")
    if len(candidate_ids) != len(candidate_titles):
        fail(
            f"user {user_id}: {len(candidate_ids)} candidate ids but {len(candidate_titles)} candidate titles"
        )
    if not candidate_ids:
        fail(f"user {user_id}: no candidates")
    duplicates = sorted({item_id for item_id in candidate_ids if candidate_ids.count(item_id) > 1})
    if duplicates:
        fail(f"user {user_id}: candidate ids {duplicates} appear more than once; candidates must be unique")
    target_id = str(record.get("target_item_id", "")).strip()
    if target_id not in candidate_ids:
        fail(f"user {user_id}: target_item_id {target_id!r} is not among the candidates")
    target_title = str(record.get("target_title", "")).strip()
    if target_title and target_title != candidate_titles[candidate_ids.index(target_id)]:
        fail(f"user {user_id}: target_title {target_title!r} differs from the target candidate's title")
    candidates = [book.item(i, t, fail) for i, t in zip(candidate_ids, candidate_titles, strict=True)]
    history_items = [book.item(i, t, fail) for i, t in zip(history_ids, history_titles, strict=True)]
    return RankingCase(
        case_id=user_id,
        user=UserContext(user_id=user_id, history=[Interaction(item_id=i) for i in history_ids]),
        candidates=candidates,
        history_items=list({item.id: item for item in history_items}.values()),
        target_id=target_id,
    )


def load_llmrank_cases(path: str | Path) -> list[RankingCase]:
    """Load and validate every line; any violation is a DataError naming the line and the user."""
    path = Path(path)
    source = str(path)
    book = _TitleBook()
    cases: list[RankingCase] = []
    seen_users: dict[str, int] = {}
    for number, line in enumerate(read_text_file(path, what="LLMRank ranking set").splitlines(), start=1):
        if not line.strip():
            continue

        def fail(message: str, number: int = number) -> NoReturn:
            raise DataError(f"{message}; fix or drop this line", path=source, record=f"line {number}")

        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"is not valid JSON ({exc.msg})", path=source, record=f"line {number}") from exc
        if not isinstance(record, dict):
            fail("is not a JSON object")
        case = _case_from_record(record, book, fail)
        if case.case_id in seen_users:
            fail(f"user {case.case_id} already has a case on line {seen_users[case.case_id]}")
        seen_users[case.case_id] = number
        cases.append(case)
    if not cases:
        raise DataError("holds no ranking cases; expected one JSON object per line", path=source)
    return cases
