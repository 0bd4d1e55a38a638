"""Recommender(fallback="retriever"): a failing backend yields a ranking marked as fallback, never silent."""

from __future__ import annotations

import pytest

from promptrec.errors import BackendError, RequestError
from promptrec.models import Interaction, Item, ItemSource, ParseStatus, RankRequest, UserContext
from promptrec.recommender import Recommender
from promptrec.retrievers import make_retriever
from tests.fake_backend import ScriptedBackend

CATALOG = {i: Item(id=i, title=f"title {i}") for i in ("a", "b", "c", "d")}


def failing_backend() -> ScriptedBackend:
    def fail(*_: object) -> list[float]:
        raise BackendError("the server at http://127.0.0.1:1/v1 answered HTTP 500: boom")

    return ScriptedBackend(answer=fail, label_scores=fail)


def request(mode: str = "score", k: int | None = None) -> RankRequest:
    return RankRequest(
        user=UserContext(user_id="u", history=[Interaction(item_id="a")]),
        candidates=[CATALOG["b"], CATALOG["c"], CATALOG["d"]],
        history_items=[CATALOG["a"]],
        mode=mode,
        k=k,
    )


def test_without_fallback_the_backend_error_is_raised():
    with pytest.raises(BackendError, match="boom"):
        Recommender(failing_backend()).rank(request())


@pytest.mark.parametrize("mode", ["generate", "score", "pointwise"])
def test_candidate_order_fallback_is_marked_in_every_item_and_in_diagnostics(mode):
    ranked = Recommender(failing_backend(), fallback="retriever").rank(request(mode, k=2))
    assert ranked.item_ids == ["b", "c"] and ranked.sources == [ItemSource.FALLBACK] * 2
    assert ranked.diagnostics.parse_status is ParseStatus.FAILED
    assert (
        "boom" in ranked.diagnostics.fallback_reason
        and "candidate order" in ranked.diagnostics.fallback_reason
    )


def test_a_fitted_retriever_ranks_the_fallback():
    retriever = make_retriever("itemknn").fit({"x": ["a", "d"], "y": ["a", "d"], "z": ["b"]}, CATALOG)
    ranked = Recommender(failing_backend(), fallback="retriever", fallback_retriever=retriever).rank(
        request()
    )
    assert ranked.item_ids[0] == "d" and set(ranked.sources) == {ItemSource.FALLBACK}
    assert "itemknn" in ranked.diagnostics.fallback_reason


def test_an_unknown_fallback_is_a_request_error():
    with pytest.raises(RequestError, match="fallback='popularity'"):
        Recommender(ScriptedBackend(), fallback="popularity")
