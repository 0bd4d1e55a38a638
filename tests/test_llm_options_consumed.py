"""Every command that takes the LLM options acts on each of them: none is accepted and then ignored.

Each command runs twice on a scripted backend (load_backend is replaced by a recorder), once with a baseline
and once with one option changed; what the backend was loaded with, the prompts it received and the exit
code must differ. An option that cannot matter to a command is listed with the reason. (Two options were
once accepted and dropped this way: `demo --template` and `recommend --template`.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from promptrec.backends.base import GenerationConfig
from promptrec.cli import app
from promptrec.demo import DEMO_DATASET
from promptrec.errors import BackendError
from promptrec.options import LLMOptions
from tests.fake_backend import ScriptedBackend

CATALOG = DEMO_DATASET / "movies.csv"
CONTACT = "mail me at someone@example.com"


class RecordingBackend(ScriptedBackend):
    """Answers every call with a valid ranking, or fails every call (to exercise --fallback)."""

    def __init__(self, failing: bool):
        super().__init__(
            answer=lambda prompt: "[A] [B] [C]", label_scores=lambda p, labels: [0.0] * len(labels)
        )
        self.failing = failing

    def generate(self, prompts: Sequence[str], config: GenerationConfig):
        if self.failing:
            raise BackendError("scripted failure")
        return super().generate(prompts, config)

    def next_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]):
        if self.failing:
            raise BackendError("scripted failure")
        return super().next_token_logprobs(prompts, labels)


def command_args(command: str, tmp_path: Path) -> list[str]:
    if command == "rank":
        request = {
            "user": {"history": [{"item_id": "h1"}, {"item_id": "h2"}], "request": f"tense, {CONTACT}"},
            "history_items": [{"id": "h1", "title": "Heat (1995)"}, {"id": "h2", "title": "Up (2009)"}],
            "candidates": [{"id": "a", "title": "Alien (1979)"}, {"id": "b", "title": "Big (1988)"}],
        }
        path = tmp_path / "request.json"
        path.write_text(json.dumps(request), encoding="utf-8")
        return ["rank", "--request", str(path)]
    if command == "rank-dataset":
        return ["rank", "--dataset", str(DEMO_DATASET), "--user", "1"]
    if command == "demo":
        return ["demo"]
    if command == "eval":
        out = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"  # a fresh run each time (no resume)
        return ["eval", "--dataset", str(DEMO_DATASET), "--out", str(out), "--methods", "llm", "--limit", "2"]
    history = ["--history", "1,2,3"]  # MovieLens ids, so --max-history has items to cut
    return ["recommend", "--catalog", str(CATALOG), "--request-text", f"a 90s comedy, {CONTACT}", *history]


# option -> (baseline options, changed options, whether the backend fails)
SCENARIOS: dict[str, tuple[list[str], list[str], bool]] = {
    "backend": ([], ["--backend", "vllm"], False),
    "model": ([], ["--model", "another/model"], False),
    "adapter": ([], ["--adapter", "none"], False),
    "base_url": ([], ["--base-url", "http://127.0.0.1:9/v1"], False),
    "template": ([], ["--template", "listwise_generate"], False),
    "max_history": ([], ["--max-history", "1"], False),
    "demos": ([], ["--demos", "1"], False),
    "demo_selector": (["--demos", "1"], ["--demos", "1", "--demo-selector", "random"], False),
    "bootstrap": ([], ["--bootstrap", "2"], False),
    "timeout": ([], ["--timeout", "5"], False),
    "fallback": ([], ["--fallback", "retriever"], True),
    "redact_contacts": ([], ["--redact-contacts"], False),
    "quantization": ([], ["--quantization", "8bit"], False),
}
NOT_APPLICABLE = {
    ("demo", "redact_contacts"): "a MovieLens history holds no words of the user's own",
    ("eval", "redact_contacts"): "dataset cases hold no words of the user's own",
    ("rank-dataset", "redact_contacts"): "dataset cases hold no words of the user's own",
    ("rank", "demos"): "refused without --dataset (tests/test_cli_errors.py); rank-dataset covers it",
    ("rank", "demo_selector"): "refused without --dataset (tests/test_cli_errors.py); rank-dataset covers it",
}
OMITTED = {"recommend": {"demos", "demo_selector", "bootstrap"}}  # with_llm_options(omit=...)
COMMANDS = ["rank", "rank-dataset", "demo", "eval", "recommend"]


def test_every_option_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(LLMOptions.model_fields)


def observe(
    monkeypatch: pytest.MonkeyPatch, args: list[str], failing: bool
) -> tuple[int, list[tuple[str, Any, dict]], list[str]]:
    loads: list[tuple[str, Any, dict]] = []
    backends: list[RecordingBackend] = []

    def load_backend(kind: str = "transformers", model: Any = None, **options: Any) -> RecordingBackend:
        loads.append((kind, model, options))
        backends.append(RecordingBackend(failing))
        return backends[-1]

    monkeypatch.setattr("promptrec.backends.loader.load_backend", load_backend)
    result = CliRunner().invoke(app, args)
    if not failing:
        assert result.exit_code == 0, f"{args}: {result.output}"
    prompts = [prompt for backend in backends for prompt in backend.prompts_seen]
    return result.exit_code, loads, prompts


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (command, option)
        for command in COMMANDS
        for option in SCENARIOS
        if option not in OMITTED.get(command, set()) and (command, option) not in NOT_APPLICABLE
    ],
)
def test_each_llm_option_changes_what_the_backend_sees(
    command: str, option: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    baseline, changed, failing = SCENARIOS[option]
    before = observe(monkeypatch, [*command_args(command, tmp_path), *baseline], failing)
    again = observe(monkeypatch, [*command_args(command, tmp_path), *baseline], failing)
    assert again == before  # the observation is deterministic, so a difference below is the option's
    after = observe(monkeypatch, [*command_args(command, tmp_path), *changed], failing)
    assert after != before, f"{command} accepted --{option.replace('_', '-')} and ignored it"
