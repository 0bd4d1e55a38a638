"""Open a catalogue file for `recommend`, whatever its format, with any interactions shipped beside it.

Formats, by name and header: RecBole `.item`; MovieLens latest `movies.csv` (header movieId,title,genres),
whose sibling `ratings.csv`, when present, supplies the interactions behind popularity and item-kNN;
and the plain `.jsonl` / `.csv` (id,title[,text], other columns as attributes) of `load_catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from promptrec.data.catalog import Catalog, load_catalog
from promptrec.data.movielens import MOVIES_HEADER, load_movielens_latest, load_movielens_movies
from promptrec.data.recbole import load_item_file
from promptrec.errors import DataError

FORMATS = ".jsonl, .csv (id,title[,text]), MovieLens movies.csv, RecBole .item"


@dataclass(frozen=True)
class CatalogSource:
    """A catalogue plus training interactions (user id -> chronological item ids); none for a bare file."""

    catalog: Catalog
    histories: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None


def _is_movielens_movies(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8-sig") as handle:
            return handle.readline().strip().split(",") == MOVIES_HEADER
    except OSError as error:
        raise DataError(f"cannot read the catalogue ({error.strerror})", path=str(path)) from error


def load_catalog_source(path: str | Path) -> CatalogSource:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such catalogue file; pass one of: {FORMATS}", path=str(path))
    suffix = path.suffix.lower()
    if suffix == ".item":
        return CatalogSource(load_item_file(path), path=path)
    if suffix == ".csv" and _is_movielens_movies(path):
        if (path.parent / "ratings.csv").is_file():
            log = load_movielens_latest(path.parent)
            histories = {user: [event.item_id for event in events] for user, events in log.histories.items()}
            return CatalogSource(log.catalog, histories, path)
        return CatalogSource(load_movielens_movies(path), path=path)
    if suffix in (".jsonl", ".csv"):
        return CatalogSource(load_catalog(path), path=path)
    raise DataError(f"unsupported catalogue format {suffix!r}; use one of: {FORMATS}", path=str(path))
