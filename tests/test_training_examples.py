"""Training examples: served prompts, no evaluation user or target, shuffled candidates, balanced answers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from scipy.stats import chisquare

from promptrec.data.splits import held_out_users
from promptrec.demo import DEMO_DATASET, DEMO_USER
from promptrec.errors import DataError, RequestError
from promptrec.models import Interaction, RankMode, RankRequest, UserContext
from promptrec.prompting.builder import PromptBudget, build_prompts
from promptrec.prompting.formatter import PromptFormatter
from promptrec.prompting.templates import TemplateLibrary
from promptrec.training.examples import (
    Objective,
    Prefix,
    RankingGroup,
    build_examples,
    check_no_evaluation_leak,
    leave_one_out_prefixes,
    question_examples,
)
from promptrec.training.hard_negatives import HardNegativeMiner
from promptrec.training.sources import load_question_source, load_training_source
from tests.test_data_loaders import tallrec_row

BUDGET = PromptBudget(max_history_items=5)


@pytest.fixture(scope="module")
def formatter(bundled_model_dir: Path) -> PromptFormatter:
    return PromptFormatter.from_model_dir(bundled_model_dir)


def games_like(folder: Path, n_users: int = 30, evaluated: int = 5) -> tuple[Path, Path]:
    """An LLMRank-shaped pair: a .valid.inter log of n_users, and a ranking set of its first `evaluated`
    users whose targets are items nobody else has."""
    n_items = 200
    (folder / "Toy.item").write_text(
        "item_id:token\ttitle:token_seq\n" + "".join(f"{n}\tGame {n}\n" for n in range(n_items)),
        encoding="utf-8",
    )
    rows, cases = [], []
    for user in range(n_users):
        items = [str((user * 7 + step) % 150) for step in range(6)]
        rows.append(f"{user}\t{' '.join(items[:-1])}\t{items[-1]}\n")
        if user < evaluated:
            target = str(150 + user)  # an evaluation target: must never reach training
            candidates = [target, *(str(160 + user * 3 + k) for k in range(3))]
            cases.append(
                {
                    "user_id": str(user),
                    "history_item_ids": items,
                    "history_titles": [f"Game {i}" for i in items],
                    "candidate_item_ids": candidates,
                    "candidate_titles": [f"Game {i}" for i in candidates],
                    "target_item_id": target,
                    "target_title": f"Game {target}",
                }
            )
    inter = folder / "Toy.valid.inter"
    inter.write_text(
        "user_id:token\titem_id_list:token_seq\titem_id:token\n" + "".join(rows), encoding="utf-8"
    )
    ranking = folder / "toy_cands.jsonl"
    ranking.write_text("".join(json.dumps(case) + "\n" for case in cases), encoding="utf-8")
    return ranking, inter


def built(prefixes, source, template, formatter, **options):
    """`build_examples` over a loaded training source, with this module's budget."""
    return build_examples(prefixes, source.sequences, source.catalog, template, formatter, BUDGET, **options)


def test_games_shape_excludes_evaluation_users_and_never_shows_their_targets(
    tmp_path: Path, formatter: PromptFormatter
) -> None:
    ranking, inter = games_like(tmp_path)
    source = load_training_source(ranking, inter, validation_users=3)
    evaluated = {case.case_id for case in source.evaluation}
    assert evaluated == {"0", "1", "2", "3", "4"}
    assert not evaluated & set(source.sequences)
    assert not {case.case_id for case in source.validation} & set(source.sequences)

    template = TemplateLibrary().get(None, RankMode.POINTWISE)
    prefixes = leave_one_out_prefixes(source.sequences, per_user=3)
    targets = frozenset(case.target_id for case in source.evaluation)
    examples = built(prefixes, source, template, formatter, objective=Objective.POINTWISE, withheld=targets)
    assert len(examples) == 2 * len(prefixes)
    check_no_evaluation_leak(examples, source.evaluation)
    titles = {f'"Game {target}"' for target in targets}
    assert not any(title in example.prompt for example in examples for title in titles)

    target_as_positive = Prefix("9", ("0",), "150")
    sequences = {"9": ["0", "150"]}
    args = ([target_as_positive], sequences, source.catalog, template, formatter, BUDGET)
    assert build_examples(*args, objective=Objective.POINTWISE, withheld=targets) == []
    with pytest.raises(DataError, match="shows evaluation targets"):
        check_no_evaluation_leak(build_examples(*args, objective=Objective.POINTWISE), source.evaluation)

    leaking = build_examples(
        [Prefix("0", ("0", "7"), "14")],
        {"0": ["0", "7", "14"]},
        source.catalog,
        template,
        formatter,
        BUDGET,
        objective=Objective.POINTWISE,
    )
    with pytest.raises(DataError, match="evaluation user"):
        check_no_evaluation_leak(leaking, source.evaluation)


