"""The leakage guard: a prefix-structured ranking set is refused before any baseline is fitted on it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from promptrec.errors import DataError
from tests.test_eval_runner import evaluate, ranking_row


def write_prefix_set(path: Path, *, longest_only: bool = False) -> Path:
    """Rows that are successive prefixes of 10 users' sequences (as in the LLaRA / S-DPO test sets)."""
    rng = random.Random(3)
    lines = []
    for user in range(10):
        sequence = rng.sample(range(1000), 10)
        for length in [8] if longest_only else range(3, 9):
            history, target = sequence[:length], sequence[length]
            candidates = [target, *rng.sample(range(1000, 5000), 19)]
            rng.shuffle(candidates)
            lines.append(ranking_row(f"u{user}-{length}", history, candidates, target))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_prefix_structured_set_is_refused_naming_the_share_and_the_fix(tmp_path):
    dataset = write_prefix_set(tmp_path / "prefixes.jsonl")
    with pytest.raises(DataError, match=r"50 of 60 cases \(83\.3%.*--interactions.*--methods llm"):
        evaluate(dataset, tmp_path / "out", methods="random,itemknn")


def test_the_llm_alone_and_a_set_without_prefixes_still_run(tmp_path):
    leaky = write_prefix_set(tmp_path / "prefixes.jsonl")
    assert evaluate(leaky, tmp_path / "llm", methods="llm")["llm"]["n"] == 60
    clean = write_prefix_set(tmp_path / "longest.jsonl", longest_only=True)
    assert evaluate(clean, tmp_path / "out", methods="random,itemknn")["itemknn"]["n"] == 10
