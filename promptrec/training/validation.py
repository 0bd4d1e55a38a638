"""What a training run is validated on: held-out cases scored through the served path, higher is better."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from promptrec.data.tallrec import PointwiseCase
from promptrec.evaluation.metrics import auc, ndcg_at_k
from promptrec.models import RankingCase
from promptrec.training.examples import Objective


class Validation(Protocol):
    """Held-out cases scored through the served path during training; higher is better."""

    description: str  # the metric and the cases, for the log and the adapter card

    def score(self, recommender: Any) -> float: ...


@dataclass(frozen=True)
class RankingValidation:
    """Mean NDCG@10 of ranking cases (leave-one-out users, 20 candidates)."""

    cases: Sequence[RankingCase]
    objective: Objective

    @property
    def description(self) -> str:
        return f"NDCG@10, 20 candidates (1 target + 19 random negatives), {len(self.cases)} validation users"

    def score(self, recommender: Any) -> float:
        ranked = recommender.rank_many([case.to_request(mode=self.objective.mode) for case in self.cases])
        pairs = zip(ranked, self.cases, strict=True)
        return float(np.mean([ndcg_at_k(result.item_ids, case.target_id, 10) for result, case in pairs]))


@dataclass(frozen=True)
class PointwiseValidation:
    """AUC of yes/no questions (TALLRec rows): score = log P(yes) - log P(no)."""

    cases: Sequence[PointwiseCase]

    @property
    def description(self) -> str:
        return f"AUC of log P(yes) - log P(no), {len(self.cases)} held-out TALLRec rows"

    def score(self, recommender: Any) -> float:
        ranked = recommender.rank_many([case.to_request() for case in self.cases])
        return auc([case.label for case in self.cases], [result.scores[0] for result in ranked])
