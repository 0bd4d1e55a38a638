"""Training examples from a labelled log, built by the same template, builder and formatter as inference.

Each training user's item sequence gives leave-one-out prefixes (LlamaRec style): the items before
position t are the history, item t is the positive, and seeded random negatives come from catalogue items
the user never touched (some of them may be hard instead: hard_negatives.py). A prefix becomes a
`RankRequest`, `build_prompts` renders it exactly as a served request is rendered, and `gold_answer` gives
the answer the loss is put on, so a prompt trained on is a prompt served. The loss sits on one answer
token: the logits of the contract's answer labels at the last prompt position (Yes/No for pointwise, the
candidate labels for listwise score mode).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from promptrec.data.catalog import Catalog
from promptrec.data.splits import sample_negatives, user_rng
from promptrec.data.tallrec import PointwiseCase
from promptrec.errors import DataError
from promptrec.models import Interaction, RankingCase, RankMode, RankRequest, UserContext
from promptrec.prompting.builder import PromptBudget, build_prompts
from promptrec.prompting.formatter import PromptFormatter
from promptrec.prompting.gold import gold_answer
from promptrec.prompting.templates import PromptTemplate
from promptrec.training.hard_negatives import HardNegativeMiner

T = TypeVar("T")


class Objective(StrEnum):
    POINTWISE = "pointwise"  # one Yes/No question per candidate, balanced positives and negatives
    LISTWISE = "listwise"  # one listwise score-mode prompt; the answer is the positive's label
    RANKING = "ranking"  # pointwise prompts of one prefix's positive and negatives, softmax over margins

    @property
    def mode(self) -> RankMode:
        return RankMode.SCORE if self is Objective.LISTWISE else RankMode.POINTWISE


@dataclass(frozen=True)
class Prefix:
    """One leave-one-out step of a user's sequence: the items before `positive`, and `positive`."""

    user_id: str
    history: tuple[str, ...]
    positive: str


@dataclass(frozen=True)
class TrainingExample:
    user_id: str
    prompt: str  # the exact served prompt, ending where the answer token goes
    labels: tuple[str, ...]  # answer tokens compared by the loss
    target: int  # index into labels of the gold answer
    candidate_ids: tuple[str, ...]  # the items the prompt shows, in prompt order


@dataclass(frozen=True)
class RankingGroup:
    """The pointwise prompts of one prefix's positive (first) and its negatives, ranked by one softmax."""

    user_id: str
    prompts: tuple[str, ...]  # the exact served prompts, one per candidate, the positive's first
    labels: tuple[str, ...]  # (yes, no): each prompt's score is the margin of the first over the second
    candidate_ids: tuple[str, ...]  # the positive, then the negatives


def leave_one_out_prefixes(
    sequences: Mapping[str, Sequence[str]], *, per_user: int, min_history: int = 1
) -> list[Prefix]:
    """The newest `per_user` prefixes of every sequence (each prefix's next item is its positive)."""
    prefixes = []
    for user_id, sequence in sequences.items():
        last = len(sequence) - 1
        for position in range(last, max(min_history, last - per_user + 1) - 1, -1):
            prefixes.append(Prefix(user_id, tuple(sequence[:position]), sequence[position]))
    return prefixes


def build_examples(
    prefixes: Iterable[Prefix],
    sequences: Mapping[str, Sequence[str]],
    catalog: Catalog,
    template: PromptTemplate,
    formatter: PromptFormatter,
    budget: PromptBudget,
    *,
    objective: Objective,
    n_candidates: int = 20,
    seed: int = 0,
    withheld: frozenset[str] = frozenset(),
    hard_negatives: HardNegativeMiner | None = None,
) -> list[TrainingExample | RankingGroup]:
    """Examples for `objective`; negatives avoid every item of the user's whole sequence, not just the prefix.

    pointwise: per prefix, the positive (answer Yes) and one negative (answer No), so the classes balance.
    listwise: per prefix, the positive among n_candidates - 1 negatives, shuffled so its slot is uniform.
    ranking: per prefix, one group of the positive and n_candidates - 1 negatives (the softmax is blind to
    their order, so the positive stays first).
    `withheld` items (the evaluation targets) are never a candidate: prefixes ending in one are skipped.
    `hard_negatives` mines part of the negatives from item-kNN's top items for the prefix; the rest (and
    any the miner cannot supply) are random.
    """
    if template.contract.mode is not objective.mode:
        raise DataError(
            f"template {template.name!r} is a {template.contract.mode.value} template but objective "
            f"{objective.value!r} needs a {objective.mode.value} template"
        )
    examples: list[TrainingExample | RankingGroup] = []
    for prefix in prefixes:
        if prefix.positive in withheld:
            continue
        rng = user_rng(seed, f"{prefix.user_id}:{len(prefix.history)}")
        seen = set(sequences[prefix.user_id]) | withheld
        negatives_needed = 1 if objective is Objective.POINTWISE else n_candidates - 1
        hard: list[str] = []
        if hard_negatives is not None:
            count = hard_negatives.hard_count(negatives_needed, rng)
            hard = hard_negatives.draw(prefix.history, seen, count, rng)
        random_negatives = sample_negatives(
            catalog, seen | set(hard), negatives_needed - len(hard), rng, prefix.user_id
        )
        candidate_ids = [prefix.positive, *hard, *random_negatives]
        if objective is Objective.LISTWISE:
            rng.shuffle(candidate_ids)
        request = _request(prefix, candidate_ids, catalog, objective.mode)
        built = build_prompts(request, template, formatter, budget)
        if objective is Objective.RANKING:
            examples.append(_group_of(prefix, candidate_ids, built.texts, template))
        else:
            examples.extend(_examples_of(prefix, candidate_ids, built.texts, built.labels, template))
    return examples


