"""The retriever interface: fit on training histories, score and rank candidates, retrieve from the catalogue.

Tie-break rule (label-blind, never by candidate position): candidates with equal scores are ordered by a
64-bit key blake2b(f"{seed}|{user key}|{item id}"), ascending. For a fixed (seed, user) this is a random
order over item ids, so shuffling the candidate list cannot change the ranking, and it is identical across
runs and processes (unlike Python's salted `hash`). The user key is `user.user_id`, or, for an anonymous
user, their history ids and request, so each user gets their own order.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar, Self

import numpy as np

from promptrec.errors import DataError, RequestError
from promptrec.models import Item, UserContext


def user_key(user: UserContext) -> str:
    if user.user_id is not None:
        return f"user:{user.user_id}"
    return "anonymous:" + ",".join(history_ids(user)) + f"|{user.request or ''}"


def history_ids(user: UserContext) -> list[str]:
    return [event.item_id for event in user.history]


def tie_break_keys(item_ids: Sequence[str], seed: int | str, user: UserContext) -> np.ndarray:
    """The per-(seed, user) random key of each item id; see the module docstring."""
    prefix = f"{seed}|{user_key(user)}|"
    return np.array(
        [
            int.from_bytes(hashlib.blake2b((prefix + item_id).encode(), digest_size=8).digest(), "big")
            for item_id in item_ids
        ],
        dtype=np.uint64,
    )


def order_by_score(item_ids: Sequence[str], scores: np.ndarray, seed: int, user: UserContext) -> list[str]:
    """Item ids by descending score, ties by the seeded per-user key."""
    order = np.lexsort((tie_break_keys(item_ids, seed, user), -scores))
    return [item_ids[index] for index in order]


class Retriever(ABC):
    """Scores candidates for a user; higher is better. Statistics come from training interactions only."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self._catalog: dict[str, Item] | None = None

    # --- subclass hooks -------------------------------------------------------------------------------

    @abstractmethod
    def _fit(self, train_histories: dict[str, list[str]], catalog: dict[str, Item]) -> None:
        """Learn from the (validated) training histories and catalogue."""

    @abstractmethod
    def _score(self, user: UserContext, candidates: Sequence[Item]) -> np.ndarray:
        """One float per candidate, in candidate order."""

    # --- public API -----------------------------------------------------------------------------------

    def fit(self, train_histories: Mapping[str, Sequence[str]], catalog: Mapping[str, Item]) -> Self:
        """Fit on training histories (user id -> chronological item ids); every item must be in `catalog`."""
        if not catalog:
            raise DataError("the catalogue is empty; pass every item (id -> Item) the retriever may score")
        for item_id, item in catalog.items():
            if item.id != item_id:
                raise DataError(f"catalogue key {item_id!r} holds Item {item.id!r}; key each Item by its id")
        histories = {str(user): [str(item) for item in items] for user, items in train_histories.items()}
        unknown = sorted({item for items in histories.values() for item in items if item not in catalog})
        if unknown:
            raise DataError(
                f"{len(unknown)} item ids in the training histories are not in the catalogue "
                f"(e.g. {unknown[:5]}); add their records to the catalogue or drop them from the histories"
            )
        self._catalog = dict(catalog)
        self._fit(histories, self._catalog)
        return self

    def score(self, user: UserContext, candidates: Sequence[Item]) -> list[float]:
        self._fitted_catalog()
        seen: set[str] = set()
        for position, item in enumerate(candidates):
            if item.id in seen:
                raise RequestError(
                    f"candidates[{position}].id={item.id!r} is a duplicate; list each candidate once"
                )
            seen.add(item.id)
        if not candidates:
            return []
        return [float(value) for value in self._checked_scores(user, candidates)]

    def rank(self, user: UserContext, candidates: Sequence[Item], seed: int = 0) -> list[str]:
        """Candidate ids by descending score; ties broken by the seeded per-user order (module docstring)."""
        scores = np.array(self.score(user, candidates), dtype=float)
        return order_by_score([item.id for item in candidates], scores, seed, user)

    def retrieve(self, user: UserContext, k: int, exclude_history: bool = True, seed: int = 0) -> list[str]:
        """The top-k item ids of the whole fitted catalogue, without the user's history items by default."""
        catalog = self._fitted_catalog()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise RequestError(f"k={k!r} must be an integer >= 1")
        excluded = set(history_ids(user)) if exclude_history else set()
        pool = [item for item_id, item in catalog.items() if item_id not in excluded]
        if not pool:
            return []
        scores = self._checked_scores(user, pool)
        return order_by_score([item.id for item in pool], scores, seed, user)[:k]

    # --- helpers --------------------------------------------------------------------------------------

    def _fitted_catalog(self) -> dict[str, Item]:
        if self._catalog is None:
            raise RequestError(
                f"retriever {self.name!r} is not fitted; call fit(train_histories, catalog) first"
            )
        return self._catalog

    def _checked_scores(self, user: UserContext, candidates: Sequence[Item]) -> np.ndarray:
        scores = np.asarray(self._score(user, candidates), dtype=float)
        if scores.shape != (len(candidates),) or not np.isfinite(scores).all():
            raise RuntimeError(
                f"retriever {self.name!r} returned invalid scores (shape {scores.shape}, "
                "expected one finite float per candidate)"
            )
        return scores

    def query_texts(self, user: UserContext) -> list[str]:
        """What a text-based retriever reads about the user: history titles, then request and preferences."""
        catalog = self._fitted_catalog()
        texts: list[str] = []
        for position, item_id in enumerate(history_ids(user)):
            if item_id not in catalog:
                raise RequestError(
                    f"user.history[{position}].item_id={item_id!r} is not in the fitted catalogue; "
                    f"retriever {self.name!r} needs its title: add the item to the catalogue passed to fit()"
                )
            texts.append(catalog[item_id].title)
        if user.request:
            texts.append(user.request)
        texts.extend(user.preferences)
        return texts
