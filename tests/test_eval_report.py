"""What an evaluation leaves in --out: metrics.json (every metric, its CI), report.md, diagnostics, plots."""

from __future__ import annotations

import json

import pytest

from promptrec.errors import RequestError
from promptrec.evaluation.report import random_analytic
from promptrec.evaluation.slices import by_target_position, history_bucket
from promptrec.models import RankMode
from tests.fake_backend import ScriptedBackend
from tests.test_eval_runner import evaluate, write_ranking_set

RANKING_KEYS = {"ndcg@1", "ndcg@5", "ndcg@10", "ndcg@20", "hr@1", "hr@5", "hr@10", "hr@20", "mrr"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ranking_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("games")
    dataset = write_ranking_set(root / "games_cands20.jsonl", 24)
    out = root / "out"
    metrics = evaluate(dataset, out, methods="llm,random,popularity,bm25,itemknn")
    return out, metrics


def test_metrics_json_holds_every_metric_with_its_ci_per_method(ranking_run):
    out, returned = ranking_run
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics == json.loads(json.dumps(returned))
    assert list(metrics) == ["llm", "random", "popularity", "bm25", "itemknn"]
    for method, summary in metrics.items():
        assert summary["n"] == 24
        assert set(summary) >= RANKING_KEYS and set(summary["ci95"]) == RANKING_KEYS
        for name in RANKING_KEYS:
            low, high = summary["ci95"][name]
            assert 0.0 <= low <= summary[name] <= high <= 1.0
        assert len(summary["ndcg_curve"]) == 20
        assert summary["ndcg_curve"][9] == pytest.approx(summary["ndcg@10"])
        slices = summary["slices"]
        assert list(slices["history_length"]) == ["<=2 (cold start)", "3-5", ">5"]
        assert sum(group["n"] for group in slices["history_length"].values()) == 24
        positions = list(slices["target_position"])
        assert positions == [str(p) for p in range(1, len(positions) + 1)]
        assert sum(group["n"] for group in slices["target_position"].values()) == 24
        if method != "random":
            comparison = summary["vs_random"]
            assert set(comparison) == {"ndcg@10", "hr@10", "mrr"}
            assert 0.0 < comparison["ndcg@10"]["p_value"] <= 1.0
            difference = summary["ndcg@10"] - metrics["random"]["ndcg@10"]
            assert comparison["ndcg@10"]["difference"] == pytest.approx(difference)
    assert "target_tie_rate" in metrics["popularity"] and "target_tie_rate" not in metrics["llm"]


def test_llm_diagnostics_count_backfill_and_tokens(ranking_run):
    out, _ = ranking_run
    diagnostics = json.loads((out / "diagnostics.json").read_text(encoding="utf-8"))
    assert list(diagnostics) == ["llm"]
    llm = diagnostics["llm"]
    # The scripted model names 12 of 20 candidates: every case is partial with 8 back-filled positions.
    assert llm["parse_failure_rate"] == 0.0 and llm["partial_parse_rate"] == 1.0
    assert llm["cases_with_backfill_rate"] == 1.0 and llm["backfilled_position_share"] == pytest.approx(0.4)
    assert llm["mean_prompt_tokens"] > 0 and llm["mean_latency_s"] >= 0


def test_report_and_plots_are_written(ranking_run):
    out, _ = ranking_run
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in (
        "## Results",
        "## Paired comparison",
        "### History length",
        "### Target position",
        "## Tie-break rules",
        "## LLM diagnostics",
        "## Plots",
        "## Timings",
    ):
        assert heading in report
    assert "| random (analytic expectation) |  | 5.0 | 14.7 | 22.7 | 35.2 |" in report
    assert "LLMRank GPT-4, Games" in report and "62.88" in report  # the path names Games
    assert "seeded per-user random order" in report
    for name in ("ndcg_at_k.png", "hit_rate_by_position.png", "ndcg10_by_history_length.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in report
    timings = json.loads((out / "timings.json").read_text(encoding="utf-8"))
    assert timings["llm"]["answered"] == 24 and timings["llm"]["invocations"] == 1


def write_tallrec(path, rows: int) -> None:
    data = []
    for index in range(rows):
        liked = ", ".join(f'"Liked film {index}-{k} (1990)"' for k in range(1 + index % 4))
        good = index % 2 == 0
        target = f"{'Good' if good else 'Dull'} film {index} (1995)"
        data.append(
            {
                "instruction": "Given the user's preference and unpreference, answer Yes. or No.",
                "input": f'User Preference: {liked}\nUser Unpreference: "Bad film {index} (1980)"\n'
                f'Whether the user will like the target movie "{target}"?',
                "output": "Yes." if good else "No.",
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_tallrec_protocol_scores_auc_from_pointwise_llm_answers(tmp_path):
    dataset = tmp_path / "tallrec" / "movie" / "test.json"
    write_tallrec(dataset, 40)

    def yes_no(prompt, labels):  # P(yes) high exactly when the asked-about title is a "Good" film
        asked = prompt.rsplit("Will the user like this item", 1)[-1]
        return [0.0, -3.0] if "Good film" in asked else [-3.0, 0.0]

    backend = ScriptedBackend(label_scores=yes_no)
    metrics = evaluate(dataset, tmp_path / "out", backend, methods="llm,random")
    assert len(backend.prompts_seen) == 40  # one single-candidate question per row
    assert metrics["llm"]["auc"] == 1.0 and metrics["llm"]["n"] == 40 and metrics["llm"]["positives"] == 20
    assert metrics["llm"]["ci95"]["auc"] == [1.0, 1.0]
    assert 0.2 < metrics["random"]["auc"] < 0.8
    assert metrics["llm"]["vs_random"]["auc"]["difference"] > 0
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "TALLRec LLaMA-7B+LoRA, 256 training samples" in report and "71.98" in report
    assert (tmp_path / "out" / "roc.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(RequestError, match="--mode pointwise"):
        evaluate(dataset, tmp_path / "other", backend, methods="llm", mode=RankMode.GENERATE)


def test_history_buckets_and_position_groups():
    assert [history_bucket(n) for n in (0, 2, 3, 5, 6, 50)] == [
        "<=2 (cold start)",
        "<=2 (cold start)",
        "3-5",
        "3-5",
        ">5",
        ">5",
    ]
    groups = by_target_position([{"target_position": 3}, {"target_position": 1}])
    assert list(groups) == ["1", "2", "3"] and groups["2"] == []


def test_random_analytic_matches_the_published_floor():
    expected = random_analytic(20)
    assert [round(100 * expected[f"ndcg@{k}"], 1) for k in (1, 5, 10, 20)] == [5.0, 14.7, 22.7, 35.2]
    assert expected["hr@10"] == 0.5 and expected["mrr"] == pytest.approx(0.1799, abs=1e-4)
