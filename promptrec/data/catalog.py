"""The in-memory data every loader produces: a `Catalog` of items and an `InteractionLog` of users.

Chronology rule, applied everywhere: a user's interactions are sorted by (timestamp, item id). Ties on
the timestamp are broken by item id, compared as integers when both ids are decimal digits (so "9"
precedes "10", matching numeric-id datasets) and otherwise as strings, digit ids first.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from itertools import groupby
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from promptrec.data.quality import DataQualityReport, csv_error, read_text_file
from promptrec.errors import DataError
from promptrec.models import Interaction, Item

CORE_FIELDS = ("id", "title", "text")


def item_id_sort_key(item_id: str) -> tuple[int, int, str]:
    if item_id.isascii() and item_id.isdigit():
        return (0, int(item_id), item_id)
    return (1, 0, item_id)


def interaction_sort_key(interaction: Interaction) -> tuple[float, tuple[int, int, str]]:
    """(timestamp, item id): the one chronological order used by every loader and split."""
    return (interaction.timestamp or 0.0, item_id_sort_key(interaction.item_id))


def _attribute_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, str | int | float) for part in value):
        return ", ".join(str(part) for part in value)
    return json.dumps(value, ensure_ascii=False)


class Catalog:
    """Item id -> Item, in the order the source listed them. Build it with `from_records` or `from_items`."""

    def __init__(self, items: Mapping[str, Item], quality: DataQualityReport | None = None):
        self._items = dict(items)
        self.ids: list[str] = list(self._items)
        self.quality = quality or DataQualityReport()

    @classmethod
    def from_records(
        cls,
        records: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        strict: bool = True,
        source: str = "",
        report: DataQualityReport | None = None,
    ) -> Catalog:
        """Build from (record label, raw mapping) pairs; keys other than id/title/text become attributes.

        strict: a duplicate id or a missing/empty title raises DataError naming the record.
        lenient: such records are skipped (a duplicated id keeps its first record) and counted in the report.
        """
        report = report or DataQualityReport(source=source)
        items: dict[str, Item] = {}
        for label, raw in records:
            item_id = raw.get("id")
            item_id = str(item_id).strip() if isinstance(item_id, str | int) else ""
            title = raw.get("title")
            if not item_id:
                if strict:
                    raise DataError(
                        "has no id; give every item a non-empty string or integer id",
                        path=source,
                        record=label,
                    )
                report.skip("record without an id", label)
                continue
            if item_id in items:
                if strict:
                    raise DataError(
                        f"id {item_id!r} is a duplicate; item ids must be unique", path=source, record=label
                    )
                report.duplicate_item_ids.add(f"{label}: id {item_id}")
                continue
            if not isinstance(title, str) or not title.strip():
                if strict:
                    raise DataError(
                        f"item {item_id!r} has a missing, empty or non-text title; every item needs one",
                        path=source,
                        record=label,
                    )
                report.missing_titles.add(f"{label}: id {item_id}")
                continue
            text = raw.get("text")
            attributes = {
                key: _attribute_text(value)
                for key, value in raw.items()
                if key not in CORE_FIELDS and value not in (None, "")
            }
            try:
                items[item_id] = Item(id=item_id, title=title, text=text or None, attributes=attributes)
            except ValidationError as exc:
                message = exc.errors()[0]["msg"]
                raise DataError(f"item {item_id!r} is invalid: {message}", path=source, record=label) from exc
        return cls(items, report)

    @classmethod
    def from_items(cls, items: Iterable[Item], *, source: str = "") -> Catalog:
        """Build from validated items; an id given twice must carry the same record, else DataError."""
        unique: dict[str, Item] = {}
        for item in items:
            known = unique.setdefault(item.id, item)
            if known != item:
                raise DataError(
                    f"item id {item.id!r} has two different records ({known.title!r} and "
                    f"{item.title!r}); an id must name one item",
                    path=source,
                    record=item.id,
                )
        return cls(unique, DataQualityReport(source=source))

    def __getitem__(self, item_id: str) -> Item:
        try:
            return self._items[item_id]
        except KeyError:
            raise DataError(f"item id {item_id!r} is not in the catalogue ({len(self)} items)") from None

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items.values())


def _jsonl_records(text: str, source: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"is not valid JSON ({exc.msg}); write one JSON object per line",
                path=source,
                record=f"line {number}",
            ) from exc
        if not isinstance(record, dict):
            raise DataError(
                "is not a JSON object; write one object per line", path=source, record=f"line {number}"
            )
        yield f"line {number}", record


def _csv_records(text: str, source: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        missing = [name for name in ("id", "title") if name not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"CSV header lacks column(s) {missing}; the header must include id,title[,text]",
                path=source,
                record="line 1",
            )
        for row in reader:
            # DictReader puts surplus cells under the None key: a row longer than the header.
            if None in row:
                raise DataError(
                    f"has more cells than the header's {len(reader.fieldnames or [])} columns; "
                    "quote cells that contain commas",
                    path=source,
                    record=f"line {reader.line_num}",
                )
            yield f"line {reader.line_num}", row
    except csv.Error as error:
        raise csv_error(error, source, reader.line_num) from None


def load_catalog(path: str | Path, *, strict: bool = True) -> Catalog:
    """Load a user-supplied item catalogue: `.jsonl` (an object per line) or `.csv` (id,title[,text])."""
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise DataError(f"unsupported catalogue format {suffix!r}; use .jsonl or .csv", path=source)
    text = read_text_file(path, what="item catalogue", encoding="utf-8-sig")
    records = _jsonl_records(text, source) if suffix == ".jsonl" else _csv_records(text, source)
    catalog = Catalog.from_records(records, strict=strict, source=source)
    if not len(catalog):
        raise DataError("holds no usable items; add at least one record with an id and a title", path=source)
    return catalog


class RawInteraction(NamedTuple):
    record: str  # where it came from, e.g. "line 12", for error messages
    user_id: str
    item_id: str
    timestamp: float
    rating: float | None = None


class InteractionLog:
    """A catalogue plus each user's interactions, sorted by (timestamp, item id); see the module doc."""

    def __init__(self, catalog: Catalog, histories: dict[str, list[Interaction]], quality: DataQualityReport):
        self.catalog = catalog
        self.histories = histories
        self.quality = quality

    @property
    def user_ids(self) -> list[str]:
        return list(self.histories)

    @property
    def interaction_count(self) -> int:
        return sum(len(history) for history in self.histories.values())

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[RawInteraction],
        catalog: Catalog,
        *,
        strict: bool = True,
        source: str = "",
        report: DataQualityReport | None = None,
    ) -> InteractionLog:
        """Group rows by user and sort them. An item missing from the catalogue raises DataError (strict)
        or is skipped and counted (lenient). Timestamp ties and repeats are kept and counted."""
        report = report or catalog.quality
        grouped: dict[str, list[RawInteraction]] = defaultdict(list)
        for row in rows:
            if row.item_id in catalog:
                grouped[row.user_id].append(row)
            elif strict:
                raise DataError(
                    f"user {row.user_id!r} interacted with item {row.item_id!r}, which is not in "
                    "the catalogue; add the item or load with strict=False to skip such rows",
                    path=source,
                    record=row.record,
                )
            else:
                report.unknown_history_items.add(f"{row.record}: user {row.user_id}, item {row.item_id}")
        item_keys = {item_id: item_id_sort_key(item_id) for item_id in catalog.ids}
        histories: dict[str, list[Interaction]] = {}
        for user_id, user_rows in grouped.items():
            user_rows.sort(key=lambda row: (row.timestamp, item_keys[row.item_id]))
            _count_ties_and_repeats(user_id, user_rows, report)
            histories[user_id] = [
                Interaction(item_id=row.item_id, timestamp=row.timestamp, rating=row.rating)
                for row in user_rows
            ]
        return cls(catalog, histories, report)


def _stamp(timestamp: float) -> str:
    return str(int(timestamp)) if timestamp.is_integer() else str(timestamp)


def _count_ties_and_repeats(user_id: str, rows: list[RawInteraction], report: DataQualityReport) -> None:
    """`rows` must already be sorted, so equal timestamps are adjacent."""
    tied_groups = []
    for stamp, group in groupby(rows, key=lambda row: row.timestamp):
        items = [row.item_id for row in group]
        if len(items) > 1:
            tied_groups.append(items)
            report.timestamp_ties.add(f"user {user_id} at {_stamp(stamp)}: items {', '.join(items)}")
    if tied_groups:
        report.users_with_timestamp_ties += 1
    if len(rows) > 1 and rows[-1].timestamp == rows[-2].timestamp:
        report.users_with_last_timestamp_tie.add(
            f"user {user_id}: items {', '.join(tied_groups[-1])} at {_stamp(rows[-1].timestamp)}; "
            f"target {rows[-1].item_id}"
        )
    if len({row.item_id for row in rows}) < len(rows):
        for item_id, times in Counter(row.item_id for row in rows).items():
            if times > 1:
                report.repeat_interactions.add(f"user {user_id}: item {item_id} x{times}")
