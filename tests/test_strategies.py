"""Demonstrations and bootstrap: label-blind, within budget, and always a permutation of the candidates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from promptrec import cli
from promptrec.data.dataset import load_dataset
from promptrec.evaluation.runner import RunConfigMismatch
from promptrec.models import (
    Diagnostics,
    Interaction,
    Item,
    ItemSource,
    RankedList,
    RankMode,
    RankRequest,
    UserContext,
)
from promptrec.prompting.builder import PromptBudget, build_prompts
from promptrec.prompting.templates import TemplateLibrary
from promptrec.recommender import Recommender
from promptrec.strategies.bootstrap import BootstrapRanker, aggregate_passes, shuffled_request
from promptrec.strategies.demos import DemoPool, DemoRanker
from tests.fake_backend import ScriptedBackend
from tests.test_eval_runner import evaluate, scripted_answer, write_ranking_set

LIBRARY = TemplateLibrary()


def catalog_and_histories(n_users: int = 30, n_items: int = 400):
    catalog = {str(i): Item(id=str(i), title=f"Film {i}") for i in range(n_items)}
    histories = {f"t{u}": [str((u * 7 + j * 13) % n_items) for j in range(6)] for u in range(n_users)}
    return catalog, histories


def request_for(catalog, history, candidates, mode=RankMode.SCORE, user_id="u"):
    return RankRequest(
        user=UserContext(user_id=user_id, history=[Interaction(item_id=i) for i in history]),
        history_items=[catalog[i] for i in dict.fromkeys(history)],
        candidates=[catalog[i] for i in candidates],
        mode=mode,
    )


# --- demonstrations ------------------------------------------------------------------------------------


@pytest.mark.parametrize("selector", ["self", "random"])
@pytest.mark.parametrize("mode", [RankMode.SCORE, RankMode.POINTWISE, RankMode.GENERATE])
def test_demonstrations_never_show_the_requests_candidates(selector, mode):
    catalog, histories = catalog_and_histories()
    pool = DemoPool(histories, catalog, seed=3)
    candidates = [str(i) for i in range(300, 320)]
    request = request_for(catalog, ["1", "2", "3", "4"], candidates, mode=mode)
    demos = pool.demos_for(request, 2, selector)
    assert demos, "a history of four items (or thirty training users) gives demonstrations"
    for demo in demos:
        shown = {item.id for item in demo.candidates} | {event.item_id for event in demo.user.history}
        assert not shown & set(candidates), "a demonstration must not reveal anything about the candidates"
    if selector == "self":
        assert demos[0].chosen_id == "4" and [e.item_id for e in demos[0].user.history] == ["1", "2", "3"]
    if mode is RankMode.POINTWISE:
        assert [demo.chosen_id is not None for demo in demos] == [True, False]


@pytest.mark.parametrize("selector", ["self", "random"])
def test_demos_are_identical_for_cases_differing_only_in_target(tmp_path, selector):
    """Label swap: the evaluated target is never an input to demonstration selection or rendering."""
    prompts = []
    for slot in (0, 11):
        dataset = write_ranking_set(tmp_path / f"t{slot}.jsonl", 6, target_slot=slot)
        backend = ScriptedBackend(answer=scripted_answer)
        evaluate(
            dataset,
            tmp_path / f"out{slot}",
            backend,
            methods="llm",
            mode=RankMode.SCORE,
            demos=2,
            demo_selector=selector,
        )
        prompts.append(backend.prompts_seen)
    assert prompts[0] == prompts[1]
    assert any("<assistant>" in prompt.split("<user>")[1] for prompt in prompts[0]), "demos were rendered"


def test_demonstrations_share_the_budget_and_end_with_gold_answers():
    catalog, histories = catalog_and_histories()
    template = LIBRARY.get(None, RankMode.SCORE)
    request = request_for(catalog, [str(i) for i in range(40)], [str(i) for i in range(300, 310)])
    request = request.model_copy(
        update={"demos": DemoPool(histories, catalog).demos_for(request, 5, "random")}
    )
    backend = ScriptedBackend(max_context_tokens=700)
    built = build_prompts(request, template, backend.formatter, PromptBudget())
    assert 0 < built.demos_used < 5, "a 700-token context fits some demonstrations, not all five"
    assert backend.count_tokens(built.texts[0]) <= 700 - template.contract.max_new_tokens
    assert built.texts[0].count("<assistant>\nThe best candidate is [") == built.demos_used + 1
    roomy = build_prompts(
        request, template, ScriptedBackend(max_context_tokens=8000).formatter, PromptBudget()
    )
    assert roomy.demos_used == 5 and roomy.history_used == 40


# --- bootstrap -----------------------------------------------------------------------------------------


def ranked(ids, scores=None):
    return RankedList(
        item_ids=list(ids),
        scores=scores,
        sources=[ItemSource.MODEL] * len(ids),
        diagnostics=Diagnostics(),
    )


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 20),
    data=st.data(),
    with_scores=st.booleans(),
    passes=st.integers(1, 4),
    k=st.one_of(st.none(), st.integers(1, 20)),
)
def test_bootstrap_aggregation_is_a_permutation_of_the_candidates(n, data, with_scores, passes, k):
    catalog = {str(i): Item(id=str(i), title=f"t{i}") for i in range(n)}
    request = request_for(catalog, [], list(catalog)).model_copy(update={"k": k})
    floats = st.floats(allow_nan=True, allow_infinity=True)
    results = []
    for _ in range(passes):
        order = data.draw(st.permutations(list(catalog)))
        scores = (
            sorted(data.draw(st.lists(floats, min_size=n, max_size=n)), reverse=True) if with_scores else None
        )
        results.append(ranked(order, scores))
    combined = aggregate_passes(request, results)
    assert len(combined.item_ids) == request.effective_k
    assert len(set(combined.item_ids)) == len(combined.item_ids)
    assert set(combined.item_ids) <= set(catalog)
    assert len(combined.passes) == passes


def test_bootstrap_shuffles_are_label_blind_and_seeded():
    catalog = {str(i): Item(id=str(i), title=f"t{i}") for i in range(20)}
    request = request_for(catalog, ["0"], [str(i) for i in range(1, 20)])
    assert shuffled_request(request, 0, 0) == request
    first, again = shuffled_request(request, 0, 1), shuffled_request(request, 0, 1)
    assert first.candidates == again.candidates != request.candidates
    assert sorted(item.id for item in first.candidates) == sorted(item.id for item in request.candidates)


def test_bootstrap_cancels_a_pure_position_bias():
    """A model that always prefers the first slot ranks at random per pass; over every shift of the
    candidates the bias cancels, and its one real preference (item 7) comes out on top."""

    def first_slot_bias(prompt, labels):
        return [
            -float(i) + (5.0 if '"t7"' in line else 0.0)
            for i, line in enumerate(_candidate_lines(prompt, labels))
        ]

    backend = ScriptedBackend(label_scores=first_slot_bias)
    catalog = {str(i): Item(id=str(i), title=f"t{i}") for i in range(10)}
    request = request_for(catalog, [], [str(i) for i in range(10)])
    single = Recommender(backend).rank_many([request])[0]
    assert single.item_ids[:2] == ["0", "1"], "one pass follows the slot bias"
    result = BootstrapRanker(Recommender(backend), passes=6, seed=1).rank_many([request])[0]
    assert result.item_ids[0] == "7"
    assert len(result.passes) == 6
    assert len(backend.prompts_seen) == 7


def _candidate_lines(prompt: str, labels):
    lines = [line for line in prompt.splitlines() if line.startswith("[")]
    return lines[: len(labels)]


# --- options: one definition, request fields win over defaults, resume refuses changes ---------------


def test_rank_request_mode_is_not_overridden_by_the_cli_default(tmp_path, monkeypatch):
    seen = []

    class Recording(Recommender):
        def rank_many(self, requests, on_result=None):
            seen.extend(requests)
            return super().rank_many(requests, on_result)

    monkeypatch.setattr(cli, "make_ranker", lambda options, dataset=None, **_: Recording(ScriptedBackend()))
    request = {
        "user": {"request": "co-op"},
        "candidates": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}],
        "mode": "score",
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request), encoding="utf-8")
    result = CliRunner().invoke(cli.app, ["rank", "--request", str(path)])
    assert result.exit_code == 0, result.output
    assert seen[-1].mode is RankMode.SCORE
    assert json.loads(result.stdout)["diagnostics"]["mode"] == "score"
    explicit = CliRunner().invoke(cli.app, ["rank", "--request", str(path), "--mode", "pointwise"])
    assert explicit.exit_code == 0, explicit.output
    assert seen[-1].mode is RankMode.POINTWISE


@pytest.mark.parametrize("changed", [{"bootstrap": 3}, {"demos": 1}, {"max_history": 10}])
def test_resuming_with_changed_llm_options_is_refused(tmp_path, changed):
    dataset = write_ranking_set(tmp_path / "set.jsonl", 4)
    out = tmp_path / "out"
    evaluate(dataset, out, methods="llm", mode=RankMode.SCORE)
    option = next(iter(changed)).replace("_", "-")
    with pytest.raises(RunConfigMismatch, match=f"--{option}"):
        evaluate(dataset, out, methods="llm", mode=RankMode.SCORE, **changed)


def test_demo_ranker_draws_from_training_histories_of_a_real_dataset():
    data = load_dataset(Path(__file__).resolve().parent.parent / "promptrec" / "datasets" / "ml-latest-small")
    pool = DemoPool(data.train_histories, {item.id: item for item in data.catalog})
    request = data.case_for_user("1").to_request(mode=RankMode.SCORE)
    backend = ScriptedBackend()
    result = DemoRanker(Recommender(backend), pool, count=2, selector="random").rank_many([request])[0]
    assert result.diagnostics.demos_used == 2
    assert sorted(result.item_ids) == sorted(item.id for item in request.candidates)


def test_reports_name_datasets_relative_to_the_working_directory(tmp_path, monkeypatch):
    dataset = write_ranking_set(tmp_path / "set.jsonl", 4)
    monkeypatch.chdir(tmp_path)
    evaluate(dataset, tmp_path / "out", methods="random")
    for name in ("report.md", "run.json"):
        text = (tmp_path / "out" / name).read_text(encoding="utf-8")
        assert str(tmp_path) not in text, f"{name} names the machine's absolute path"
        assert "set.jsonl" in text
