"""The parse stage: read a ranking of candidates out of whatever text the model wrote.

A *reading* cuts the answer into *mentions*, strings that should each name one candidate:
  json_array     elements of a JSON array, read leniently (prose or ``` fences around it, truncation,
                 unquoted tokens, nested arrays flattened, objects read through their "id", "item_id",
                 "label", "candidate", "item", "title" or "name" key). Each array is a reading.
  numbered_list  "1. C", "2) [B] Title", "#3: ..." at line starts, or one line "1. C 2. A" counting 1, 2...
                 A number is a list marker only before `.` `)` `:` `]` or " - ", so "1. 12526" is id 12526
                 at position 1 and a bare line "10" is id 10.
  bulleted_list  lines opening with -, *, + or a bullet character.
  bracketed      every "[X]" in the text.
  separated      pieces between newlines and , ; | > -> => → » ("C > A > B"). A piece of identifiers and
                 spaces ("C A B") gives one mention each; a piece naming nothing is split at colons.
The reading that places the most distinct candidates wins; ties go to the contract's declared format,
then to the order above. If none places anything, the separated reading (the whole text) is reported.

Resolving a mention (first rule that matches wins):
  1. Stripped of quotes, markdown, trailing punctuation and wrapping brackets, it *is* an identifier
     (exact, else case-insensitive if unambiguous), maybe after "Candidate", "Item", "Option", "ID", "#".
  2. It is a title, normalised (HTML entities, Unicode forms, case, punctuation, spacing ignored), also
     without a trailing "(1995)" and with a trailing ", The" moved to the front.
  3. It opens with an identifier in brackets ("[B] ...", "(B) ...") or before a separator ("B: ...",
     "B. ...", "B) ...", "B | ...", "B - ..."); the identifier wins over any title that follows.
  4. It contains a whole normalised title at word boundaries (longest wins), if that title is
     distinctive: one word of >= 8 characters or several words of >= 6 (so "Home" is not found in prose).
  5. Fuzzy: rapidfuzz ratio >= FUZZY_THRESHOLD between a title and the mention (or its part before
     " - ", ": ", " ("), and every number in the mention is in the title: "Half-Life 3" is not "Half-Life 2".
Identifiers are what the contract named candidates by, never the other: labels (labels[i] names
candidates[i]; labels past the last candidate are invalid; candidates past the last label have only their
titles) or ids. Identifiers beat titles. A label is recognised only as a whole mention (array element,
list item, separated piece), in brackets or before a separator: "A great game" and "The answer is C"
contain no label, and a list marker ("1." in "1. 2") is never read as an identifier.
Counting: a mention naming no candidate is invalid; one whose candidates are all placed is a duplicate;
one naming several (a shared title, a fuzzy tie) takes the first not yet placed.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from itertools import islice
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz import fuzz, process

from promptrec.errors import TemplateError
from promptrec.models import Item
from promptrec.prompting.contract import OutputContract

FUZZY_THRESHOLD = 90.0
_MIN_CONTAINED_WORD = 8  # a one-word title is found inside longer text only from this length
_MIN_CONTAINED_PHRASE = 6
_MIN_FUZZY_CHARS = 4
_MAX_FUZZY_CHARS = 300  # longer mentions are prose: no title of interest is fuzzily that long

_TRAILING_PARENTHESIS = re.compile(r"\s*\([^()]*\)\s*$")
_TRAILING_ARTICLE = re.compile(r"^(?P<body>.+),\s*(?P<article>the|an?|les?|la|il|el|die|der|das)\s*$", re.I)
_NON_WORD = re.compile(r"[\W_]+")
_NUMBER = re.compile(r"\d+")
_ALNUM = re.compile(r"[^\W_]")
_QUOTES = "\"'“”‘’„«» \t\r\n"
_NAMING_PREFIX = re.compile(
    r"^(?:(?:candidate|item|option|label|choice|id)\b\s*(?:id\b)?\s*[:#]?|#)\s*", re.I
)
# No unbounded quantifier before a fixed token in these three: they must stay linear on hostile text.
_LEADING_BRACKET = re.compile(r"[\[(](?P<head>[^\[\]()]+)[\])]")
_HEAD_SEPARATOR = re.compile(r"[:)|]|\.(?=\s)|\s[-–—]+(?=\s)")
_EXPLANATION = re.compile(r"\s[-–—]\s|:\s|\s\(")
_JSON_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"?')
_BARE_TOKEN = re.compile(r'[^,\[\]{}"\n]+')
_OBJECT_KEYS = ("id", "item_id", "label", "candidate", "item", "title", "name")
_OBJECT_KEY = re.compile(
    rf'"({"|".join(_OBJECT_KEYS)})"\s*:\s*(?:"(?P<string>(?:[^"\\]|\\.)*)"?|(?P<bare>[^,}}\]\s]+))'
)
_LINE_MARKER = re.compile(
    r"^[ \t>*]*(?:#\s*)?(?:rank\s*)?\d{1,3}\s*(?:[.):\]]|\s[-–—])\**(?:[ \t]+|(?=[^\d\s]))(?P<rest>\S.*)$",
    re.M | re.I,
)
_INLINE_MARKER = re.compile(r"(?:^|(?<=\s))#?(?P<number>\d{1,3})[.):](?=\s)")
_BULLET = re.compile(r"^[ \t]*[-*+•·‣▪◦][ \t]+(?P<rest>\S.*)$", re.M)
_BRACKETED = re.compile(r"\[([^\[\]\n]{1,80})\]")
_SEPARATORS = re.compile(r"\n|,|;|\||->|=>|→|»|>")


Reading = Literal["json_array", "numbered_list", "bulleted_list", "bracketed", "separated"]


class ParsedAnswer(BaseModel):
    """Valid, de-duplicated candidate ids in the order the model gave them, and what was thrown away."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ordered_ids: list[str]
    invalid_count: int = Field(ge=0, description="Mentions that matched no candidate.")
    duplicate_count: int = Field(ge=0, description="Mentions of candidates already placed.")
    reading: Reading = Field(description="Which reading of the text gave the ranking (see module docstring).")


