"""`MemoRanker`: answers a request it has already ranked from memory, so strategies sharing one LLM
(the plain LLM method, a hybrid wrapping it) pay for each distinct request once per process."""

from __future__ import annotations

from collections.abc import Sequence

from promptrec.models import RankedList, RankRequest
from promptrec.ranker import Ranker, ResultCallback
from promptrec.validation import parse_request


class MemoRanker:
    def __init__(self, inner: Ranker):
        self.inner = inner
        self.name = inner.name
        self.batch_size = getattr(inner, "batch_size", 256)
        self._memory: dict[str, RankedList] = {}

    def rank_many(
        self, requests: Sequence[RankRequest], on_result: ResultCallback | None = None
    ) -> list[RankedList]:
        parsed = [parse_request(request) for request in requests]
        keys = [request.model_dump_json() for request in parsed]
        results: list[RankedList | None] = [self._memory.get(key) for key in keys]
        if on_result is not None:
            for index, result in enumerate(results):
                if result is not None:
                    on_result(index, result)
        pending = [index for index, result in enumerate(results) if result is None]

        def remember(position: int, ranked: RankedList) -> None:
            index = pending[position]
            self._memory[keys[index]] = results[index] = ranked
            if on_result is not None:
                on_result(index, ranked)

        if pending:
            answered = self.inner.rank_many([parsed[index] for index in pending], on_result=remember)
            for position, ranked in enumerate(answered):
                if results[pending[position]] is None:  # the inner ranker did not report it
                    remember(position, ranked)
        return [result for result in results if result is not None]