def test_movielens_holds_out_a_deterministic_user_split_with_the_demo_user() -> None:
    source = load_training_source(DEMO_DATASET, validation_users=10)
    evaluated = {case.case_id for case in source.evaluation}
    assert DEMO_USER in evaluated
    assert evaluated == held_out_users(str(user) for user in range(1, 611))
    assert 0.1 < len(evaluated) / 610 < 0.3
    assert not evaluated & set(source.sequences)
    assert len(source.validation) == 10


def test_pointwise_examples_are_served_prompts_with_balanced_answers(formatter: PromptFormatter) -> None:
    source = load_training_source(DEMO_DATASET, validation_users=0)
    template = TemplateLibrary().get(None, RankMode.POINTWISE)
    prefixes = leave_one_out_prefixes(dict(list(source.sequences.items())[:20]), per_user=2)
    assert all(p.positive == source.sequences[p.user_id][len(p.history)] for p in prefixes)
    examples = build_examples(
        prefixes, source.sequences, source.catalog, template, formatter, BUDGET, objective=Objective.POINTWISE
    )
    assert len(examples) == 2 * len(prefixes) == 80
    assert Counter(example.target for example in examples) == {0: 40, 1: 40}
    first = examples[0]
    positive, negative = first.candidate_ids[0], examples[1].candidate_ids[0]
    assert negative not in source.sequences[first.user_id]
    assert first.labels == ("Yes", "No") and first.target == 0 and examples[1].target == 1
    served = build_prompts(
        _request_for(prefixes[0], [positive, negative], source), template, formatter, BUDGET
    )
    assert served.texts == [first.prompt, examples[1].prompt]


def test_listwise_candidate_order_is_shuffled_so_the_answer_slot_is_uniform(
    formatter: PromptFormatter,
) -> None:
    source = load_training_source(DEMO_DATASET, validation_users=0)
    template = TemplateLibrary().get(None, RankMode.SCORE)
    prefixes = leave_one_out_prefixes(dict(list(source.sequences.items())[:100]), per_user=2)
    examples = build_examples(
        prefixes,
        source.sequences,
        source.catalog,
        template,
        formatter,
        BUDGET,
        objective=Objective.LISTWISE,
        n_candidates=10,
    )
    assert len(examples) == 200
    for example, prefix in zip(examples, prefixes, strict=True):
        assert example.candidate_ids[example.target] == prefix.positive
        assert example.prompt.endswith(template.contract.answer_prefix)
    slots = Counter(example.target for example in examples)
    assert len(slots) == 10  # every slot holds the answer sometimes
    assert chisquare([slots[slot] for slot in range(10)]).pvalue > 0.001


def test_ranking_groups_are_served_prompts_of_a_positive_and_its_unseen_negatives(
    tmp_path: Path, formatter: PromptFormatter
) -> None:
    ranking, inter = games_like(tmp_path)
    source = load_training_source(ranking, inter, validation_users=3)
    template = TemplateLibrary().get(None, RankMode.POINTWISE)
    prefixes = leave_one_out_prefixes(source.sequences, per_user=2)
    targets = frozenset(case.target_id for case in source.evaluation)
    groups = built(
        prefixes, source, template, formatter, objective=Objective.RANKING, n_candidates=4, withheld=targets
    )
    assert len(groups) == len(prefixes)  # one group per prefix
    for group, prefix in zip(groups, prefixes, strict=True):
        assert isinstance(group, RankingGroup) and group.labels == ("Yes", "No")
        assert group.candidate_ids[0] == prefix.positive and len(set(group.candidate_ids)) == 4
        assert not set(group.candidate_ids[1:]) & (set(source.sequences[prefix.user_id]) | targets)
        served = build_prompts(
            _request_for(prefix, list(group.candidate_ids), source), template, formatter, BUDGET
        )
        assert list(group.prompts) == served.texts
    check_no_evaluation_leak(groups, source.evaluation)
    shown_target = [RankingGroup("9", ("?",), ("Yes", "No"), ("0", sorted(targets)[0]))]
    with pytest.raises(DataError, match="shows evaluation targets"):
        check_no_evaluation_leak(shown_target, source.evaluation)


def test_objective_needs_a_template_of_its_mode(formatter: PromptFormatter) -> None:
    source = load_training_source(DEMO_DATASET, validation_users=0)
    with pytest.raises(DataError, match="needs a score template"):
        build_examples(
            [],
            source.sequences,
            source.catalog,
            TemplateLibrary().get(None, RankMode.POINTWISE),
            formatter,
            BUDGET,
            objective=Objective.LISTWISE,
        )


def _request_for(prefix: Prefix, candidate_ids: list[str], source) -> RankRequest:
    """The request a served pointwise call would get for this prefix and these candidates."""
    return RankRequest(
        user=UserContext(user_id=prefix.user_id, history=[Interaction(item_id=i) for i in prefix.history]),
        candidates=[source.catalog[i] for i in candidate_ids],
        history_items=[source.catalog[i] for i in dict.fromkeys(prefix.history)],
        mode=RankMode.POINTWISE,
    )


