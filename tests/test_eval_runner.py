"""`promptrec eval` runs: no label leakage, resumable results, typed config errors, the random floor.

Every dataset here is tiny and written into tmp_path; the LLM is tests/fake_backend.py's ScriptedBackend.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from promptrec.errors import BackendError, DataError
from promptrec.evaluation.command import build_config, eval_command, run_evaluation
from promptrec.evaluation.protocols import Protocol
from promptrec.evaluation.runner import ResultStore, RunConfigMismatch
from promptrec.models import RankMode
from promptrec.options import LLMOptions
from promptrec.recommender import Recommender
from tests.fake_backend import ScriptedBackend

CANDIDATE_LINE = re.compile(r'\[([A-Z])\] "([^"]*)"')


def title(item: int) -> str:
    return f"Game number {item}"


def ranking_row(user_id: str, history: list[int], candidates: list[int], target: int) -> str:
    """One LLMRank-format JSON line; item i is titled title(i)."""
    return json.dumps(
        {
            "user_id": user_id,
            "history_item_ids": [str(i) for i in history],
            "history_titles": [title(i) for i in history],
            "candidate_item_ids": [str(i) for i in candidates],
            "candidate_titles": [title(i) for i in candidates],
            "target_item_id": str(target),
            "target_title": title(target),
        }
    )


def write_ranking_set(
    path: Path, n_users: int, *, n_candidates: int = 20, seed: int = 0, target_slot: int | None = None
) -> Path:
    """An LLMRank-style JSONL set. target_slot fixes which candidate is the target (else a random one)."""
    rng = random.Random(seed)
    lines = []
    for user in range(n_users):
        items = rng.sample(range(5000), 8 + n_candidates)
        history = items[: 1 + user % 8]  # lengths 1..8: every history-length slice is populated
        candidates = items[8:]
        target = candidates[rng.randrange(n_candidates) if target_slot is None else target_slot]
        lines.append(ranking_row(f"u{user}", history, candidates, target))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def scripted_answer(prompt: str) -> str:
    """Rank the labelled candidates by a hash of their titles; name only 12 (the rest are back-filled)."""
    pairs = CANDIDATE_LINE.findall(prompt)
    ranked = sorted(pairs, key=lambda pair: hashlib.sha256(pair[1].encode()).hexdigest())
    return json.dumps([label for label, _ in ranked[:12]])


class FailingBackend(ScriptedBackend):
    """Answers `calls_before_failure` generate calls, then fails like a crashed server."""

    def __init__(self, calls_before_failure: int):
        super().__init__(answer=scripted_answer)
        self.calls_left = calls_before_failure

    def generate(self, prompts, config):
        if self.calls_left == 0:
            raise BackendError("the server went away")
        self.calls_left -= 1
        return super().generate(prompts, config)


def config_for(dataset: Path, methods: str = "llm,random", **options):
    llm_fields = set(LLMOptions.model_fields)
    settings = dict(
        methods=methods,
        protocol=Protocol.AUTO,
        interactions=None,
        reference=None,
        limit=None,
        seed=0,
        n_negatives=19,
        mode=None,
    )
    settings.update({name: value for name, value in options.items() if name not in llm_fields})
    # The scripted recommender stands in for the LLM: no adapter, so the mode is generate unless given.
    llm = LLMOptions(
        **{"adapter": "none"} | {name: value for name, value in options.items() if name in llm_fields}
    )
    return build_config(dataset, llm=llm, **settings)


def evaluate(
    dataset: Path, out: Path, backend: ScriptedBackend | None = None, methods: str = "llm,random", **options
):
    backend = backend or ScriptedBackend(answer=scripted_answer)
    recommender = Recommender(backend, batch_size=4)
    return run_evaluation(config_for(dataset, methods, **options), out, recommender=lambda: recommender)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_an_adapter_is_evaluated_in_the_mode_it_was_trained_in_unless_told_otherwise(tmp_path):
    dataset = write_ranking_set(tmp_path / "set.jsonl", 2)

    def mode(**options) -> str:
        return config_for(dataset, **{"adapter": None} | options).mode

    assert mode() == "pointwise"  # the shipped adapter's card: trained on Yes/No questions
    assert mode(adapter="none") == "generate"
    assert mode(template="listwise_score") == "score"  # the template declares its mode
    assert mode(mode=RankMode.SCORE) == "score"


# --- label leakage -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["generate", "score"])
def test_cases_differing_only_in_target_get_identical_prompts_and_rankings(tmp_path, mode):
    runs = []
    for slot in (0, 7, 19):
        dataset = write_ranking_set(tmp_path / f"target{slot}.jsonl", 10, target_slot=slot)
        backend = ScriptedBackend(
            answer=scripted_answer,
            label_scores=lambda prompt, labels: [
                -int(hashlib.sha256((prompt + label).encode()).hexdigest()[:6], 16) for label in labels
            ],
        )
        out = tmp_path / f"out{slot}"
        evaluate(dataset, out, backend, methods="llm", mode=RankMode(mode))
        records = read_lines(out / "results" / "llm.jsonl")
        rankings = [record["ranked_ids"] for record in records]
        runs.append((backend.prompts_seen, rankings, [record["target_rank"] for record in records]))
    prompts, rankings, target_ranks = zip(*runs, strict=True)
    assert prompts[0] and prompts[0] == prompts[1] == prompts[2]
    assert rankings[0] == rankings[1] == rankings[2]
    assert target_ranks[0] != target_ranks[1]  # the targets really differ, only the judging sees them


@pytest.mark.parametrize("shown", [0, 2])
def test_cold_start_runs_show_only_the_newest_history_items(tmp_path, shown):
    dataset = write_ranking_set(tmp_path / "set.jsonl", 8)
    rows = read_lines(dataset)
    backend = ScriptedBackend(answer=scripted_answer)
    out = tmp_path / "out"
    evaluate(dataset, out, backend, methods="llm,popularity", history_items=shown)
    assert len(backend.prompts_seen) == len(rows)
    for row, prompt in zip(rows, backend.prompts_seen, strict=True):
        titles = row["history_titles"]
        kept, dropped = titles[len(titles) - shown :] if shown else [], titles[: len(titles) - shown]
        assert all(title in prompt for title in kept)
        assert not any(f'"{title}"' in prompt for title in dropped)
    assert json.loads((out / "run.json").read_text())["history_items"] == shown
    assert len(read_lines(out / "results" / "popularity.jsonl")) == len(rows)  # baselines run cold too


def test_baselines_never_count_a_leave_one_out_target(tmp_path):
    # Every user's last interaction is item 999, seen nowhere else: counted, it would always rank first.
    folder = tmp_path / "ml"
    folder.mkdir()
    movies = ["movieId,title,genres"] + [f"{i},Movie {i} (2000),Drama" for i in range(1, 1000)]
    (folder / "movies.csv").write_text("\n".join(movies) + "\n", encoding="utf-8")
    rng = random.Random(1)
    rows = ["userId,movieId,rating,timestamp"]
    for user in range(1, 41):
        for step, item in enumerate(rng.sample(range(1, 60), 5)):
            rows.append(f"{user},{item},4.0,{1000 + step}")
        rows.append(f"{user},999,5.0,{2000}")
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    metrics = evaluate(folder, tmp_path / "out", methods="random,popularity,itemknn")
    assert metrics["popularity"]["n"] == 40
    assert metrics["popularity"]["hr@1"] < 0.2 and metrics["itemknn"]["hr@1"] < 0.2


def test_interactions_that_run_past_the_case_history_are_refused(tmp_path):
    dataset = write_ranking_set(tmp_path / "set.jsonl", 3)
    cases = read_lines(dataset)
    items = sorted({i for case in cases for i in case["history_item_ids"] + case["candidate_item_ids"]})
    item_rows = "".join(f"{i}\t{title(int(i))}\n" for i in items)
    (tmp_path / "log.item").write_text("item_id:token\ttitle:token_seq\n" + item_rows, encoding="utf-8")
    # A "test" file: each history followed by the target, i.e. the label inside the baselines' statistics.
    rows = "".join(
        f"{c['user_id']}\t{' '.join(c['history_item_ids'])}\t{c['target_item_id']}\n" for c in cases
    )
    leaky = tmp_path / "log.inter"
    leaky.write_text("user_id:token\titem_id_list:token_seq\titem_id:token\n" + rows, encoding="utf-8")
    with pytest.raises(DataError, match="valid.inter"):
        evaluate(dataset, tmp_path / "out", methods="random,popularity", interactions=leaky)


# --- resume ------------------------------------------------------------------------------------------


def test_interrupted_run_resumes_to_byte_identical_metrics(tmp_path):
    dataset = write_ranking_set(tmp_path / "set.jsonl", 30)
    evaluate(dataset, tmp_path / "straight")

    interrupted = tmp_path / "interrupted"
    with pytest.raises(BackendError, match="went away"):
        evaluate(dataset, interrupted, FailingBackend(calls_before_failure=3))
    partial = read_lines(interrupted / "results" / "llm.jsonl")
    assert len(partial) == 12  # three finished batches of 4 were kept
    assert not (interrupted / "metrics.json").exists()

    resumed_backend = ScriptedBackend(answer=scripted_answer)
    evaluate(dataset, interrupted, resumed_backend)
    assert len(resumed_backend.prompts_seen) == 18  # only the unfinished cases were asked again
    straight = (tmp_path / "straight" / "metrics.json").read_bytes()
    assert (interrupted / "metrics.json").read_bytes() == straight
    assert len(read_lines(interrupted / "results" / "llm.jsonl")) == 30
    timings = json.loads((interrupted / "timings.json").read_text(encoding="utf-8"))
    assert timings["llm"]["answered"] == 30 and timings["llm"]["invocations"] == 2  # the failed try counts


KILLABLE_RUN = """
import sys, time
from pathlib import Path
from tests.fake_backend import ScriptedBackend
from tests.test_eval_runner import evaluate, scripted_answer