def normalise_title(text: str) -> str:
    """Case-, punctuation-, spacing- and entity-insensitive form used for every title comparison."""
    folded = unicodedata.normalize("NFKC", html.unescape(text)).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())


def _clean(raw: str) -> str:
    text = raw.replace("*", "").replace("`", "").strip(_QUOTES).rstrip(".,;!?").strip(_QUOTES)
    for opening, closing in ("[]", "()", "{}", "<>"):
        inner = text[1:-1]
        if text[:1] == opening and text[-1:] == closing and opening not in inner and closing not in inner:
            text = inner.strip(_QUOTES)
    return text


def _title_keys(title: str) -> set[str]:
    """Normalised forms of a title: as given, without a trailing "(1995)", and with a catalogue-style
    trailing article moved to the front ("Matrix, The (1999)" -> "the matrix"), as models write them."""
    forms = {title, _TRAILING_PARENTHESIS.sub("", title)}
    moved = (_TRAILING_ARTICLE.match(form) for form in forms)
    forms |= {f"{found['article']} {found['body']}" for found in moved if found}
    return {key for form in forms if (key := normalise_title(form))}


def _containable(key: str) -> bool:
    """Titles distinctive enough to be found inside longer text ("Home" or "It" would be found in prose)."""
    return len(key) >= _MIN_CONTAINED_WORD or (" " in key and len(key) >= _MIN_CONTAINED_PHRASE)


