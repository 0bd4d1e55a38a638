"""RecBole atomic files: `.item` catalogues and `.inter` interaction files.

Headers name each tab-separated column as `name:type` (e.g. `user_id:token	item_id:token	timestamp:float`).
An `.inter` file comes in one of two forms:
  atomic   -- one interaction per row (user_id, item_id, timestamp[, rating]);
  sequence -- LLMRank's form, one user per row: `item_id_list:token_seq` is the chronological history
              (space-separated ids) and `item_id` the next item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

from promptrec.data.catalog import Catalog, InteractionLog, RawInteraction
from promptrec.data.quality import DataQualityReport, read_text_file
from promptrec.errors import DataError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
TITLE_FIELDS = ("title", "movie_title", "item_name")


class UserSequence(NamedTuple):
    record: str  # e.g. "line 7"
    user_id: str
    history: tuple[str, ...]  # chronological
    next_item: str


class AtomicTable(NamedTuple):
    fields: list[str]
    rows: list[tuple[str, list[str]]]  # (record label, cells)


def read_atomic_table(path: Path, *, what: str) -> AtomicTable:
    """Parse the `name:type` header and split rows into cells; a row of the wrong width is a DataError."""
    lines = read_text_file(path, what=what).splitlines()
    if not lines:
        raise DataError(f"{what} is empty; the first line must be a `name:type` header", path=str(path))
    fields = []
    for column in lines[0].split("\t"):
        name, _, kind = column.strip().partition(":")
        if kind not in FIELD_TYPES:
            raise DataError(
                f"header column {column!r} is not `name:type` with type in {FIELD_TYPES}",
                path=str(path),
                record="line 1",
            )
        fields.append(name)
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(fields):
            raise DataError(
                f"has {len(cells)} tab-separated cells but the header has {len(fields)}",
                path=str(path),
                record=f"line {number}",
            )
        rows.append((f"line {number}", [cell.strip() for cell in cells]))
    return AtomicTable(fields, rows)


def _column(table: AtomicTable, name: str, path: Path, hint: str) -> int:
    if name not in table.fields:
        raise DataError(
            f"header lacks the {name!r} field (has {table.fields}); {hint}", path=str(path), record="line 1"
        )
    return table.fields.index(name)


def inter_form(path: Path) -> Literal["atomic", "sequence"]:
    header = read_text_file(path, what="RecBole .inter file").partition("\n")[0]
    names = {column.partition(":")[0].strip() for column in header.split("\t")}
    return "sequence" if "item_id_list" in names else "atomic"


def find_item_file(inter_path: Path) -> Path:
    """The `.item` file beside an `.inter` file: `Games-6k.test.inter` tries Games-6k.test.item,
    Games-6k.item and Games.item, in that order."""
    stem = inter_path.name.removesuffix(".inter")
    names = [stem, stem.split(".")[0], stem.split(".")[0].split("-")[0]]
    tried = [inter_path.with_name(f"{name}.item") for name in dict.fromkeys(names)]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise DataError(
        f"no RecBole .item file beside it (tried {', '.join(p.name for p in tried)}); "
        "put the catalogue next to the .inter file under one of those names",
        path=str(inter_path),
    )


def load_item_file(path: Path, *, strict: bool = True, report: DataQualityReport | None = None) -> Catalog:
    """`.item` -> Catalog. The title comes from the first of TITLE_FIELDS present, a `text` field becomes
    the item text, other fields are attributes."""
    table = read_atomic_table(path, what="RecBole .item file")
    _column(table, "item_id", path, "name the id column item_id:token")
    title_field = next((name for name in TITLE_FIELDS if name in table.fields), None)
    if title_field is None:
        raise DataError(
            f"header has no title field (has {table.fields}); add one of {TITLE_FIELDS}",
            path=str(path),
            record="line 1",
        )
    # A field literally called id or title (besides the chosen ones) would clobber them: prefix it.
    keys = [
        "id"
        if name == "item_id"
        else "title"
        if name == title_field
        else f"item_{name}"
        if name in ("id", "title")
        else name
        for name in table.fields
    ]
    records = ((label, dict(zip(keys, cells, strict=True))) for label, cells in table.rows)
    return Catalog.from_records(records, strict=strict, source=str(path), report=report)


def load_atomic_inter(
    path: Path, catalog: Catalog, *, strict: bool = True, report: DataQualityReport | None = None
) -> InteractionLog:
    """Atomic `.inter` (one interaction per row) -> InteractionLog; a timestamp field is required."""
    table = read_atomic_table(path, what="RecBole .inter file")
    user = _column(table, "user_id", path, "name the user column user_id:token")
    item = _column(table, "item_id", path, "name the item column item_id:token")
    stamp = _column(table, "timestamp", path, "leave-one-out needs chronology: add a timestamp:float column")
    rating = table.fields.index("rating") if "rating" in table.fields else None
    report = report or catalog.quality

    def rows() -> list[RawInteraction]:
        parsed = []
        for label, cells in table.rows:
            try:
                score = float(cells[rating]) if rating is not None and cells[rating] else None
                parsed.append(RawInteraction(label, cells[user], cells[item], float(cells[stamp]), score))
            except ValueError as exc:
                if strict:
                    raise DataError(
                        f"has a non-numeric timestamp or rating ({exc}); fix the row or load with "
                        "strict=False to skip it",
                        path=str(path),
                        record=label,
                    ) from exc
                report.skip("non-numeric timestamp or rating", label)
        return parsed

    return InteractionLog.from_rows(rows(), catalog, strict=strict, source=str(path), report=report)


def load_sequence_inter(
    path: Path, *, strict: bool = True, report: DataQualityReport | None = None
) -> list[UserSequence]:
    """Sequence `.inter` (user_id, item_id_list, item_id) -> one UserSequence per user, in file order."""
    table = read_atomic_table(path, what="RecBole sequence .inter file")
    user = _column(table, "user_id", path, "name the user column user_id:token")
    history = _column(table, "item_id_list", path, "name the history column item_id_list:token_seq")
    item = _column(table, "item_id", path, "name the next-item column item_id:token")
    report = report or DataQualityReport(source=str(path))
    sequences: list[UserSequence] = []
    seen: set[str] = set()
    for label, cells in table.rows:
        problem = (
            "empty user or next-item id"
            if not cells[user] or not cells[item]
            else "user appears on an earlier line"
            if cells[user] in seen
            else None
        )
        if problem:
            if strict:
                raise DataError(
                    f"{problem} (user {cells[user]!r}); each line must hold one distinct user",
                    path=str(path),
                    record=label,
                )
            report.skip(problem, f"{label}: user {cells[user]!r}")
            continue
        seen.add(cells[user])
        sequences.append(UserSequence(label, cells[user], tuple(cells[history].split()), cells[item]))
    return sequences