class SlowBackend(ScriptedBackend):
    def generate(self, prompts, config):
        time.sleep(0.3)  # long enough for the parent to kill the run between batches or mid-write
        return super().generate(prompts, config)

evaluate(Path(sys.argv[1]), Path(sys.argv[2]), SlowBackend(answer=scripted_answer))
"""


def test_run_killed_midway_resumes_to_byte_identical_metrics(tmp_path):
    dataset = write_ranking_set(tmp_path / "set.jsonl", 40)
    evaluate(dataset, tmp_path / "straight")
    out = tmp_path / "killed"
    results = out / "results" / "llm.jsonl"

    run = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_RUN, str(dataset), str(out)], cwd=Path(__file__).resolve().parents[1]
    )
    deadline = time.monotonic() + 120
    while not (results.exists() and results.read_text(encoding="utf-8").count("\n") >= 8):
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    kept = results.read_text(encoding="utf-8").count("\n")
    assert 8 <= kept < 40 and not (out / "metrics.json").exists()

    resumed_backend = ScriptedBackend(answer=scripted_answer)
    evaluate(dataset, out, resumed_backend)
    assert len(resumed_backend.prompts_seen) == 40 - kept  # nothing finished is asked again
    assert (out / "metrics.json").read_bytes() == (tmp_path / "straight" / "metrics.json").read_bytes()


def test_truncated_last_line_is_cut_and_its_case_rerun(tmp_path):
    dataset = write_ranking_set(tmp_path / "set.jsonl", 10)
    evaluate(dataset, tmp_path / "straight")
    out = tmp_path / "cut"
    evaluate(dataset, out)
    results = out / "results" / "llm.jsonl"
    lines = results.read_text(encoding="utf-8").splitlines(keepends=True)
    results.write_text("".join(lines[:6]) + lines[6][: len(lines[6]) // 2], encoding="utf-8")

    backend = ScriptedBackend(answer=scripted_answer)
    evaluate(dataset, out, backend)
    assert len(backend.prompts_seen) == 4  # cases 7..10, including the one whose line was cut
    assert [r["case_id"] for r in read_lines(results)] == [f"u{i}" for i in range(10)]
    assert (out / "metrics.json").read_bytes() == (tmp_path / "straight" / "metrics.json").read_bytes()


def test_a_damaged_line_before_the_last_is_a_data_error(tmp_path):
    store = ResultStore(tmp_path / "m.jsonl")
    store.append([{"case_id": "a"}, {"case_id": "b"}])
    text = store.path.read_text(encoding="utf-8")
    store.path.write_text("{not json\n" + text, encoding="utf-8")
    with pytest.raises(DataError, match="line 1"):
        store.load({"a", "b"})


def test_resuming_with_other_options_is_a_typed_error(tmp_path):
    dataset = write_ranking_set(tmp_path / "set.jsonl", 5)
    out = tmp_path / "out"
    evaluate(dataset, out, methods="random")
    with pytest.raises(RunConfigMismatch, match=r"seed=0.*--seed.*new --out"):
        evaluate(dataset, out, methods="random", seed=1)
    with pytest.raises(RunConfigMismatch, match="--methods"):
        evaluate(dataset, out, methods="random,popularity")
    edited = dataset.read_text(encoding="utf-8").replace("Game number", "Game no")
    dataset.write_text(edited, encoding="utf-8")
    with pytest.raises(RunConfigMismatch, match="contents changed"):
        evaluate(dataset, out, methods="random")


def test_cli_command_reports_a_mismatch_and_exits_non_zero(tmp_path):
    app = typer.Typer()
    app.command()(eval_command)
    dataset = write_ranking_set(tmp_path / "set.jsonl", 5)
    base = ["--dataset", str(dataset), "--out", str(tmp_path / "out"), "--methods", "random,popularity"]
    first = CliRunner().invoke(app, base)
    assert first.exit_code == 0, first.output
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["popularity"]["n"] == 5
    printed = json.loads(first.stdout)
    assert set(printed) == {"random", "popularity"}
    assert set(printed["random"]["ci95"]) == {"ndcg@10", "hr@10", "mrr"}
    again = CliRunner().invoke(app, [*base, "--limit", "3"])
    assert again.exit_code == 2
    assert "limit" in again.output and "--out" in again.output
    unknown = CliRunner().invoke(
        app, ["--dataset", str(dataset), "--out", str(tmp_path / "x"), "--methods", "gpt"]
    )
    assert unknown.exit_code == 2 and "gpt" in unknown.output


# --- the random floor --------------------------------------------------------------------------------


def test_random_baseline_scores_the_analytic_floor(tmp_path):
    dataset = write_ranking_set(tmp_path / "set.jsonl", 3000, seed=5)
    metrics = evaluate(dataset, tmp_path / "out", methods="random")
    random_ndcg10 = 100 * metrics["random"]["ndcg@10"]
    assert abs(random_ndcg10 - 22.7) < 1.5
    low, high = metrics["random"]["ci95"]["ndcg@10"]
    assert low < 0.227 < high
    assert abs(metrics["random"]["hr@1"] - 0.05) < 0.015
