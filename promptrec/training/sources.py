"""Where training sequences come from, with the evaluation users kept out.

Three shapes, mirroring `promptrec eval`:
  --dataset SET.jsonl --interactions LOG.valid.inter  -- the set's users are the evaluation users; every
      other user of the LLMRank log trains (their sequence is history + validation item, no test target);
  --dataset LOG (MovieLens folder, RecBole atomic .inter) -- a deterministic held-out user split
      (data.splits.held_out_users) are the evaluation users; the others train on their leave-one-out
      train histories (their own last item is not used either).
  --dataset tallrec/movie/valid.json  -- TALLRec's labelled yes/no rows (the pool few-shot samples are
      drawn from); the test.json beside it is the evaluation set, so it may not train, and a training row
      that repeats a test question is refused.
A few training users (or rows) are set aside as a validation split for early stopping, scored like
evaluation cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from promptrec.data.catalog import Catalog
from promptrec.data.dataset import load_dataset
from promptrec.data.splits import build_case, held_out_users, user_rng
from promptrec.data.tallrec import PointwiseCase, load_tallrec
from promptrec.errors import DataError, RequestError
from promptrec.evaluation.protocols import fingerprint, interaction_histories
from promptrec.models import Interaction, RankingCase


@dataclass(frozen=True)
class TrainingSource:
    description: str
    catalog: Catalog
    sequences: dict[str, list[str]]  # training users only
    validation: list[RankingCase]  # set-aside training users, for early stopping
    evaluation: list[RankingCase]  # never trained on
    data_sha256: dict[str, str]  # file name -> sha256 of the inputs


def load_training_source(
    dataset: Path, interactions: Path | None = None, *, validation_users: int = 40, seed: int = 0
) -> TrainingSource:
    data = load_dataset(dataset, seed=seed)
    hashes = {dataset.name: fingerprint(dataset)}
    if interactions is not None:
        sequences, catalog = interaction_histories(interactions, data.catalog)
        evaluation = data.cases
        hashes[interactions.name] = fingerprint(interactions)
        description = f"{interactions.name} users not in {dataset.name}"
    elif dataset.suffix == ".jsonl":
        raise RequestError(
            f"--dataset {dataset}: a ready ranking set has no training log; pass --interactions "
            "LOG.valid.inter (its other users train), or a MovieLens folder / .inter log as --dataset"
        )
    else:
        held_out = held_out_users(data.user_ids)
        evaluation = [data.case_for_user(user_id) for user_id in data.user_ids if user_id in held_out]
        sequences, catalog = data.train_histories, data.catalog
        description = f"{dataset.name} leave-one-out train histories of users outside the held-out split"
    evaluated = {case.case_id for case in evaluation}
    training = {user: items for user, items in sequences.items() if user not in evaluated and len(items) >= 2}
    if not training:
        raise DataError("no training users remain after removing the evaluation users", path=str(dataset))
    validation = _validation_cases(training, catalog, validation_users, seed)
    for case in validation:
        del training[case.case_id]
    return TrainingSource(description, catalog, training, validation, evaluation, hashes)


def _validation_cases(
    sequences: dict[str, list[str]], catalog: Catalog, count: int, seed: int
) -> list[RankingCase]:
    """`count` training users chosen by a seeded hash; each one's last item is the target of a 20-candidate
    case, as evaluation cases are built."""
    chosen = sorted(sequences, key=lambda user: user_rng(seed, f"validation:{user}").random())[:count]
    return [
        build_case(
            user,
            [Interaction(item_id=item) for item in sequences[user][:-1]],
            sequences[user][-1],
            catalog,
            excluded=set(sequences[user]),
            n_negatives=19,
            seed=seed,
        )
        for user in chosen
    ]


@dataclass(frozen=True)
class QuestionSource:
    description: str
    training: list[PointwiseCase]  # in a seeded order: `--samples N` takes the first N
    validation: list[PointwiseCase]
    data_sha256: dict[str, str]


def load_question_source(dataset: Path, *, validation_rows: int = 40, seed: int = 0) -> QuestionSource:
    """TALLRec rows in a seeded order, the first `validation_rows` set aside for validation."""
    test = dataset.parent / "test.json"
    if dataset.resolve() == test.resolve():
        raise RequestError(
            f"--dataset {dataset}: TALLRec's test.json is the evaluation set; train on valid.json beside it"
        )
    rows = load_tallrec(dataset)
    if test.is_file():
        questions = {_question(case) for case in load_tallrec(test)}
        repeated = [case.case_id for case in rows if _question(case) in questions]
        if repeated:
            raise DataError(
                f"{len(repeated)} rows repeat a question of {test.name} (rows {repeated[:5]}); drop them",
                path=str(dataset),
            )
    order = sorted(rows, key=lambda case: user_rng(seed, f"row:{case.case_id}").random())
    return QuestionSource(
        f"{dataset.parent.name}/{dataset.name} TALLRec rows",
        training=order[validation_rows:],
        validation=order[:validation_rows],
        data_sha256={dataset.name: fingerprint(dataset)},
    )


def _question(case: PointwiseCase) -> tuple:
    return (tuple(case.liked_titles), tuple(case.disliked_titles), case.target_title)