class _Resolver:
    """Maps one mention to the indices of the candidates it names (see "Resolving a mention" above)."""

    def __init__(self, candidates: Sequence[Item], contract: OutputContract):
        by_ids = contract.identifiers == "ids"
        names = [item.id for item in candidates] if by_ids else contract.labels[: len(candidates)]
        self._exact = {name: index for index, name in enumerate(names)}
        self._head_window = max(map(len, names), default=0) + 24  # room for "Candidate #" and spacing
        folded = Counter(name.casefold() for name in names)
        self._folded = {
            name.casefold(): index for index, name in enumerate(names) if folded[name.casefold()] == 1
        }
        self._titles: dict[str, list[int]] = {}
        for index, item in enumerate(candidates):
            for key in _title_keys(item.title):
                self._titles.setdefault(key, []).append(index)
        self._title_keys = list(self._titles)
        self._containable = [key for key in self._title_keys if _containable(key)]
        self._title_numbers = {key: set(_NUMBER.findall(key)) for key in self._titles}
        self.resolve = cache(self._resolve)  # models repeat themselves; each distinct mention resolves once

    def identifier(self, text: str) -> int | None:
        text = text.strip()
        for form in (text, _clean(text), _clean(_NAMING_PREFIX.sub("", text, count=1))):
            index = self._exact.get(form, self._folded.get(form.casefold()))
            if index is not None:
                return index
        return None

    def _resolve(self, mention: str) -> tuple[int, ...]:
        if (index := self.identifier(mention)) is not None:
            return (index,)
        text = _clean(mention)
        if not _ALNUM.search(text):
            return ()
        key = normalise_title(text)
        if key in self._titles:
            return self._indices([key])
        window = text[: self._head_window]
        bracketed = _LEADING_BRACKET.match(window)
        heads = [bracketed["head"]] if bracketed else []
        heads += [window[: match.start()] for match in islice(_HEAD_SEPARATOR.finditer(window), 3)]
        for head in heads:
            if (index := self.identifier(head)) is not None:
                return (index,)
        padded = f" {key} "
        contained = [title for title in self._containable if f" {title} " in padded]
        if contained:
            longest = len(max(contained, key=len))
            return self._indices(title for title in contained if len(title) == longest)
        return self._fuzzy({key, normalise_title(_EXPLANATION.split(text, maxsplit=1)[0])})

    def _fuzzy(self, queries: set[str]) -> tuple[int, ...]:
        best_score, best_titles = 0.0, []
        for query in queries:
            if not _MIN_FUZZY_CHARS <= len(query) <= _MAX_FUZZY_CHARS:
                continue
            numbers = set(_NUMBER.findall(query))
            matches = process.extract(
                query, self._title_keys, scorer=fuzz.ratio, limit=None, score_cutoff=FUZZY_THRESHOLD
            )
            for title, score, _ in matches:
                if not numbers <= self._title_numbers[title] or score < best_score:
                    continue
                if score > best_score:
                    best_score, best_titles = score, []
                best_titles.append(title)
        return self._indices(best_titles)

    def _indices(self, titles: Iterable[str]) -> tuple[int, ...]:
        return tuple(dict.fromkeys(index for title in titles for index in self._titles[title]))


# --- readings: text -> lists of mentions -------------------------------------------------------------
def _decode_json_string(body: str) -> str:
    try:
        return json.loads(f'"{body}"')
    except ValueError:
        return body


def _object_mention(text: str, start: int) -> tuple[str, int]:
    """The identifying value of the object opening at `start` (or its raw text), and where it ends."""
    depth, position = 0, start
    while position < len(text):
        if text[position] == '"':
            position = _JSON_STRING.match(text, position).end()
            continue
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        position += 1
        if depth == 0:
            break
    body = text[start:position]
    found = {match[1]: match for match in _OBJECT_KEY.finditer(body)}
    value = next((found[key] for key in _OBJECT_KEYS if key in found), None)
    if value is None:
        return body, position
    return (value["bare"] if value["bare"] is not None else _decode_json_string(value["string"])), position


def _scan_array(text: str, start: int) -> tuple[list[str], int]:
    """Elements of the array opening at `start`, nested arrays flattened; tolerates truncation."""
    mentions: list[str] = []
    depth, position = 0, start
    while position < len(text):
        char = text[position]
        if char in "[]":
            depth += 1 if char == "[" else -1
            position += 1
            if depth == 0:
                break
        elif char == '"':
            match = _JSON_STRING.match(text, position)
            mentions.append(_decode_json_string(match[1]))
            position = match.end()
        elif char == "{":
            mention, position = _object_mention(text, position)
            mentions.append(mention)
        elif char in ", \t\r\n}":
            position += 1
        else:
            match = _BARE_TOKEN.match(text, position)
            if match[0].strip():
                mentions.append(match[0].strip())
            position = match.end()
    return mentions, position


