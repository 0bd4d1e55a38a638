"""Facets: catalogue attributes a request can name ("a 90s comedy", "for the Nintendo Switch").

Each item's facets are read from the catalogue itself: its year (a `year` attribute or a trailing
"(1995)" in the title, as MovieLens writes it), its genres (a `genres`/`genre`/`categories`/`category`
attribute, split on "|" or ","), and its platforms (a known platform named in the title, as Amazon game
titles do: "... - PlayStation 4"). A request is read by rules into a typed `FacetFilter`; only genres and
platforms the catalogue actually holds can be extracted, so a filter never asks for something absent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import Field

from promptrec.models import Item, StrictModel

GENRE_ATTRIBUTES = ("genres", "genre", "categories", "category")

# Request words for a genre, keyed by the genre's normalised name; the name itself always counts too.
GENRE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "comedy": ("comedy", "comedies", "funny"),
    "animation": ("animated", "animation", "cartoon", "cartoons"),
    "children": ("kids", "kid", "children", "child", "family"),
    "sci-fi": ("sci-fi", "sci fi", "scifi", "science fiction", "science-fiction"),
    "documentary": ("documentary", "documentaries", "docu"),
    "horror": ("horror", "scary"),
    "romance": ("romance", "romantic", "love story"),
    "thriller": ("thriller", "thrillers"),
    "western": ("western", "westerns"),
    "musical": ("musical", "musicals"),
    "mystery": ("mystery", "mysteries"),
    "adventure": ("adventure", "adventures"),
    "drama": ("drama", "dramas"),
    "film-noir": ("film noir", "film-noir", "noir"),
    "war": ("war film", "war movie", "war"),
}

# Canonical platform -> pattern in an item title; request patterns add common short names.
PLATFORM_TITLE_PATTERNS: dict[str, str] = {
    "Nintendo Switch": r"nintendo switch",
    "PlayStation 4": r"playstation 4|\bps4\b",
    "PlayStation 3": r"playstation 3|\bps3\b",
    "PlayStation 2": r"playstation 2|\bps2\b",
    "PlayStation Vita": r"playstation vita|\bps vita\b",
    "Xbox One": r"xbox one",
    "Xbox 360": r"xbox 360",
    "Wii U": r"\bwii u\b",
    "Wii": r"\bwii\b(?!\s*u\b)",
    "Nintendo 3DS": r"\b3ds\b",
    "Nintendo DS": r"nintendo ds\b|\bnds\b",
    "Game Boy Advance": r"game ?boy advance|\bgba\b",
    "PC": r"\bpc\b|\bwindows\b",
    "Mac": r"\bmac\b",
}
PLATFORM_REQUEST_EXTRA: dict[str, str] = {
    "Nintendo Switch": r"\bswitch\b",
    "PlayStation 4": r"\bps 4\b",
    "Xbox One": r"\bxbone\b",
}

_WORD_DECADES = {
    "twenties": 1920,
    "thirties": 1930,
    "forties": 1940,
    "fifties": 1950,
    "sixties": 1960,
    "seventies": 1970,
    "eighties": 1980,
    "nineties": 1990,
}
_DECADE = re.compile(r"\b(?:(19|20)(\d)0|(\d)0)'?s\b")
_YEAR_RANGE = re.compile(r"\b(from|in|before|after|since)\s+((?:19|20)\d\d)\b(?!'?s)")
_TITLE_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


def normalise_genre(name: str) -> str:
    return re.sub(r"'s\b", "", name.strip().lower()).replace(" ", "-")


@dataclass(frozen=True)
class ItemFacets:
    year: int | None
    genres: frozenset[str]  # normalised names
    platforms: frozenset[str]  # canonical names


def item_genres(item: Item) -> list[str]:
    """The item's genre names as the catalogue spells them."""
    for attribute in GENRE_ATTRIBUTES:
        value = item.attributes.get(attribute)
        if value:
            return [part.strip() for part in re.split(r"[|,]", value) if part.strip()]
    return []


