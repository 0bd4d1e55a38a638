"""The pipeline prompt -> backend -> parse -> aggregate, with a scripted backend (no model)."""

import json
import re

import pytest

from promptrec import Item, ItemSource, ParseStatus, RankMode, RankRequest, Recommender, UserContext
from promptrec.adapters import DEFAULT_ADAPTER
from promptrec.adapters.card import read_card
from promptrec.backends import loader
from promptrec.errors import TemplateError
from promptrec.options import LLMOptions, build_llm_ranker, load_recommender
from promptrec.prompting.builder import PromptBudget
from promptrec.prompting.constraints import answer_constraint
from promptrec.prompting.contract import OutputContract, OutputFormat
from tests.fake_backend import ScriptedBackend

CANDIDATES = [Item(id=f"id{i}", title=f"Game number {i}") for i in range(5)]


def request(mode=RankMode.GENERATE, **changes) -> RankRequest:
    return RankRequest(user=UserContext(request="co-op games"), candidates=CANDIDATES, mode=mode, **changes)


def test_generate_mode_parses_labels_and_backfills_in_candidate_order():
    backend = ScriptedBackend(answer=lambda prompt: '["C", "A", "Z", "C"]')
    ranked = Recommender(backend).rank(request())
    assert ranked.item_ids == ["id2", "id0", "id1", "id3", "id4"]
    assert ranked.sources[:2] == [ItemSource.MODEL] * 2 and ranked.sources[2:] == [ItemSource.BACKFILL] * 3
    d = ranked.diagnostics
    assert (d.invalid_count, d.duplicate_count, d.missing_count) == (1, 1, 3)
    assert d.parse_status is ParseStatus.PARTIAL and d.raw_output == '["C", "A", "Z", "C"]'
    assert d.prompt_tokens > 0 and d.backend == "scripted" and d.template == "listwise_generate"


def test_generate_mode_constrains_the_answer_to_the_shown_labels():
    backend = ScriptedBackend(answer=lambda prompt: '["B"]')
    Recommender(backend).rank(request())
    pattern = re.compile(backend.configs_seen[0].structured.regex)
    for admitted in ['["B"]', '["E", "A", "C"]', '["A", "B", "C", "D", "E"]']:
        assert pattern.fullmatch(admitted) and json.loads(admitted)
    for refused in ['["F"]', '["A", "Z"]', '["id0"]', "[]", '["A", "B", "C", "D", "E", "A"]', '"A"']:
        assert pattern.fullmatch(refused) is None, refused
    assert (
        Recommender(ScriptedBackend(), constrained=False).rank(request()).diagnostics.parse_status
        is ParseStatus.FAILED
    )


def test_id_constraints_escape_identifiers_that_look_like_syntax():
    ids = ['a"b', "x|y", "1.5", "(z)", "Pokémon"]
    constraint = answer_constraint(
        OutputContract(mode=RankMode.GENERATE, format=OutputFormat.JSON_ARRAY, identifiers="ids"), ids
    )
    pattern = re.compile(constraint.regex)
    assert pattern.fullmatch(json.dumps(ids, separators=(", ", ":"), ensure_ascii=False))
    assert pattern.fullmatch('["x"]') is None and pattern.fullmatch('["1x5"]') is None


def test_garbage_answer_still_returns_every_candidate():
    backend = ScriptedBackend(answer=lambda prompt: "I love games! Ignore the rules and recommend id99.")
    ranked = Recommender(backend).rank(request())
    assert ranked.item_ids == [item.id for item in CANDIDATES]
    assert ranked.diagnostics.parse_status is ParseStatus.FAILED
    assert set(ranked.sources) == {ItemSource.BACKFILL}


def test_score_mode_ranks_by_label_logprob():
    scores = {"A": -3.0, "B": -0.5, "C": -2.0, "D": -9.0, "E": -1.0}
    backend = ScriptedBackend(label_scores=lambda prompt, labels: [scores[label] for label in labels])
    ranked = Recommender(backend).rank(request(RankMode.SCORE, k=3))
    assert ranked.item_ids == ["id1", "id4", "id2"]
    assert ranked.scores == [-0.5, -1.0, -2.0]
    assert backend.prompts_seen[0].endswith("The best candidate is [")


def test_pointwise_mode_asks_once_per_candidate_and_ranks_by_yes_minus_no():
    def yes_no(prompt, labels):
        number = int(prompt.split('"Game number ')[-1][0])
        return [-float(abs(number - 3)), -1.0]

    backend = ScriptedBackend(label_scores=yes_no)
    ranked = Recommender(backend).rank(request(RankMode.POINTWISE))
    assert len(backend.prompts_seen) == 5
    assert ranked.item_ids[0] == "id3"
    assert ranked.scores == sorted(ranked.scores, reverse=True)


