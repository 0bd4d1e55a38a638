"""Evaluation splits: leave-one-out over an InteractionLog, and cases from LLMRank-style user sequences.

Label safety: a case's history holds only interactions before its target; negatives come from catalogue
items the user never interacted with (neither history nor target); candidate order is shuffled with a
per-user seeded RNG, so the target's position carries no information.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from promptrec.data.catalog import Catalog, InteractionLog
from promptrec.data.quality import DataQualityReport
from promptrec.data.recbole import UserSequence, load_sequence_inter
from promptrec.errors import DataError
from promptrec.models import Interaction, RankingCase, UserContext


def user_rng(seed: int, user_id: str) -> random.Random:
    # A string seed goes through SHA-512: stable across processes, unlike hash(), and independent per user.
    return random.Random(f"{seed}:{user_id}")


def sample_negatives(
    catalog: Catalog, excluded: set[str], n: int, rng: random.Random, user_id: str
) -> list[str]:
    """n distinct catalogue ids outside `excluded`, drawn with `rng`; DataError if too few exist."""
    available = len(catalog) - sum(1 for item_id in excluded if item_id in catalog)
    if available < n:
        raise DataError(
            f"only {available} catalogue items are unseen by this user but {n} negatives were asked "
            "for; lower n_negatives or use a larger catalogue",
            record=f"user {user_id}",
        )
    if available < 2 * n:
        pool = [item_id for item_id in catalog.ids if item_id not in excluded]
        return rng.sample(pool, n)
    # Rejection sampling: user histories are tiny next to the catalogue, so this ends after ~n draws.
    chosen: list[str] = []
    taken: set[str] = set()
    while len(chosen) < n:
        item_id = catalog.ids[rng.randrange(len(catalog.ids))]
        if item_id not in excluded and item_id not in taken:
            chosen.append(item_id)
            taken.add(item_id)
    return chosen


def build_case(
    user_id: str,
    history: Sequence[Interaction],
    target_id: str,
    catalog: Catalog,
    *,
    excluded: set[str],
    n_negatives: int,
    seed: int,
) -> RankingCase:
    """Target plus sampled negatives, shuffled by the user's RNG; `excluded` holds every item the user saw."""
    rng = user_rng(seed, user_id)
    candidate_ids = [target_id, *sample_negatives(catalog, excluded, n_negatives, rng, user_id)]
    rng.shuffle(candidate_ids)
    history_ids = dict.fromkeys(event.item_id for event in history)
    return RankingCase(
        case_id=user_id,
        user=UserContext(user_id=user_id, history=list(history)),
        candidates=[catalog[item_id] for item_id in candidate_ids],
        history_items=[catalog[item_id] for item_id in history_ids],
        target_id=target_id,
    )


@dataclass(frozen=True)
class LeaveOneOutSplit:
    cases: list[RankingCase]
    train_histories: dict[str, list[str]]  # every user's item ids except their last (held-out) interaction
    quality: DataQualityReport  # the log's report plus users skipped by the split


def _check_users(users: Iterable[str], known: dict[str, object]) -> list[str]:
    selected = list(dict.fromkeys(users))
    unknown = [user_id for user_id in selected if user_id not in known]
    if unknown:
        raise DataError(f"user ids {unknown[:5]} are not in the log; valid ids include {list(known)[:5]}")
    return selected


def leave_one_out(
    log: InteractionLog,
    n_negatives: int = 19,
    seed: int = 0,
    min_history: int = 1,
    users: Iterable[str] | None = None,
) -> LeaveOneOutSplit:
    """Hold out each user's last interaction by (timestamp, item id) as the target; the rest is the history.

    Users with fewer than min_history + 1 interactions get no case (counted in `quality.skipped`).
    train_histories drops every user's last interaction, evaluated or not, so baseline statistics are the
    same whichever users are selected and never include an evaluated target.
    """
    if n_negatives < 0 or min_history < 0:
        raise ValueError("n_negatives and min_history must be >= 0")
    selected = log.user_ids if users is None else _check_users(users, log.histories)
    quality = log.quality.model_copy(deep=True)
    cases = []
    for user_id in selected:
        history = log.histories[user_id]
        if len(history) < min_history + 1:
            quality.skip(
                f"user has fewer than {min_history + 1} interactions (min_history={min_history})",
                f"user {user_id}: {len(history)}",
            )
            continue
        cases.append(
            build_case(
                user_id,
                history[:-1],
                history[-1].item_id,
                log.catalog,
                excluded={event.item_id for event in history},
                n_negatives=n_negatives,
                seed=seed,
            )
        )
    train = {user_id: [event.item_id for event in history[:-1]] for user_id, history in log.histories.items()}
    return LeaveOneOutSplit(cases, train, quality)


def sequence_case(
    sequence: UserSequence, catalog: Catalog, *, n_negatives: int = 19, seed: int = 0
) -> RankingCase:
    """A case from an LLMRank sequence row: the history as given, the next item as target."""
    history = [Interaction(item_id=item_id) for item_id in sequence.history]
    return build_case(
        sequence.user_id,
        history,
        sequence.next_item,
        catalog,
        excluded={*sequence.history, sequence.next_item},
        n_negatives=n_negatives,
        seed=seed,
    )


def llmrank_train_histories(
    valid_inter: str | Path, test_inter: str | Path | None = None
) -> dict[str, list[str]]:
    """Train histories from an LLMRank `.valid.inter` file: each user's history plus their validation item.

    The validation item is the one just before the test target, so nothing here is a test target. Passing
    `test_inter` checks that claim: each test history must end the train history, else DataError (e.g. the
    test file was given as the validation file).
    """
    train = {seq.user_id: [*seq.history, seq.next_item] for seq in load_sequence_inter(Path(valid_inter))}
    if test_inter is not None:
        for seq in load_sequence_inter(Path(test_inter)):
            prefix = train.get(seq.user_id, [])
            if seq.history and prefix[-len(seq.history) :] != list(seq.history):
                raise DataError(
                    f"user {seq.user_id}'s train history from {valid_inter} does not end with their "
                    "test history; pass the .valid.inter file of the same split",
                    path=str(test_inter),
                    record=seq.record,
                )
    return train


# Users of a leave-one-out log kept out of fine-tuning, so the shipped adapter is measured on users it never
# saw. User "1" is promptrec.demo.DEMO_USER: the demo must show a user the adapter was not trained on.
HELD_OUT_FRACTION = 0.2
ALWAYS_HELD_OUT = ("1",)


def held_out_users(
    user_ids: Iterable[str],
    fraction: float = HELD_OUT_FRACTION,
    seed: int = 0,
    always: Iterable[str] = ALWAYS_HELD_OUT,
) -> set[str]:
    """A deterministic user split: the users kept out of training (evaluation users), plus `always`.

    Membership depends only on (seed, user id), never on which other users exist, so adding users to a
    log never moves an existing user across the split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    ids = list(user_ids)
    chosen = {user_id for user_id in ids if user_rng(seed, f"holdout:{user_id}").random() < fraction}
    return chosen | (set(always) & set(ids))