def item_facets(item: Item) -> ItemFacets:
    year: int | None = None
    stated = item.attributes.get("year", "").strip()
    if stated.isdigit():
        year = int(stated)
    elif match := _TITLE_YEAR.search(item.title):
        year = int(match.group(1))
    title = item.title.lower()
    platforms = frozenset(
        name for name, pattern in PLATFORM_TITLE_PATTERNS.items() if re.search(pattern, title)
    )
    return ItemFacets(year, frozenset(normalise_genre(name) for name in item_genres(item)), platforms)


class FacetFilter(StrictModel):
    """What a request asks of the items: all `genres`, a year range, any of `platforms`."""

    genres: list[str] = Field(default_factory=list, description="Normalised genre names; all required.")
    year_from: int | None = None
    year_to: int | None = None
    platforms: list[str] = Field(default_factory=list, description="Canonical platforms; any one suffices.")
    evidence: list[str] = Field(default_factory=list, description="The request phrases that set the facets.")

    @property
    def is_empty(self) -> bool:
        return not (self.genres or self.platforms) and self.year_from is None and self.year_to is None

    def matches(self, facets: ItemFacets) -> bool:
        if not set(self.genres) <= facets.genres:
            return False
        if self.platforms and not facets.platforms & set(self.platforms):
            return False
        if self.year_from is not None or self.year_to is not None:
            if facets.year is None:
                return False
            if self.year_from is not None and facets.year < self.year_from:
                return False
            if self.year_to is not None and facets.year > self.year_to:
                return False
        return True


@dataclass(frozen=True)
class FacetVocabulary:
    """The genres and platforms a catalogue holds: the only values extraction may produce."""

    genres: frozenset[str]
    platforms: frozenset[str]
    has_years: bool

    @classmethod
    def of(cls, facets: Iterable[ItemFacets]) -> FacetVocabulary:
        genres: set[str] = set()
        platforms: set[str] = set()
        has_years = False
        for facet in facets:
            genres |= facet.genres
            platforms |= facet.platforms
            has_years = has_years or facet.year is not None
        return cls(frozenset(genres), frozenset(platforms), has_years)


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(phrase).replace(r"\ ", r"[\s-]+") + r"(?![\w-])")


def extract_facets(request: str, vocabulary: FacetVocabulary) -> FacetFilter:
    """Read genres, a decade or year bound, and platforms from `request` by rules (no model call)."""
    text = request.lower()
    genres: list[str] = []
    evidence: list[str] = []
    for genre in sorted(vocabulary.genres):
        phrases = {genre, genre.replace("-", " "), *GENRE_SYNONYMS.get(genre, ())}
        for phrase in sorted(phrases, key=len, reverse=True):
            if match := _phrase_pattern(phrase).search(text):
                genres.append(genre)
                evidence.append(match.group(0))
                break

    year_from = year_to = None
    if vocabulary.has_years:
        if match := _DECADE.search(text):
            century, decade_digit, short_digit = match.groups()
            if century:
                start = int(century) * 100 + int(decade_digit) * 10
            else:  # "90s" is the 1990s; "00s" and "10s" are this century
                start = (2000 if int(short_digit) <= 1 else 1900) + int(short_digit) * 10
            year_from, year_to = start, start + 9
            evidence.append(match.group(0))
        else:
            for word, start in _WORD_DECADES.items():
                if re.search(rf"\b{word}\b", text):
                    year_from, year_to = start, start + 9
                    evidence.append(word)
                    break
        for match in _YEAR_RANGE.finditer(text):
            word, year = match.group(1), int(match.group(2))
            if word in ("from", "in"):
                year_from, year_to = year, year
            elif word == "before":
                year_to = year - 1
            else:
                year_from = year
            evidence.append(match.group(0))

    platforms = []
    for platform in sorted(vocabulary.platforms):
        patterns = [PLATFORM_TITLE_PATTERNS[platform], PLATFORM_REQUEST_EXTRA.get(platform)]
        for pattern in filter(None, patterns):
            if match := re.search(pattern, text):
                platforms.append(platform)
                evidence.append(match.group(0))
                break
    return FacetFilter(
        genres=genres, year_from=year_from, year_to=year_to, platforms=platforms, evidence=evidence
    )
