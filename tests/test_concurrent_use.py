"""A Recommender shared by threads or asyncio tasks gives exactly the sequential results (bundled model)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from promptrec import Recommender
from promptrec.errors import BackendError
from promptrec.models import RankedList

TITLES = [
    "Toy Story (1995)", "Heat (1995)", "Clueless (1995)", "Alien (1979)", "Fargo (1996)", "Shrek (2001)",
    "The Matrix (1999)", "Groundhog Day (1993)", "Finding Nemo (2003)", "The Shining (1980)",
]  # fmt: skip


def small_request(n: int) -> dict:
    """Request n: 5 candidates and a one-item history, all different per n."""
    pick = [TITLES[(n + step) % len(TITLES)] for step in range(6)]
    items = [{"id": f"m{TITLES.index(title)}", "title": title} for title in pick]
    return {
        "user": {"history": [{"item_id": items[0]["id"]}], "request": f"request number {n}"},
        "history_items": items[:1],
        "candidates": items[1:],
        "mode": "score",
    }


REQUESTS = [small_request(n) for n in range(8)]


@pytest.fixture(scope="module")
def recommender(bundled_model_dir: Path) -> Recommender:
    return Recommender.load()


@pytest.fixture(scope="module")
def sequential(recommender: Recommender) -> list[RankedList]:
    return [recommender.rank(request) for request in REQUESTS]


def same(a: RankedList, b: RankedList) -> bool:
    return a.item_ids == b.item_ids and a.scores == b.scores and a.sources == b.sources


def test_eight_threads_agree_with_sequential_calls(recommender, sequential):
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(recommender.rank, REQUESTS))
    assert all(same(a, b) for a, b in zip(threaded, sequential, strict=True))
    assert len({tuple(ranked.item_ids) for ranked in sequential}) > 1, "requests differ, so answers differ"


def test_eight_concurrent_arank_calls_agree_with_sequential_calls(recommender, sequential):
    async def main() -> list[RankedList]:
        return await asyncio.gather(*(recommender.arank(request) for request in REQUESTS))

    concurrent = asyncio.run(main())
    assert all(same(a, b) for a, b in zip(concurrent, sequential, strict=True))


def test_arank_many_matches_rank_many(recommender):
    batched = recommender.rank_many(REQUESTS[:3])
    assert all(
        same(a, b) for a, b in zip(asyncio.run(recommender.arank_many(REQUESTS[:3])), batched, strict=True)
    )


def test_threads_and_arecommend_agree_with_sequential_recommend(recommender, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTREC_CACHE", str(tmp_path))
    catalog = tmp_path / "movies.jsonl"
    catalog.write_text("\n".join(f'{{"id": "m{i}", "title": "{title}"}}' for i, title in enumerate(TITLES)))
    users = [{"request": "a comedy"}, {"request": "something scary"}, {"history": [{"item_id": "m0"}]}, {}]
    sequential = [recommender.recommend(user, catalog, k=4).item_ids for user in users * 2]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = [
            result.item_ids
            for result in pool.map(lambda u: recommender.recommend(u, catalog, k=4), users * 2)
        ]
    assert threaded == sequential

    async def main() -> list[list[str]]:
        results = await asyncio.gather(*(recommender.arecommend(user, catalog, k=4) for user in users * 2))
        return [result.item_ids for result in results]

    assert asyncio.run(main()) == sequential


def test_close_and_context_managers_release_the_backend(tiny_llama_dir: Path):
    with Recommender.load("transformers", str(tiny_llama_dir)) as recommender:
        recommender.rank(REQUESTS[0])
    with pytest.raises(BackendError, match="closed"):
        recommender.rank(REQUESTS[0])

    async def main() -> None:
        async with Recommender.load("transformers", str(tiny_llama_dir)) as inner:
            await inner.arank(REQUESTS[0])
        with pytest.raises(BackendError, match="closed"):
            await inner.arank(REQUESTS[0])

    asyncio.run(main())