def _request(prefix: Prefix, candidate_ids: Sequence[str], catalog: Catalog, mode: RankMode) -> RankRequest:
    return RankRequest(
        user=UserContext(user_id=prefix.user_id, history=[Interaction(item_id=i) for i in prefix.history]),
        candidates=[catalog[item_id] for item_id in candidate_ids],
        history_items=[catalog[item_id] for item_id in dict.fromkeys(prefix.history)],
        mode=mode,
    )


def _group_of(
    prefix: Prefix, candidate_ids: Sequence[str], texts: Sequence[str], template: PromptTemplate
) -> RankingGroup:
    contract = template.contract
    return RankingGroup(
        user_id=prefix.user_id,
        prompts=tuple(texts),
        labels=(contract.yes_label, contract.no_label),
        candidate_ids=tuple(candidate_ids),
    )


def _examples_of(
    prefix: Prefix,
    candidate_ids: Sequence[str],
    texts: Sequence[str],
    labels: Sequence[str],
    template: PromptTemplate,
) -> list[TrainingExample]:
    contract = template.contract
    if contract.mode is RankMode.POINTWISE:
        answers = (contract.yes_label, contract.no_label)
        return [
            TrainingExample(
                user_id=prefix.user_id,
                prompt=text,
                labels=answers,
                target=answers.index(gold_answer(contract, liked=item_id == prefix.positive)),
                candidate_ids=(item_id,),
            )
            for item_id, text in zip(candidate_ids, texts, strict=True)
        ]
    positive_label = labels[candidate_ids.index(prefix.positive)]
    return [
        TrainingExample(
            user_id=prefix.user_id,
            prompt=texts[0],
            labels=tuple(labels),
            target=labels.index(gold_answer(contract, best_first=[positive_label])),
            candidate_ids=tuple(candidate_ids),
        )
    ]


def question_examples(
    cases: Iterable[PointwiseCase], template: PromptTemplate, formatter: PromptFormatter, budget: PromptBudget
) -> list[TrainingExample]:
    """Labelled yes/no questions (TALLRec rows), each rendered as `promptrec eval` serves it, its own label
    the answer."""
    contract = template.contract
    if contract.mode is not RankMode.POINTWISE:
        raise DataError(f"template {template.name!r} is not a pointwise template; yes/no rows need one")
    answers = (contract.yes_label, contract.no_label)
    return [
        TrainingExample(
            user_id=f"row {case.case_id}",
            prompt=build_prompts(case.to_request(), template, formatter, budget).texts[0],
            labels=answers,
            target=answers.index(gold_answer(contract, liked=case.label)),
            candidate_ids=(case.target_title,),
        )
        for case in cases
    ]


def check_no_evaluation_leak(
    examples: Iterable[TrainingExample | RankingGroup], evaluation: Iterable[RankingCase]
) -> None:
    """DataError if an evaluation user reaches the training examples, or an evaluation target is a
    training candidate (the item the loss is put on)."""
    evaluated = {case.case_id: case.target_id for case in evaluation}
    targets = set(evaluated.values())
    for example in examples:
        if example.user_id in evaluated:
            raise DataError(
                f"training example of user {example.user_id!r}, an evaluation user (target "
                f"{evaluated[example.user_id]!r}); exclude evaluation users from the training log",
                record=f"user {example.user_id}",
            )
        shown = targets.intersection(example.candidate_ids)
        if shown:
            raise DataError(
                f"training example of user {example.user_id!r} shows evaluation targets {sorted(shown)} as "
                "candidates; pass them as `withheld` to build_examples",
                record=f"user {example.user_id}",
            )


def shuffled(items: Sequence[T], seed: int) -> list[T]:
    """A seeded shuffle of prefixes or examples: the training order is part of what a seed fixes."""
    order = list(items)
    random.Random(seed).shuffle(order)
    return order


def examples_sha256(examples: Iterable[TrainingExample | RankingGroup]) -> str:
    """Fingerprint of a training set, in order: what an adapter card records and a resumed run must match."""
    digest = hashlib.sha256()
    for example in examples:
        if isinstance(example, RankingGroup):
            digest.update(f"{example.prompts}\x00{example.labels}\x01".encode())
        else:
            digest.update(f"{example.prompt}\x00{example.labels}\x00{example.target}\x01".encode())
    return digest.hexdigest()
