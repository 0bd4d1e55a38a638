"""`arank` / `arank_many`: the same rankings as `rank` on both async paths (scripted backends, no model).

A backend without `native_async` is run in a worker thread; one with it is awaited on the event loop with
no worker thread at all. A failing backend with `fallback="retriever"` gives the same fallback either way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from promptrec.errors import BackendError
from promptrec.models import Interaction, Item, ItemSource, RankedList, RankRequest, UserContext
from promptrec.recommender import Recommender
from promptrec.retrievers import make_retriever
from tests.fake_backend import AwaitingScriptedBackend, ScriptedBackend

CATALOG = {i: Item(id=i, title=f"title {i}") for i in "abcdefgh"}
MODES = ["generate", "score", "pointwise"]
Result = TypeVar("Result")


class RefusingExecutor(ThreadPoolExecutor):
    """A default executor that fails the test as soon as anything asks it for a worker thread."""

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the async path used a worker thread")


def run_without_worker_threads(coroutine: Coroutine[Any, Any, Result]) -> Result:
    """`asyncio.run(coroutine)` on a loop whose default executor (`asyncio.to_thread`'s) refuses work."""

    async def main() -> Result:
        asyncio.get_running_loop().set_default_executor(RefusingExecutor())
        return await coroutine

    return asyncio.run(main())


def requests(mode: str) -> list[RankRequest]:
    """Eight requests with different candidates and histories, so that their answers differ."""
    ids = list(CATALOG)
    return [
        RankRequest(
            user=UserContext(user_id=f"u{n}", history=[Interaction(item_id=ids[n])]),
            candidates=[CATALOG[ids[(n + step) % len(ids)]] for step in range(1, 5)],
            history_items=[CATALOG[ids[n]]],
            mode=mode,
        )
        for n in range(8)
    ]


def answer(prompt: str) -> str:
    return '["C", "A"]' if "title b" in prompt else '["B", "D", "A"]'


def label_scores(prompt: str, labels: Any) -> list[float]:
    return [-float((len(prompt) * (i + 1)) % 7) for i in range(len(labels))]


def summary(ranked: RankedList) -> tuple[Any, ...]:
    d = ranked.diagnostics
    return ranked.item_ids, ranked.scores, ranked.sources, d.raw_output, d.fallback_reason, d.prompt_tokens


async def concurrently(recommender: Recommender, batch: list[RankRequest]) -> list[RankedList]:
    return list(await asyncio.gather(*(recommender.arank(request) for request in batch)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend_class", [ScriptedBackend, AwaitingScriptedBackend])
def test_concurrent_arank_and_arank_many_equal_sequential_rank(mode, backend_class):
    recommender = Recommender(backend_class(answer=answer, label_scores=label_scores), batch_size=3)
    batch = requests(mode)
    sequential = [summary(recommender.rank(request)) for request in batch]
    assert len({tuple(ranked[0]) for ranked in sequential}) > 1, "requests differ, so answers differ"

    if backend_class.native_async:
        concurrent = run_without_worker_threads(concurrently(recommender, batch))
        many = run_without_worker_threads(recommender.arank_many(batch))
    else:
        concurrent = asyncio.run(concurrently(recommender, batch))
        many = asyncio.run(recommender.arank_many(batch))
    assert [summary(ranked) for ranked in concurrent] == sequential
    assert [summary(ranked) for ranked in many] == sequential


def test_a_backend_without_native_async_runs_in_a_worker_thread():
    threads: list[threading.Thread] = []

    def scores(prompt: str, labels: Any) -> list[float]:
        threads.append(threading.current_thread())
        return label_scores(prompt, labels)

    recommender = Recommender(ScriptedBackend(label_scores=scores))
    ranked = asyncio.run(recommender.arank(requests("score")[0]))
    assert ranked.sources == [ItemSource.MODEL] * 4 and threads[-1] is not threading.main_thread()
    with pytest.raises(AssertionError, match="worker thread"):
        run_without_worker_threads(recommender.arank(requests("score")[0]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend_class", [ScriptedBackend, AwaitingScriptedBackend])
def test_a_failing_backend_falls_back_alike_on_the_async_path(mode, backend_class):
    def fail(*_: object) -> list[float]:
        raise BackendError("the server at http://127.0.0.1:1/v1 answered HTTP 500: boom")

    history = {"x": ["a", "d"], "y": ["a", "d", "e"], "z": ["b", "f"]}
    retriever = make_retriever("itemknn").fit(history, CATALOG)
    recommender = Recommender(
        backend_class(answer=fail, label_scores=fail), fallback="retriever", fallback_retriever=retriever
    )
    batch = requests(mode)
    sequential = [summary(ranked) for ranked in recommender.rank_many(batch)]
    assert all(set(ranked[2]) == {ItemSource.FALLBACK} and "boom" in ranked[4] for ranked in sequential)

    run = run_without_worker_threads if backend_class.native_async else asyncio.run
    assert [summary(ranked) for ranked in run(concurrently(recommender, batch))] == sequential
    assert [summary(ranked) for ranked in run(recommender.arank_many(batch))] == sequential

    without_fallback = Recommender(backend_class(answer=fail, label_scores=fail))
    with pytest.raises(BackendError, match="boom"):
        run(without_fallback.arank(batch[0]))
