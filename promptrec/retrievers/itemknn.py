"""Item-kNN: item-item cosine similarity of training co-occurrence; score = sum over the user's history.

sim(i, j) = users(i and j) / sqrt(users(i) * users(j)), counting each user once per item, self-similarity 0.
A candidate's score is the sum of its similarities to the distinct items of the user's history, so items
that never co-occurred with the history tie at 0 (broken by the seeded rule in base.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from promptrec.models import Item, UserContext
from promptrec.retrievers.base import Retriever, history_ids


class ItemKNNRetriever(Retriever):
    name = "itemknn"

    def __init__(self) -> None:
        super().__init__()
        self.index: dict[str, int] = {}
        self.similarity: sparse.csr_matrix = sparse.csr_matrix((0, 0))

    def _fit(self, train_histories: dict[str, list[str]], catalog: dict[str, Item]) -> None:
        self.index = {item_id: column for column, item_id in enumerate(catalog)}
        rows: list[int] = []
        columns: list[int] = []
        for row, items in enumerate(train_histories.values()):
            distinct = {self.index[item_id] for item_id in items}
            rows.extend([row] * len(distinct))
            columns.extend(distinct)
        incidence = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, columns)), shape=(len(train_histories), len(self.index))
        )
        co_occurrence = (incidence.T @ incidence).tocsr()
        user_counts = co_occurrence.diagonal()
        # Items nobody interacted with have no co-occurrence; 1 avoids dividing 0 by 0.
        inverse_norm = sparse.diags(1.0 / np.sqrt(np.where(user_counts > 0, user_counts, 1.0)))
        similarity = (inverse_norm @ co_occurrence @ inverse_norm).tocsr()
        similarity = (similarity - sparse.diags(similarity.diagonal())).tocsr()
        similarity.eliminate_zeros()
        self.similarity = similarity

    def _score(self, user: UserContext, candidates: Sequence[Item]) -> np.ndarray:
        # A history item outside the fitted catalogue co-occurred with nothing in training: similarity 0.
        known = sorted({self.index[item_id] for item_id in history_ids(user) if item_id in self.index})
        if not known:
            return np.zeros(len(candidates))
        totals = np.asarray(self.similarity[known].sum(axis=0)).ravel()
        return np.array(
            [totals[self.index[item.id]] if item.id in self.index else 0.0 for item in candidates]
        )
