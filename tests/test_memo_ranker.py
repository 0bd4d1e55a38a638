"""MemoRanker asks its inner ranker once per distinct request and reports every result."""

from __future__ import annotations

from promptrec.models import Item, RankMode, RankRequest, UserContext
from promptrec.strategies.memo import MemoRanker
from tests.test_hybrid_fusion import TitleHashRanker


def request(user: str) -> RankRequest:
    items = [Item(id=str(n), title=f"Game {n}") for n in range(5)]
    return RankRequest(user=UserContext(user_id=user), candidates=items, mode=RankMode.SCORE)


def test_repeated_requests_are_answered_from_memory():
    inner = TitleHashRanker()
    memo = MemoRanker(inner)
    first = memo.rank_many([request("a"), request("b")])
    reported = {}
    again = memo.rank_many(
        [request("b"), request("c"), request("a")], on_result=lambda i, r: reported.setdefault(i, r)
    )
    assert inner.calls == 3  # a, b, then only c
    assert again[0] == first[1] and again[2] == first[0]
    assert sorted(reported) == [0, 1, 2] and reported[1] == again[1]
