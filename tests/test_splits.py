"""Leave-one-out and sequence splits: the target is held out, negatives are unseen items, all seeded."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptrec.data import (
    Catalog,
    InteractionLog,
    RawInteraction,
    UserSequence,
    interaction_sort_key,
    leave_one_out,
    llmrank_train_histories,
    sequence_case,
)
from promptrec.errors import DataError
from promptrec.models import Item


def catalog_of(n: int) -> Catalog:
    return Catalog.from_items(Item(id=str(i), title=f"Item {i}") for i in range(1, n + 1))


def log_from(events: list[tuple[str, str, float]], n_items: int = 60) -> InteractionLog:
    rows = [RawInteraction(f"row {n}", user, item, stamp) for n, (user, item, stamp) in enumerate(events)]
    return InteractionLog.from_rows(rows, catalog_of(n_items))


EVENTS = [
    # user a: items 9 and 10 tie at the last timestamp -> item-id tie-break makes 10 the target.
    ("a", "10", 300.0), ("a", "3", 100.0), ("a", "9", 300.0), ("a", "4", 200.0),
    ("b", "5", 10.0), ("b", "6", 20.0),
    ("c", "7", 5.0),
    ("d", "1", 1.0), ("d", "2", 2.0), ("d", "8", 3.0),
]  # fmt: skip


def test_target_is_last_interaction_by_timestamp_then_item_id():
    split = leave_one_out(log_from(EVENTS), n_negatives=5)
    case = next(case for case in split.cases if case.case_id == "a")
    assert case.target_id == "10"
    assert [event.item_id for event in case.user.history] == ["3", "4", "9"]
    assert [item.id for item in case.history_items] == ["3", "4", "9"]


def test_negatives_are_unseen_catalogue_items_and_target_is_a_candidate():
    log = log_from(EVENTS)
    for case in leave_one_out(log, n_negatives=19).cases:
        seen = {event.item_id for event in log.histories[case.case_id]}
        ids = [item.id for item in case.candidates]
        assert len(ids) == 20 == len(set(ids))
        assert case.target_id in ids
        assert not (set(ids) - {case.target_id}) & seen
        assert all(item_id in log.catalog for item_id in ids)


def test_split_is_seeded_and_per_user():
    log = log_from(EVENTS)
    first, again = leave_one_out(log, seed=3), leave_one_out(log, seed=3)
    assert [c.candidates for c in first.cases] == [c.candidates for c in again.cases]
    other_seed = leave_one_out(log, seed=4)
    assert [c.candidates for c in first.cases] != [c.candidates for c in other_seed.cases]
    only_d = leave_one_out(log, seed=3, users=["d"])
    assert only_d.cases == [case for case in first.cases if case.case_id == "d"]


def test_target_position_is_shuffled():
    events = [(f"u{n}", str(item), float(item)) for n in range(30) for item in (n + 1, n + 2)]
    positions = {
        [item.id for item in case.candidates].index(case.target_id)
        for case in leave_one_out(log_from(events), n_negatives=9).cases
    }
    assert len(positions) > 3


def test_train_histories_exclude_every_users_held_out_item():
    log = log_from(EVENTS)
    split = leave_one_out(log, users=["a"])
    assert split.train_histories == {"a": ["3", "4", "9"], "b": ["5"], "c": [], "d": ["1", "2"]}
    case = split.cases[0]
    assert case.target_id not in split.train_histories["a"]


def test_short_histories_are_counted_not_dropped_silently():
    split = leave_one_out(log_from(EVENTS), min_history=2)
    assert sorted(case.case_id for case in split.cases) == ["a", "d"]
    (tally,) = split.quality.skipped.values()
    assert tally.count == 2
    assert tally.examples == ["user b: 2", "user c: 1"]


def test_bad_split_arguments_are_named():
    log = log_from(EVENTS, n_items=12)
    with pytest.raises(DataError, match=r"user ids \['zz'\] are not in the log; valid ids include"):
        leave_one_out(log, users=["zz"])
    with pytest.raises(DataError, match=r"record user a: only 8 catalogue items are unseen"):
        leave_one_out(log, n_negatives=9, users=["a"])
    with pytest.raises(ValueError, match="n_negatives"):
        leave_one_out(log, n_negatives=-1)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("xyz"), st.integers(1, 40).map(str), st.integers(0, 5).map(float)),
        min_size=1,
        max_size=40,
    )
)
def test_leave_one_out_invariants_hold_for_any_log(events):
    log = log_from(events)
    split = leave_one_out(log, n_negatives=4, min_history=0)
    for case in split.cases:
        history = log.histories[case.case_id]
        assert case.target_id == max(history, key=interaction_sort_key).item_id
        assert case.user.history == history[:-1]
        assert split.train_histories[case.case_id] == [event.item_id for event in history[:-1]]
        negatives = {item.id for item in case.candidates} - {case.target_id}
        assert not negatives & {event.item_id for event in history}


def test_sequence_case_excludes_history_and_target_from_negatives():
    sequence = UserSequence("line 2", "u", ("1", "2", "3"), "4")
    case = sequence_case(sequence, catalog_of(10), n_negatives=6)
    assert case.target_id == "4"
    assert [event.item_id for event in case.user.history] == ["1", "2", "3"]
    assert {item.id for item in case.candidates} == {"4", "5", "6", "7", "8", "9", "10"}


def write_inter(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["user_id:token\titem_id_list:token_seq\titem_id:token"] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_llmrank_train_histories_come_from_the_validation_file(tmp_path):
    valid = write_inter(tmp_path / "G.valid.inter", [("0", "1 2", "3"), ("1", "5", "6")])
    test = write_inter(tmp_path / "G.test.inter", [("0", "1 2 3", "4"), ("1", "5 6", "7")])
    assert llmrank_train_histories(valid, test) == {"0": ["1", "2", "3"], "1": ["5", "6"]}
    with pytest.raises(DataError, match=r"record line 2: user 0's train history .* does not end with"):
        llmrank_train_histories(test, test)
