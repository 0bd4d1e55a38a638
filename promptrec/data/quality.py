"""What a loader did not take in as-is, and the guard that turns file-system failures into DataError.

Loaders never drop anything silently: every record they skip, and every oddity they resolve by a rule
(timestamp ties, repeated interactions), is counted in a `DataQualityReport` with a few examples, or
the loader raises a `DataError` naming the record.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from promptrec.errors import DataError

MAX_EXAMPLES = 5


class IssueTally(BaseModel):
    """How often one kind of issue occurred, with the first few records as examples."""

    model_config = ConfigDict(extra="forbid")

    count: int = 0
    examples: list[str] = Field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)


class DataQualityReport(BaseModel):
    """Counts and examples of every issue met while loading one data source.

    Each skipped record is counted in exactly one tally: `duplicate_item_ids`, `missing_titles`,
    `unknown_history_items` (lenient mode only; strict mode raises instead) or `skipped` (by reason).
    Timestamp ties and repeated interactions are kept and only counted.
    """

    model_config = ConfigDict(extra="forbid")

    source: str = ""
    duplicate_item_ids: IssueTally = Field(default_factory=IssueTally)
    missing_titles: IssueTally = Field(default_factory=IssueTally)
    unknown_history_items: IssueTally = Field(
        default_factory=IssueTally, description="Interactions whose item is not in the catalogue (skipped)."
    )
    timestamp_ties: IssueTally = Field(
        default_factory=IssueTally,
        description="(user, timestamp) groups holding more than one interaction; ordered by item id.",
    )
    users_with_timestamp_ties: int = 0
    users_with_last_timestamp_tie: IssueTally = Field(
        default_factory=IssueTally,
        description="Users whose latest timestamp is shared by several items: their leave-one-out target "
        "is decided by the item-id tie-break.",
    )
    repeat_interactions: IssueTally = Field(
        default_factory=IssueTally, description="Same user and item more than once (kept)."
    )
    skipped: dict[str, IssueTally] = Field(
        default_factory=dict, description="Other skipped records, by reason."
    )

    def skip(self, reason: str, example: str) -> None:
        self.skipped.setdefault(reason, IssueTally()).add(example)

    @property
    def records_skipped(self) -> int:
        dropped = (self.duplicate_item_ids, self.missing_titles, self.unknown_history_items)
        return sum(tally.count for tally in dropped) + sum(tally.count for tally in self.skipped.values())

    def summary(self) -> str:
        """One line per non-empty tally, for logs and CLI output."""
        lines = [f"data quality for {self.source or 'unnamed source'}:"]
        named = {
            "duplicate item ids (skipped)": self.duplicate_item_ids,
            "missing titles (skipped)": self.missing_titles,
            "history items not in catalogue (skipped)": self.unknown_history_items,
            "timestamp ties (kept, ordered by item id)": self.timestamp_ties,
            "users whose last timestamp is tied": self.users_with_last_timestamp_tie,
            "repeated user-item interactions (kept)": self.repeat_interactions,
        }
        named.update({f"skipped: {reason}": tally for reason, tally in self.skipped.items()})
        for label, tally in named.items():
            if tally.count:
                lines.append(f"  {label}: {tally.count} (e.g. {'; '.join(tally.examples)})")
        if self.users_with_timestamp_ties:
            lines.append(f"  users with any timestamp tie: {self.users_with_timestamp_ties}")
        if len(lines) == 1:
            lines.append("  no issues")
        return "\n".join(lines)


def read_text_file(path: Path, *, what: str, encoding: str = "utf-8") -> str:
    """Read a whole data file, turning every OS or decoding failure into a DataError naming the path."""
    shown = str(path)
    if not path.exists():
        raise DataError(
            f"{what} not found; check the path (relative paths resolve from {Path.cwd()})", path=shown
        )
    if path.is_dir():
        raise DataError(f"{what} expected a file but this is a folder; pass the file inside it", path=shown)
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{what} is not valid {encoding} (byte {exc.start}); re-save it as {encoding}", path=shown
        ) from exc
    except OSError as exc:
        raise DataError(f"{what} cannot be read ({exc.strerror}); check its permissions", path=shown) from exc


def csv_error(error: csv.Error, source: str, line: int) -> DataError:
    """A csv module failure (bad quoting, a field over csv's size limit) as a DataError naming the line."""
    return DataError(
        f"is not readable CSV ({error}); check the delimiter, the quoting and the field sizes",
        path=source,
        record=f"line {line}",
    )


def csv_rows(text: str, source: str) -> Iterator[list[str]]:
    """csv.reader over `text`, raising DataError instead of csv.Error."""
    reader = csv.reader(io.StringIO(text))
    try:
        yield from reader
    except csv.Error as error:
        raise csv_error(error, source, reader.line_num) from None