def _json_readings(text: str, resolver: _Resolver) -> list[list[str]]:
    readings, position = [], text.find("[")
    while position != -1:
        mentions, position = _scan_array(text, position)
        readings.append(mentions)
        position = text.find("[", position)
    return readings


def _numbered_readings(text: str, resolver: _Resolver) -> list[list[str]]:
    lines = [match["rest"] for match in _LINE_MARKER.finditer(text)]
    if len(lines) >= 2:
        return [lines]
    chain: list[re.Match[str]] = []
    for match in _INLINE_MARKER.finditer(text):
        if int(match["number"]) == len(chain) + 1:
            chain.append(match)
    if not chain:
        return []
    ends = [match.start() for match in chain[1:]] + [len(text)]
    items = [
        text[match.end() : end].strip().split("\n", 1)[0] for match, end in zip(chain, ends, strict=True)
    ]
    return [[item for item in items if item]]


def _separated_readings(text: str, resolver: _Resolver) -> list[list[str]]:
    mentions: list[str] = []
    for piece in _SEPARATORS.split(text):
        marked = _LINE_MARKER.match(piece) or _BULLET.match(piece)  # a list marker is never an identifier
        piece = marked["rest"] if marked else piece
        if _ALNUM.search(piece):
            parts = [piece] if resolver.resolve(piece) else [p for p in piece.split(":") if _ALNUM.search(p)]
            mentions += [mention for part in parts for mention in _identifier_run(part, resolver)]
    return [mentions]


def _identifier_run(part: str, resolver: _Resolver) -> list[str]:
    """ "C A B" -> ["C", "A", "B"] when every word is an identifier (and the whole part is not one)."""
    words = part.split()
    run = len(words) > 1 and all(resolver.identifier(word) is not None for word in words)
    return words if run and resolver.identifier(part) is None else [part]


_READERS: dict[Reading, Callable[[str, _Resolver], list[list[str]]]] = {
    "json_array": _json_readings,
    "numbered_list": _numbered_readings,
    "bulleted_list": lambda text, _: [[match["rest"] for match in _BULLET.finditer(text)]],
    "bracketed": lambda text, _: [_BRACKETED.findall(text)],
    "separated": _separated_readings,
}


def _place(
    reading: Reading, mentions: list[str], resolver: _Resolver, candidates: Sequence[Item]
) -> ParsedAnswer:
    placed: list[int] = []
    seen: set[int] = set()
    invalid = duplicates = 0
    for mention in mentions:
        options = resolver.resolve(mention)
        free = next((index for index in options if index not in seen), None)
        if not options:
            invalid += 1
        elif free is None:
            duplicates += 1
        else:
            seen.add(free)
            placed.append(free)
    return ParsedAnswer(
        ordered_ids=[candidates[index].id for index in placed],
        invalid_count=invalid,
        duplicate_count=duplicates,
        reading=reading,
    )


def parse_answer(text: str, candidates: Sequence[Item], contract: OutputContract) -> ParsedAnswer:
    """Read the model's ranking of `candidates` from `text` under `contract`; never raises on bad text.

    `text` is what the model generated; the contract's answer_prefix (already in the prompt) is put back
    in front unless the text repeats it, so a prefix such as '["' is read as part of the answer.
    """
    declared = contract.format.value
    if declared not in ("json_array", "numbered_list"):
        raise TemplateError(
            f"contract format {declared!r} is scored, not written: only 'json_array' and 'numbered_list' "
            "answers are parsed; rank score-mode outputs with promptrec.aggregate.rank_by_scores"
        )
    if not text.startswith(contract.answer_prefix):
        text = contract.answer_prefix + text
    resolver = _Resolver(candidates, contract)
    order = [declared, *(name for name in _READERS if name != declared)]
    results = [
        _place(name, mentions, resolver, candidates)
        for name in order
        for mentions in _READERS[name](text, resolver)
    ]
    best = max(results, key=lambda parsed: len(parsed.ordered_ids))  # the first of equals: declared first
    return best if best.ordered_ids else results[-1]  # results[-1]: the separated reading of the whole text