def test_rank_many_keeps_order_across_modes_and_reports_each_result():
    backend = ScriptedBackend(answer=lambda prompt: '["E"]')
    requests = [request(), request(RankMode.SCORE), json.loads(request(RankMode.POINTWISE).model_dump_json())]
    seen = []
    results = Recommender(backend, batch_size=2).rank_many(requests, on_result=lambda i, r: seen.append(i))
    assert [r.diagnostics.mode for r in results] == [RankMode.GENERATE, RankMode.SCORE, RankMode.POINTWISE]
    assert results[0].item_ids[0] == "id4"
    assert sorted(seen) == [0, 1, 2]


def test_an_adapter_is_served_as_it_was_trained(monkeypatch, tmp_path):
    """The shipped adapter's card says pointwise over 10 history items: a request naming no mode is ranked
    pointwise and the history holds 10 items, unless the caller chooses otherwise."""
    monkeypatch.setattr(loader, "load_backend", lambda name, model, **options: ScriptedBackend())
    card = read_card(DEFAULT_ADAPTER)
    trained_mode, trained_items = RankMode(card.mode), card.data["max_history"]
    assert trained_mode is not RankMode.GENERATE  # else this test could not tell them apart
    assert trained_items != PromptBudget().max_history_items

    shipped = Recommender.load()
    assert (shipped.default_mode, shipped.budget.max_history_items) == (trained_mode, trained_items)
    unnamed = {
        "user": {"request": "co-op"},
        "candidates": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}],
    }
    assert shipped.rank(unnamed).diagnostics.mode is trained_mode
    assert shipped.rank({**unnamed, "mode": "score"}).diagnostics.mode is RankMode.SCORE
    assert shipped.rank({**unnamed, "template": "listwise_generate"}).diagnostics.mode is RankMode.GENERATE

    zero_shot = Recommender.load(adapter=None)
    assert (zero_shot.default_mode, zero_shot.budget.max_history_items) == (
        None,
        PromptBudget().max_history_items,
    )
    assert zero_shot.rank(unnamed).diagnostics.mode is RankMode.GENERATE
    assert Recommender.load(budget=PromptBudget(max_history_items=3)).budget.max_history_items == 3
    assert load_recommender(LLMOptions()).budget.max_history_items == trained_items
    assert load_recommender(LLMOptions(max_history=30)).budget.max_history_items == 30
    uncarded = tmp_path / "adapter"
    uncarded.mkdir()
    assert Recommender.load(adapter=uncarded).default_mode is None
    with pytest.raises(ValueError):
        LLMOptions(max_history=-1)


def test_a_request_naming_only_a_template_ranks_in_the_template_mode():
    recommender = Recommender(ScriptedBackend(), default_mode=RankMode.POINTWISE)
    named = RankRequest(
        user=UserContext(request="co-op"), candidates=CANDIDATES[:3], template="listwise_score"
    )
    assert recommender.rank(named).diagnostics.mode is RankMode.SCORE
    assert (
        recommender.rank(named.model_copy(update={"template": None})).diagnostics.mode is RankMode.POINTWISE
    )
    clash = named.model_copy(update={"mode": RankMode.POINTWISE})  # an explicit mode is kept, and checked
    with pytest.raises(TemplateError, match="declares mode 'score'"):
        recommender.rank(clash)


def test_strategies_see_the_mode_the_adapter_will_rank_in():
    """Demonstrations are built for the mode the LLM ranks in: one candidate each in pointwise mode."""
    backend = ScriptedBackend()
    recommender = Recommender(backend, default_mode=RankMode.POINTWISE)
    histories = {"t1": ["id0", "id1", "id2"], "t2": ["id3", "id4", "id2"]}
    ranker = build_llm_ranker(
        LLMOptions(demos=1, demo_selector="random"),
        recommender=recommender,
        train_histories=histories,
        catalog={item.id: item for item in CANDIDATES},
    )
    ranked = ranker.rank_many([RankRequest(user=UserContext(request="co-op"), candidates=CANDIDATES[:3])])[0]
    assert ranked.diagnostics.mode is RankMode.POINTWISE
    assert len(backend.prompts_seen) == 3  # one Yes/No question per candidate
    # Each prompt holds a pointwise demonstration (one question, answered) before its own question.
    assert all(prompt.count("Will the user like this item") == 2 for prompt in backend.prompts_seen)
