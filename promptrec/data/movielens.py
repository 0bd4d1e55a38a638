"""MovieLens loaders: latest-small (movies.csv + ratings.csv) and 100K (u.item + u.data).

Every rating counts as one interaction (the usual implicit-feedback reading); the rating value is kept.
Genres become the item attribute "genres", joined with "|" in both formats.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from promptrec.data.catalog import Catalog, InteractionLog, RawInteraction
from promptrec.data.quality import DataQualityReport, csv_rows, read_text_file
from promptrec.errors import DataError

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
NO_GENRES = "(no genres listed)"
MOVIES_HEADER = ["movieId", "title", "genres"]


def load_movielens(folder: str | Path, *, strict: bool = True) -> InteractionLog:
    """Load a MovieLens folder holding ratings.csv (latest-small layout) or u.data (100K layout)."""
    folder = Path(folder)
    if (folder / "ratings.csv").is_file():
        return load_movielens_latest(folder, strict=strict)
    if (folder / "u.data").is_file():
        return load_movielens_100k(folder, strict=strict)
    raise DataError(
        "is not a MovieLens folder: it holds neither ratings.csv + movies.csv (latest-small) nor "
        "u.data + u.item (100K); pass the folder that contains them",
        path=str(folder),
    )


def _reject_or_skip(
    message: str, *, strict: bool, report: DataQualityReport, path: Path, record: str
) -> None:
    if strict:
        raise DataError(
            f"{message}; fix the row or load with strict=False to skip it", path=str(path), record=record
        )
    report.skip(message, record)


def _parse_rating_row(cells: list[str], record: str) -> RawInteraction:
    """cells = user, item, rating, timestamp; raises ValueError on anything unparsable."""
    if len(cells) != 4:
        raise ValueError(f"has {len(cells)} cells, expected 4 (user, item, rating, timestamp)")
    user_id, item_id, rating, timestamp = (cell.strip() for cell in cells)
    if not user_id or not item_id:
        raise ValueError("has an empty user or item id")
    return RawInteraction(record, user_id, item_id, float(timestamp), float(rating))


def _rating_rows(
    rows: Iterator[list[str]], first_line: int, *, path: Path, strict: bool, report: DataQualityReport
) -> Iterator[RawInteraction]:
    for number, cells in enumerate(rows, start=first_line):
        record = f"line {number}"
        if not cells:
            continue
        try:
            yield _parse_rating_row(cells, record)
        except ValueError as exc:
            _reject_or_skip(
                f"malformed ratings row ({exc})", strict=strict, report=report, path=path, record=record
            )


def _latest_movie_records(
    rows: Iterator[list[str]], *, path: Path, strict: bool, report: DataQualityReport
) -> Iterator[tuple[str, dict[str, str]]]:
    for number, row in enumerate(rows, start=2):
        record = f"line {number}"
        if not row:
            continue
        if len(row) != 3:
            _reject_or_skip(
                f"malformed movies row ({len(row)} cells, expected movieId,title,genres)",
                strict=strict,
                report=report,
                path=path,
                record=record,
            )
            continue
        movie_id, title, genres = row
        yield record, {"id": movie_id, "title": title} | ({"genres": genres} if genres != NO_GENRES else {})


def load_movielens_movies(
    movies_path: Path, *, strict: bool = True, report: DataQualityReport | None = None
) -> Catalog:
    """A MovieLens latest `movies.csv` (movieId,title,genres) on its own, as a catalogue."""
    report = report or DataQualityReport(source=str(movies_path))
    movies = csv_rows(read_text_file(movies_path, what="MovieLens movies file"), str(movies_path))
    if next(movies, None) != MOVIES_HEADER:
        raise DataError(
            "header must be movieId,title,genres (MovieLens latest layout)",
            path=str(movies_path),
            record="line 1",
        )
    records = _latest_movie_records(movies, path=movies_path, strict=strict, report=report)
    return Catalog.from_records(records, strict=strict, source=str(movies_path), report=report)


def load_movielens_latest(folder: Path, *, strict: bool = True) -> InteractionLog:
    movies_path, ratings_path = folder / "movies.csv", folder / "ratings.csv"
    report = DataQualityReport(source=str(folder))
    catalog = load_movielens_movies(movies_path, strict=strict, report=report)

    ratings = csv_rows(read_text_file(ratings_path, what="MovieLens ratings file"), str(ratings_path))
    if next(ratings, None) != ["userId", "movieId", "rating", "timestamp"]:
        raise DataError(
            "header must be userId,movieId,rating,timestamp (MovieLens latest layout)",
            path=str(ratings_path),
            record="line 1",
        )
    rows = _rating_rows(ratings, 2, path=ratings_path, strict=strict, report=report)
    return InteractionLog.from_rows(rows, catalog, strict=strict, source=str(ratings_path), report=report)


def _ml100k_item_records(text: str, path: Path) -> Iterator[tuple[str, dict[str, str | None]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split("|")
        # id | title | release date | video release date | IMDb URL | 19 genre flags
        if len(cells) != 5 + len(ML100K_GENRES):
            raise DataError(
                f"has {len(cells)} '|'-separated cells, expected {5 + len(ML100K_GENRES)} "
                "(id|title|release|video release|url|19 genre flags)",
                path=str(path),
                record=f"line {number}",
            )
        genres = [name for name, flag in zip(ML100K_GENRES, cells[5:], strict=True) if flag.strip() == "1"]
        record: dict[str, str | None] = {"id": cells[0], "title": cells[1]}
        if genres:
            record["genres"] = "|".join(genres)
        yield f"line {number}", record


def load_movielens_100k(folder: Path, *, strict: bool = True) -> InteractionLog:
    items_path, data_path = folder / "u.item", folder / "u.data"
    report = DataQualityReport(source=str(folder))
    item_text = read_text_file(items_path, what="MovieLens 100K item file", encoding="latin-1")
    catalog = Catalog.from_records(
        _ml100k_item_records(item_text, items_path), strict=strict, source=str(items_path), report=report
    )
    lines = read_text_file(data_path, what="MovieLens 100K ratings file").splitlines()
    rows = _rating_rows(
        (line.split("\t") if line.strip() else [] for line in lines),
        1,
        path=data_path,
        strict=strict,
        report=report,
    )
    return InteractionLog.from_rows(rows, catalog, strict=strict, source=str(data_path), report=report)