def write_tallrec(path: Path, rows: list[tuple[str, str, bool]]) -> Path:
    """TALLRec rows (liked title, target title, label), each with one disliked film."""
    lines = [
        tallrec_row(f'"{liked}"', '"Dull film (1990)"', f'"{target}"', "Yes." if label else "No.")
        for liked, target, label in rows
    ]
    path.write_text(json.dumps(lines), encoding="utf-8")
    return path


def test_tallrec_rows_train_as_served_questions_with_their_own_answers(
    formatter: PromptFormatter, tmp_path: Path
) -> None:
    rows = [(f"Liked film {i} (1995)", f"Target film {i} (2001)", i % 3 == 0) for i in range(12)]
    pool = load_question_source(write_tallrec(tmp_path / "valid.json", rows), validation_rows=4)
    assert len(pool.training) == 8 and len(pool.validation) == 4
    assert {case.case_id for case in pool.training}.isdisjoint(case.case_id for case in pool.validation)
    template = TemplateLibrary().get(None, RankMode.POINTWISE)
    examples = question_examples(pool.training, template, formatter, BUDGET)
    for case, example in zip(pool.training, examples, strict=True):
        assert example.prompt == build_prompts(case.to_request(), template, formatter, BUDGET).texts[0]
        assert example.labels[example.target] == ("Yes" if case.label else "No")
        assert case.target_title in example.prompt


def test_tallrec_test_questions_never_train(tmp_path: Path) -> None:
    test = write_tallrec(tmp_path / "test.json", [("Alien (1979)", "Heat (1995)", True)])
    with pytest.raises(RequestError, match="evaluation set"):
        load_question_source(test)
    leaking = [("Up (2009)", "Big (1988)", False), ("Alien (1979)", "Heat (1995)", False)]
    with pytest.raises(DataError, match="1 rows repeat a question of test.json"):
        load_question_source(write_tallrec(tmp_path / "valid.json", leaking))


def test_hard_negatives_come_from_item_knn_top_items_and_never_from_the_user_or_the_withheld(
    formatter: PromptFormatter,
) -> None:
    source = load_training_source(DEMO_DATASET, validation_users=0)
    miner = HardNegativeMiner(source.sequences, source.catalog, fraction=1.0, pool_size=20)
    template = TemplateLibrary().get(None, RankMode.POINTWISE)
    prefixes = leave_one_out_prefixes(dict(list(source.sequences.items())[:30]), per_user=1)
    # The single best mined item of the first prefix is withheld, as an evaluation target would be.
    first = prefixes[0]
    withheld = frozenset(miner.pool(first.history, set(source.sequences[first.user_id]))[:1])
    assert withheld

    def negatives(hard_negatives: HardNegativeMiner | None) -> list[tuple[Prefix, str]]:
        examples = build_examples(
            prefixes,
            source.sequences,
            source.catalog,
            template,
            formatter,
            BUDGET,
            objective=Objective.POINTWISE,
            withheld=withheld,
            hard_negatives=hard_negatives,
        )
        assert Counter(example.target for example in examples) == {0: 30, 1: 30}
        return [
            (prefix, example.candidate_ids[0])
            for prefix, example in zip(prefixes, examples[1::2], strict=True)
        ]

    mined = negatives(miner)
    for prefix, negative in mined:
        seen = set(source.sequences[prefix.user_id])
        assert negative not in seen and negative not in withheld
        assert negative in miner.pool(prefix.history, seen | withheld)
    unmined = [
        negative in miner.pool(p.history, set(source.sequences[p.user_id])) for p, negative in negatives(None)
    ]
    assert sum(unmined) < 10  # random negatives rarely land among the 20 best of 9,700 films

    listwise = build_examples(
        prefixes[:5],
        source.sequences,
        source.catalog,
        TemplateLibrary().get(None, RankMode.SCORE),
        formatter,
        BUDGET,
        objective=Objective.LISTWISE,
        n_candidates=11,
        hard_negatives=HardNegativeMiner(source.sequences, source.catalog, fraction=0.5, pool_size=20),
    )
    for prefix, example in zip(prefixes[:5], listwise, strict=True):
        pool = set(miner.pool(prefix.history, set(source.sequences[prefix.user_id])))
        assert len(set(example.candidate_ids) & pool) >= 5  # half of the 10 negatives, plus chance


def test_hard_negative_options_are_checked() -> None:
    source = load_training_source(DEMO_DATASET, validation_users=0)
    for fraction in (0.0, 1.5):
        with pytest.raises(RequestError, match="fraction"):
            HardNegativeMiner(source.sequences, source.catalog, fraction=fraction)
    with pytest.raises(RequestError, match="pool_size"):
        HardNegativeMiner(source.sequences, source.catalog, fraction=0.5, pool_size=0)
