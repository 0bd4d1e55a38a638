"""Few-shot demonstrations, built only from training data, attached to requests before ranking.

Selectors:
  self    -- LLMRank's in-context form: the same user's history minus its last item, with that item as
             the answer (the evaluated case's target is never in its own history);
  random  -- other training users, a seeded random choice per user;
  similar -- the training users nearest to this user by the mean MiniLM embedding of their newest titles
             (or of the request text for a user without history).

A demonstration's candidates are its answer plus negatives drawn from the training catalogue, excluding
the demonstrated user's own items and every candidate of the request being ranked (so a demonstration
can never show, or rule out, anything about the request's candidates). Its candidate order is a seeded
shuffle. In pointwise mode demonstrations alternate between a positive (Yes) and a negative (No).
Nothing here reads a target: requests carry none.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from promptrec.models import Demonstration, Interaction, Item, RankedList, RankMode, RankRequest, UserContext
from promptrec.options import DemoSelector
from promptrec.ranker import Ranker, ResultCallback
from promptrec.retrievers.base import user_key
from promptrec.validation import parse_request

DEMO_HISTORY_ITEMS = 10  # newest items of a demonstration user (the builder shows at most this many)
SIMILARITY_ITEMS = 10  # newest titles that describe a user for the `similar` selector


def _rng(*parts: object) -> random.Random:
    key = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(key, "big"))


class DemoPool:
    """Training histories (user -> chronological item ids) and their catalogue; the only demo source."""

    def __init__(
        self, train_histories: Mapping[str, Sequence[str]], catalog: Mapping[str, Item], seed: int = 0
    ):
        self.catalog = dict(catalog)
        self.histories = {
            str(user): [str(item) for item in items if str(item) in self.catalog]
            for user, items in train_histories.items()
        }
        self.histories = {user: items for user, items in self.histories.items() if len(items) >= 2}
        self.users = sorted(self.histories)
        self.item_ids = sorted(self.catalog)
        self.seed = seed
        self._embedder: Any = None
        self._user_vectors: np.ndarray | None = None

    # --- selection ------------------------------------------------------------------------------------

    def demos_for(self, request: RankRequest, count: int, selector: DemoSelector) -> list[Demonstration]:
        """Up to `count` demonstrations for `request` (fewer when the data has fewer)."""
        if count < 1:
            return []
        pointwise = request.mode is RankMode.POINTWISE
        if selector == "self":
            # One sequence: a listwise demonstration, or a positive and a negative question about it.
            history = [event.item_id for event in request.user.history]
            sequences = [history] * (2 if pointwise else 1) if len(history) >= 2 else []
        else:
            picked = (
                self._random_users(request, count)
                if selector == "random"
                else self._similar_users(request, count)
            )
            sequences = [self.histories[user] for user in picked]
        excluded = {item.id for item in request.candidates}
        size = 1 if pointwise else len(request.candidates)
        return [
            self._demo(
                request, sequence, excluded, size, positive=not pointwise or index % 2 == 0, index=index
            )
            for index, sequence in enumerate(sequences[:count])
        ]

    def _random_users(self, request: RankRequest, count: int) -> list[str]:
        own = request.user.user_id
        pool = [user for user in self.users if user != own]
        return _rng(self.seed, "random-users", user_key(request.user)).sample(pool, min(count, len(pool)))

    def _similar_users(self, request: RankRequest, count: int) -> list[str]:
        vectors = self._vectors()
        query = self._query_vector(request)
        if query is None or vectors.size == 0:
            return self._random_users(request, count)
        similarity = vectors @ query
        own = request.user.user_id
        order = [self.users[index] for index in np.argsort(-similarity, kind="stable")]
        return [user for user in order if user != own][:count]

    # --- construction ---------------------------------------------------------------------------------

    def _demo(
        self,
        request: RankRequest,
        sequence: Sequence[str],
        excluded: set[str],
        size: int,
        positive: bool,
        index: int,
    ) -> Demonstration:
        history, answer = list(sequence[:-1])[-DEMO_HISTORY_ITEMS:], sequence[-1]
        rng = _rng(self.seed, "demo", user_key(request.user), index, len(sequence))
        blocked = excluded | set(sequence)
        negatives: list[str] = []
        wanted = size - 1 if positive else size
        for _ in range(50 * max(wanted, 1)):  # rejection sampling; catalogues are far larger than a list
            if len(negatives) >= wanted:
                break
            item_id = self.item_ids[rng.randrange(len(self.item_ids))]
            if item_id not in blocked and item_id not in negatives:
                negatives.append(item_id)
        candidate_ids = ([answer] if positive else []) + negatives
        rng.shuffle(candidate_ids)
        return Demonstration(
            user=UserContext(history=[Interaction(item_id=item_id) for item_id in history]),
            history_items=[self.catalog[item_id] for item_id in dict.fromkeys(history)],
            candidates=[self.catalog[item_id] for item_id in candidate_ids],
            chosen_id=answer if positive else None,
        )

    # --- embeddings for `similar` ---------------------------------------------------------------------

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._embedder is None:
            from promptrec.retrievers.embedding import EmbeddingRetriever

            self._embedder = EmbeddingRetriever()
        return self._embedder.encode(texts)

    def _vectors(self) -> np.ndarray:
        if self._user_vectors is None:
            newest = {user: self.histories[user][-SIMILARITY_ITEMS:] for user in self.users}
            titles = sorted({item_id for items in newest.values() for item_id in items})
            encoded = (
                self._embed([self.catalog[item_id].title for item_id in titles])
                if titles
                else np.zeros((0, 0))
            )
            row = {item_id: encoded[i] for i, item_id in enumerate(titles)}
            self._user_vectors = (
                np.stack([_unit(np.mean([row[i] for i in newest[u]], axis=0)) for u in self.users])
                if self.users
                else np.zeros((0, 0))
            )
        return self._user_vectors

    def _query_vector(self, request: RankRequest) -> np.ndarray | None:
        titles = {item.id: item.title for item in request.history_items}
        texts = [titles[event.item_id] for event in request.user.history[-SIMILARITY_ITEMS:]]
        if not texts and request.user.request:
            texts = [request.user.request]
        return _unit(self._embed(texts).mean(axis=0)) if texts else None


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


class DemoRanker:
    """Wraps a ranker: each request gets up to `count` demonstrations from the pool before ranking."""

    def __init__(self, inner: Ranker, pool: DemoPool, count: int, selector: DemoSelector = "self"):
        self.inner = inner
        self.pool = pool
        self.count = count
        self.selector = selector
        self.name = f"{inner.name}+demos{count}-{selector}"
        self.batch_size = getattr(inner, "batch_size", 8)

    def rank_many(
        self, requests: Sequence[RankRequest], on_result: ResultCallback | None = None
    ) -> list[RankedList]:
        with_demos = []
        for request in requests:
            request = parse_request(request)
            demos = self.pool.demos_for(request, self.count, self.selector)
            with_demos.append(request.model_copy(update={"demos": [*request.demos, *demos]}))
        return self.inner.rank_many(with_demos, on_result=on_result)
