"""TALLRec instruction rows -> pointwise yes/no cases.

A row is {"instruction", "input", "output"}; its input reads
    User Preference: "t1", "t2"
    User Unpreference: "t3"
    Whether the user will like the target movie "X"?
and its output is "Yes." or "No.". Book rows write each entry as `"Title" written by Author` and wrap the
target once more in quotes; such an entry becomes the title `Title written by Author`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import Field, ValidationError, field_validator

from promptrec.data.quality import read_text_file
from promptrec.errors import DataError
from promptrec.models import Interaction, Item, RankMode, RankRequest, StrictModel, UserContext

INPUT_LAYOUT = re.compile(
    r"User Preference: (?P<liked>.*)\nUser Unpreference: (?P<disliked>.*)\n"
    r"Whether the user will like the target (?P<kind>\w+) (?P<target>.*)\?"
)
# A quoted title (a quote inside it is one not followed by an entry boundary), then an optional author.
ENTRY = re.compile(
    r'"(?P<title>(?:[^"]|"(?!(?: written by |, "|$)))*)"(?: written by (?P<author>(?:(?!, ").)*))?'
)
LABELS = {"yes": True, "no": False}


class PointwiseCase(StrictModel):
    """One yes/no question: would a user with these likes and dislikes like the target? `label` answers."""

    case_id: str
    liked_titles: list[str]
    disliked_titles: list[str]
    target_title: str = Field(min_length=1)
    label: bool

    @field_validator("liked_titles", "disliked_titles")
    @classmethod
    def _titles_not_empty(cls, titles: list[str]) -> list[str]:
        if any(not title for title in titles):
            raise ValueError("a liked or disliked title is empty")
        return titles

    def user_context(self) -> UserContext:
        """Likes then dislikes (TALLRec keeps no order between the two lists); each item's id is its title."""
        history = [Interaction(item_id=title, event="like") for title in self.liked_titles]
        history += [Interaction(item_id=title, event="dislike") for title in self.disliked_titles]
        return UserContext(history=history)  # TALLRec rows carry no user id

    def history_items(self) -> list[Item]:
        titles = dict.fromkeys(self.liked_titles + self.disliked_titles)
        return [Item(id=title, title=title) for title in titles]

    def target_item(self) -> Item:
        return Item(id=self.target_title, title=self.target_title)

    def to_request(self, mode: RankMode = RankMode.POINTWISE, template: str | None = None) -> RankRequest:
        """The question as a one-candidate request; the label never enters it."""
        return RankRequest(
            user=self.user_context(),
            candidates=[self.target_item()],
            history_items=self.history_items(),
            mode=mode,
            template=template,
        )


def parse_title_list(text: str) -> list[str] | None:
    """`"a", "b" written by c` -> ["a", "b written by c"]; None when the text is not exactly such a list."""
    if not text.strip():
        return []
    entries = list(ENTRY.finditer(text))
    if ", ".join(entry.group(0) for entry in entries) != text:
        return None
    return [
        f"{entry['title']} written by {entry['author']}" if entry["author"] else entry["title"]
        for entry in entries
    ]


def _parse_target(text: str) -> str | None:
    # Book targets wrap the whole `"Title" written by Author` entry in one more pair of quotes.
    if text.startswith('""') and text.endswith('"'):
        inner = parse_title_list(text[1:-1])
        if inner is not None and len(inner) == 1 and " written by " in inner[0]:
            return inner[0]
    titles = parse_title_list(text)
    return titles[0] if titles is not None and len(titles) == 1 else None


def _case_from_row(index: int, row: object, source: str) -> PointwiseCase:
    record = f"row {index}"
    if (
        not isinstance(row, dict)
        or not isinstance(row.get("input"), str)
        or not isinstance(row.get("output"), str)
    ):
        raise DataError(
            "must be an object with string fields 'input' and 'output'", path=source, record=record
        )
    layout = INPUT_LAYOUT.fullmatch(row["input"].strip())
    if layout is None:
        raise DataError(
            'input does not follow the TALLRec layout (User Preference: "..." / User Unpreference: '
            '"..." / Whether the user will like the target movie "..."?)',
            path=source,
            record=record,
        )
    liked, disliked = parse_title_list(layout["liked"]), parse_title_list(layout["disliked"])
    target = _parse_target(layout["target"])
    if liked is None or disliked is None or target is None:
        raise DataError(
            'a title list is not a comma-separated list of "quoted" titles', path=source, record=record
        )
    label = LABELS.get(row["output"].strip().rstrip(".").lower())
    if label is None:
        raise DataError(f"output {row['output']!r} is neither 'Yes.' nor 'No.'", path=source, record=record)
    try:
        return PointwiseCase(
            case_id=str(index), liked_titles=liked, disliked_titles=disliked, target_title=target, label=label
        )
    except ValidationError as exc:
        raise DataError(f"is invalid: {exc.errors()[0]['msg']}", path=source, record=record) from exc


def load_tallrec(path: str | Path) -> list[PointwiseCase]:
    """Load a TALLRec `{valid,test}.json` file (a JSON list of rows); case ids are the row indices."""
    path = Path(path)
    source = str(path)
    try:
        rows = json.loads(read_text_file(path, what="TALLRec file"))
    except json.JSONDecodeError as exc:
        raise DataError(f"is not valid JSON ({exc.msg} at line {exc.lineno})", path=source) from exc
    if not isinstance(rows, list) or not rows:
        raise DataError("must be a non-empty JSON list of {instruction, input, output} rows", path=source)
    return [_case_from_row(index, row, source) for index, row in enumerate(rows)]
