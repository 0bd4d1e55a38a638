"""What `promptrec finetune` trains on: examples from an interaction log or from labelled yes/no rows,
the validation that picks the kept step, and what the adapter card says of the data."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptrec.errors import RequestError
from promptrec.training.examples import (
    Objective,
    RankingGroup,
    TrainingExample,
    build_examples,
    check_no_evaluation_leak,
    leave_one_out_prefixes,
    question_examples,
    shuffled,
)

if TYPE_CHECKING:
    from promptrec.prompting.builder import PromptBudget
    from promptrec.prompting.formatter import PromptFormatter
    from promptrec.prompting.templates import PromptTemplate
    from promptrec.training.trainer import TrainConfig
    from promptrec.training.validation import Validation


@dataclass(frozen=True)
class PreparedData:
    """What a training source yields: the examples, the validation, and what the adapter card says of them."""

    examples: list[TrainingExample] | list[RankingGroup]
    validation: Validation | None
    card: dict[str, Any]
    summary: str  # one line for the log


def log_data(
    dataset: Path,
    interactions: Path | None,
    template: PromptTemplate,
    formatter: PromptFormatter,
    budget: PromptBudget,
    *,
    samples: int | None,
    prefixes_per_user: int,
    n_candidates: int,
    validation_users: int,
    config: TrainConfig,
    hard_negatives: float,
    hard_negative_pool: int,
) -> PreparedData:
    """Examples from leave-one-out prefixes of an interaction log; evaluation users and targets excluded."""
    from tqdm import tqdm

    from promptrec.training.hard_negatives import HardNegativeMiner
    from promptrec.training.sources import load_training_source
    from promptrec.training.validation import RankingValidation

    objective = config.objective
    source = load_training_source(dataset, interactions, validation_users=validation_users, seed=config.seed)
    # Fitted on the training users' sequences only: validation and evaluation users never shape a negative.
    miner = (
        HardNegativeMiner(
            source.sequences, source.catalog, fraction=hard_negatives, pool_size=hard_negative_pool
        )
        if hard_negatives > 0
        else None
    )
    prefixes = shuffled(leave_one_out_prefixes(source.sequences, per_user=prefixes_per_user), config.seed)
    per_prefix = 2 if objective is Objective.POINTWISE else 1  # ranking: one group per prefix
    if samples is not None:
        prefixes = prefixes[: -(-samples // per_prefix)]
    # Rendering a prompt takes ~10 ms: tens of thousands of prefixes are minutes that should show.
    progress = tqdm(prefixes, desc="building examples", unit="prefix", file=sys.stderr, dynamic_ncols=True)
    examples = build_examples(
        progress,
        source.sequences,
        source.catalog,
        template,
        formatter,
        budget,
        objective=objective,
        n_candidates=n_candidates,
        seed=config.seed,
        withheld=frozenset(case.target_id for case in [*source.evaluation, *source.validation]),
        hard_negatives=miner,
    )[:samples]
    check_no_evaluation_leak(examples, [*source.evaluation, *source.validation])
    validation = RankingValidation(source.validation, objective) if source.validation else None
    users = len({example.user_id for example in examples})
    return PreparedData(
        examples,
        validation,
        {
            "source": source.description,
            "files_sha256": source.data_sha256,
            "training_users": users,
            "prefixes_per_user": prefixes_per_user,
            "validation_users": len(source.validation),
            "evaluation_users_excluded": len(source.evaluation),
            **({"hard_negatives": miner.describe()} if miner else {}),
        },
        f"{len(examples)} examples from {users} users ({source.description}); {len(source.validation)} "
        f"validation users; {len(source.evaluation)} evaluation users excluded",
    )


def question_data(
    dataset: Path,
    template: PromptTemplate,
    formatter: PromptFormatter,
    budget: PromptBudget,
    *,
    samples: int | None,
    validation_rows: int,
    config: TrainConfig,
) -> PreparedData:
    """Examples from labelled yes/no rows (TALLRec's few-shot pool); its test.json never trains."""
    from promptrec.training.sources import load_question_source
    from promptrec.training.validation import PointwiseValidation

    if config.objective is not Objective.POINTWISE:
        raise RequestError(f"--dataset {dataset}: yes/no rows train the pointwise objective only")
    source = load_question_source(dataset, validation_rows=validation_rows, seed=config.seed)
    examples = question_examples(source.training[:samples], template, formatter, budget)
    positives = sum(example.target == 0 for example in examples)
    return PreparedData(
        examples,
        PointwiseValidation(source.validation) if source.validation else None,
        {
            "source": source.description,
            "files_sha256": source.data_sha256,
            "positives": positives,
            "validation_rows": len(source.validation),
        },
        f"{len(examples)} examples ({positives} answered yes) from {source.description}; "
        f"{len(source.validation)} validation rows",
    )
