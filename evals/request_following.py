"""Request following and latency of `recommend` on MovieLens latest-small and on Amazon Games.

Requests are generated from the catalogue's own data, so relevance is checkable without invented labels.
MovieLens (the shipped movies.csv): genres and years ("a 90s comedy", "an animated film for kids from the
2000s", "a documentary"); a movie is relevant when its genres column holds every requested genre and its
title year lies in the requested decade. Games (`--catalog games`, LLMRank's Games.item read from
../shared/data, never copied into the repository): platform requests ("a game for the Nintendo Switch");
an item is relevant when its title names that platform in full. The judges parse the files themselves
(they do not reuse promptrec.facets, which they are judging).

For every request: precision@10 and NDCG@10 of `recommend` with the retrievers alone (use_llm=False) and
with the LLM ranking the top 20 (the bundled SmolLM2-135M unless --model), per request type with 95%
bootstrap CIs, plus intra-list diversity and catalogue coverage. Latency: the index built cold (empty
cache), read warm from disk, and p50/p95 of `recommend` end to end with a warm index.

    python evals/request_following.py --out evals/reports/request-following
    python evals/request_following.py --catalog games --out evals/reports/request-following-games
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from promptrec import Recommender
from promptrec.catalog_index import build_index
from promptrec.data.catalog_file import load_catalog_source
from promptrec.diversity import intra_list_diversity
from promptrec.evaluation.metrics import ndcg_at_k
from promptrec.evaluation.statistics import bootstrap_ci

MOVIES = Path(__file__).resolve().parent.parent / "promptrec" / "datasets" / "ml-latest-small" / "movies.csv"
GAMES = Path("../shared/data/llmrank-games/Games.item")
K = 10
METHODS = {
    "retriever": {"use_llm": False},
    "retriever+llm": {"use_llm": True},
    "retriever-no-facets": {"use_llm": False, "facets": False},
}
GENRE_WORDS = {
    "Comedy": "comedy",
    "Drama": "drama",
    "Action": "action movie",
    "Horror": "horror film",
    "Thriller": "thriller",
    "Romance": "romance",
    "Sci-Fi": "sci-fi movie",
    "Crime": "crime film",
    "Adventure": "adventure film",
    "Animation": "animated film",
    "Documentary": "documentary",
    "Western": "western",
    "Musical": "musical",
    "War": "war film",
    "Mystery": "mystery",
    "Fantasy": "fantasy film",
    "Film-Noir": "film noir",
}


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou8" else "a ") + phrase  # "an 80s ..."


def judge_table(path: Path) -> dict[str, tuple[frozenset[str], int | None]]:
    """movie id -> (genres, year), read straight from movies.csv."""
    table = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            year = re.search(r"\((\d{4})\)\s*$", row["title"])
            table[row["movieId"]] = (
                frozenset(row["genres"].split("|")),
                int(year.group(1)) if year else None,
            )
    return table


def relevant_ids(table, genres: tuple[str, ...], decade: int | None) -> set[str]:
    return {
        movie_id
        for movie_id, (movie_genres, year) in table.items()
        if set(genres) <= movie_genres
        and (decade is None or (year is not None and decade <= year <= decade + 9))
    }


def make_requests(table) -> list[dict]:
    """>= 40 requests of four types, each with at least 10 relevant movies in the catalogue."""
    requests = []

    def add(kind: str, text: str, genres: tuple[str, ...], decade: int | None) -> None:
        relevant = relevant_ids(table, genres, decade)
        if len(relevant) >= K:
            requests.append(
                {"type": kind, "text": text, "genres": genres, "decade": decade, "n_relevant": len(relevant)}
            )

    for index, (genre, word) in enumerate(list(GENRE_WORDS.items())[:10]):
        for offset, decade in enumerate((1980, 1990, 2000)):
            short = f"{decade}s" if decade == 2000 else f"{decade % 100}s"
            forms = [f"{short} {word}", f"{word} from the {decade}s", f"{word} from the {short}"]
            add("genre+decade", article(forms[(index + offset) % 3]), (genre,), decade)
    for genre in ("Documentary", "Western", "Musical", "War", "Film-Noir", "Horror", "Animation", "Mystery"):
        word = GENRE_WORDS[genre]
        add("genre", article(word), (genre,), None)
    for decade, text in (
        (1970, "a movie from the seventies"),
        (1960, "a film from the 1960s"),
        (1950, "a 50s movie"),
        (2010, "a recent film from the 2010s"),
    ):
        add("decade", text, (), decade)
    for text, genres, decade in (
        ("an animated film for kids from the 2000s", ("Animation", "Children"), 2000),
        ("a romantic comedy from the 90s", ("Comedy", "Romance"), 1990),
        ("a sci-fi action movie from the 80s", ("Action", "Sci-Fi"), 1980),
        ("a crime thriller from the 2000s", ("Crime", "Thriller"), 2000),
        ("a funny animated movie for children", ("Animation", "Children", "Comedy"), None),
        ("a war drama from the 2000s", ("Drama", "War"), 2000),
    ):
        add("multi-genre", text, genres, decade)
    return requests


# Platform requests on Games: (request text, the platform's full name as the judge looks for it in titles).
GAMES_REQUESTS = [
    ("a game for the Nintendo Switch", r"nintendo switch"),
    ("something to play on my PS4", r"playstation 4"),
    ("a PlayStation 4 racing game", r"playstation 4"),
    ("an Xbox One game for a teenager", r"xbox one"),
    ("a gift for a kid who has a Nintendo 3DS", r"nintendo 3ds|\b3ds\b"),
    ("accessories for the Wii U", r"wii u"),
    ("a PlayStation 3 game", r"playstation 3"),
    ("games for the Xbox 360", r"xbox 360"),
    ("a Nintendo DS game for a 10-year-old", r"nintendo ds\b"),
    ("a PC game", r"\bpc\b"),
    ("a PlayStation Vita game", r"playstation vita|ps vita"),
    ("a Game Boy Advance classic", r"game ?boy advance"),
    ("a Wii game the whole family can play", r"\bwii\b(?!\s*u\b)"),
    ("a PlayStation 2 game", r"playstation 2"),
    ("a controller for the Xbox One", r"xbox one"),
    ("a headset for PS4", r"playstation 4"),
]


def games_requests(path: Path) -> tuple[list[dict], dict[str, set[str]]]:
    """Platform requests with at least 10 relevant titles in Games.item, and their relevant item ids."""
    titles = {}
    with path.open(encoding="utf-8") as handle:
        next(handle)  # RecBole header
        for line in handle:
            item_id, _, title = line.rstrip("\n").partition("\t")
            titles[item_id] = title.lower()
    requests, relevant = [], {}
    for text, platform in GAMES_REQUESTS:
        matching = {item_id for item_id, title in titles.items() if re.search(platform, title)}
        if len(matching) >= K:
            requests.append({"type": "platform", "text": text, "n_relevant": len(matching)})
            relevant[text] = matching
    return requests, relevant


def movielens_requests(path: Path) -> tuple[list[dict], dict[str, set[str]]]:
    table = judge_table(path)
    requests = make_requests(table)
    relevant = {
        request["text"]: relevant_ids(table, request["genres"], request["decade"]) for request in requests
    }
    return [dict(request, genres=list(request["genres"])) for request in requests], relevant


def summarise(values: list[float]) -> dict:
    low, high = bootstrap_ci(values) if len(values) > 1 else (values[0], values[0])
    return {
        "mean": round(float(np.mean(values)), 4),
        "ci95": [round(low, 4), round(high, 4)],
        "n": len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--catalog", choices=("movielens", "games"), default="movielens")
    parser.add_argument(
        "--games-item", type=Path, default=GAMES, help="LLMRank's Games.item (--catalog games)."
    )
    parser.add_argument("--model", default=None, help="Local model folder; the bundled SmolLM2 if unset.")
    parser.add_argument("--limit", type=int, default=None, help="First N requests only (a quick check).")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"Comma-separated subset of {list(METHODS)}; retriever-no-facets ignores the facets (ablation).",
    )
    parser.add_argument(
        "--cold-index",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Time a cold index build in an empty cache first (slow); --no-cold-index uses the usual cache.",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    path = MOVIES if args.catalog == "movielens" else args.games_item
    requests, relevant = (movielens_requests if args.catalog == "movielens" else games_requests)(path)
    requests = requests[: args.limit]
    source = load_catalog_source(path)

    methods = {name: METHODS[name] for name in args.methods.split(",")}
    if args.cold_index:  # latency of the index: cold (an empty cache), then warm (read from that cache)
        with tempfile.TemporaryDirectory() as cache:
            previous = os.environ.get("PROMPTREC_CACHE")
            os.environ["PROMPTREC_CACHE"] = cache
            cold = build_index(source)
            index = build_index(source)
            if previous is None:
                del os.environ["PROMPTREC_CACHE"]
            else:
                os.environ["PROMPTREC_CACHE"] = previous
        assert (cold.cache_status, index.cache_status) == ("built", "hit")
    else:
        cold = index = build_index(source)

    started = time.perf_counter()
    recommender = Recommender.load("transformers", args.model)
    model_load_s = time.perf_counter() - started

    rows = []
    for number, request in enumerate(requests, start=1):
        row = dict(request)
        wanted = relevant[request["text"]]
        for method, options in methods.items():
            result = recommender.recommend({"request": request["text"]}, index, k=K, **options)
            hits = [item_id in wanted for item_id in result.item_ids]
            row[method] = {
                "item_ids": result.item_ids,
                "precision@10": sum(hits) / K,
                "ndcg@10": ndcg_at_k(result.item_ids, wanted, K),
                "ild": intra_list_diversity(index.vectors(result.item_ids)),
                "facets": result.diagnostics.facets.model_dump(exclude={"evidence"}),
                "facet_policy": result.diagnostics.facet_policy,
                "template": result.diagnostics.template,
                "timings_s": result.diagnostics.timings_s,
            }
        rows.append(row)
        scores = ", ".join(f"{method} {row[method]['precision@10']:.1f}" for method in methods)
        print(f"[{number}/{len(requests)}] {request['text']!r}: P@10 {scores}", flush=True)

    summary: dict = {
        "catalog": args.catalog,
        "requests": len(rows),
        "methods": list(methods),
        "by_type": {},
        "coverage": {},
    }
    kinds = defaultdict(list)
    for row in rows:
        kinds[row["type"]].append(row)
    for kind, members in [*kinds.items(), ("all", rows)]:
        summary["by_type"][kind] = {
            method: {
                metric: summarise([row[method][metric] for row in members])
                for metric in ("precision@10", "ndcg@10", "ild")
            }
            for method in methods
        }
    for method in methods:
        shown = {item_id for row in rows for item_id in row[method]["item_ids"]}
        summary["coverage"][method] = {
            "catalogue_coverage": round(len(shown) / len(index.ids), 4),
            "distinct_items": len(shown),
        }
    summary["latency_s"] = {"items": len(index.ids), "model_load": round(model_load_s, 2)}
    if args.cold_index:
        summary["latency_s"] |= {
            "index_cold_build": round(cold.load_s, 2),
            "index_warm_load": round(index.load_s, 2),
        }
    if "retriever+llm" in methods:
        summary["llm_templates"] = sorted({row["retriever+llm"]["template"] for row in rows})
        timings = [row["retriever+llm"]["timings_s"] for row in rows]
        summary["latency_s"] |= {
            "recommend_warm_p50": percentile([t["total_s"] for t in timings], 50),
            "recommend_warm_p95": percentile([t["total_s"] for t in timings], 95),
            "retrieve_p50": percentile([t["retrieve_s"] for t in timings], 50),
            "llm_rank_p50": percentile([t["rank_s"] for t in timings], 50),
        }
    (args.out / "results.json").write_text(
        json.dumps({"summary": summary, "requests": rows}, indent=2) + "\n"
    )
    (args.out / "report.md").write_text(render_report(summary, rows))
    print(json.dumps(summary, indent=2))


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def render_report(summary: dict, rows: list[dict]) -> str:
    methods = summary["methods"]
    source = (
        "# Request following on MovieLens latest-small\n\n"
        f"{summary['requests']} requests generated from `movies.csv` genres and years by "
        "`evals/request_following.py`; a movie is relevant when it has every requested genre and its title "
        "year is in the requested decade."
        if summary["catalog"] == "movielens"
        else "# Request following on Amazon Games (LLMRank's Games.item)\n\n"
        f"{summary['requests']} platform requests (`evals/request_following.py --catalog games`); an item is "
        "relevant when its title names the requested platform in full."
    )
    lines = [
        source,
        "",
        "k = 10. Methods: `retriever` = `recommend(..., use_llm=False)`; "
        "`retriever+llm` = the LLM (the bundled SmolLM2-135M with its shipped adapter unless --model; "
        f"template {', '.join(summary.get('llm_templates', [])) or 'n/a'}, scenario `browse`) ranks the "
        "retrievers' top 20; `retriever-no-facets` = retrievers with facet extraction off (ablation). "
        "95% bootstrap CIs over requests.",
        "",
        "| request type | n | method | precision@10 | NDCG@10 | intra-list diversity |",
        "|---|---|---|---|---|---|",
    ]
    for kind, by_method in summary["by_type"].items():
        for method, metrics in by_method.items():
            cells = [f"{m['mean']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]" for m in metrics.values()]
            count = metrics["precision@10"]["n"]
            lines.append(f"| {kind} | {count} | {method} | " + " | ".join(cells) + " |")
    lines += ["", "Catalogue coverage (distinct recommended items / catalogue size, all requests):", ""]
    for method, coverage in summary["coverage"].items():
        lines.append(f"- {method}: {coverage['catalogue_coverage']:.4f} ({coverage['distinct_items']} items)")
    latency = summary["latency_s"]
    lines += ["", "## Latency (CPU, 2 cores; see the README for the load at the time)", ""]
    if "index_cold_build" in latency:
        lines.append(
            f"- index over {latency['items']} movies, cold build (embeddings + BM25, empty cache): "
            f"{latency['index_cold_build']} s; warm load from the disk cache: {latency['index_warm_load']} s"
        )
    lines.append(f"- model load: {latency['model_load']} s")
    if "recommend_warm_p50" in latency:
        lines.append(
            f"- `recommend` with a warm index in memory, end to end: p50 {latency['recommend_warm_p50']} s, "
            f"p95 {latency['recommend_warm_p95']} s (retrieval p50 {latency['retrieve_p50']} s, LLM ranking "
            f"p50 {latency['llm_rank_p50']} s)"
        )
    lines += [
        "",
        "## Requests",
        "",
        "| type | request | relevant in catalogue | "
        + " | ".join(f"P@10 {m}" for m in methods)
        + " | facets read |",
        "|---|---|---|" + "---|" * len(methods) + "---|",
    ]
    for row in rows:
        facets = {key: value for key, value in row[methods[0]]["facets"].items() if value}
        scores = " | ".join(f"{row[method]['precision@10']:.1f}" for method in methods)
        lines.append(
            f"| {row['type']} | {row['text']} | {row['n_relevant']} | {scores} | "
            f"{facets} ({row[methods[0]]['facet_policy']}) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
