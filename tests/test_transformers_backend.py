"""TransformersBackend and load_backend on a random-initialised tiny Llama (fast, CPU)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from promptrec.backends import loader
from promptrec.backends.base import GenerationConfig, StructuredOutput
from promptrec.backends.transformers_backend import MIN_SHARED_PREFIX_TOKENS, TransformersBackend
from promptrec.cli_options import llm_options
from promptrec.errors import BackendError, RequestError
from promptrec.options import LLMOptions

PROMPTS = [
    "<|im_start|>user\nRecommend a film about space.<|im_end|>\n<|im_start|>assistant\n",
    "Hello",
    "<|im_start|>user\nA much longer request: I liked Heat, Alien and Amelie; what next?<|im_end|>\n",
]
HISTORY = "User history: " + "; ".join(f"film number {i} (drama)" for i in range(12)) + ".\nCandidate: "
POINTWISE = [
    HISTORY + title + "\nRelevant? Answer:" for title in ("Alien", "Toy Story 3", "Heat", "Up", "Big")
]


@pytest.fixture(scope="module")
def backend(tiny_llama_dir: Path) -> TransformersBackend:
    return TransformersBackend(tiny_llama_dir, batch_size=3)


def reference_logprobs(model_dir: Path, prompt: str, model: torch.nn.Module | None = None) -> torch.Tensor:
    """Log-softmax at the last position of one unpadded prompt, computed directly with transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = model or AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    with torch.inference_mode():
        return torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)


# --- generation ------------------------------------------------------------------------------------
def test_batched_generation_keeps_order_and_equals_each_prompt_alone(backend: TransformersBackend) -> None:
    config = GenerationConfig(max_new_tokens=6)
    batched = backend.generate(PROMPTS, config)
    alone = [backend.generate([prompt], config)[0] for prompt in PROMPTS]
    reversed_batch = backend.generate(PROMPTS[::-1], config)

    assert batched == alone  # left padding changes nothing
    assert reversed_batch == batched[::-1]
    assert [g.prompt_tokens for g in batched] == [backend.count_tokens(p) for p in PROMPTS]
    assert all(1 <= g.completion_tokens <= 6 for g in batched)
    assert len({g.text for g in batched}) > 1  # distinct prompts, distinct answers: not one row copied


def test_generation_is_deterministic(backend: TransformersBackend) -> None:
    config = GenerationConfig(max_new_tokens=8, seed=3)
    assert backend.generate(PROMPTS, config) == backend.generate(PROMPTS, config)


def test_max_new_tokens_is_honoured(backend: TransformersBackend) -> None:
    for limit in (1, 4):
        for generation in backend.generate(PROMPTS, GenerationConfig(max_new_tokens=limit)):
            assert generation.completion_tokens <= limit
            assert backend.count_tokens(generation.text) <= limit


def test_prompt_beyond_the_context_is_refused_by_index(tiny_llama_dir: Path) -> None:
    small = TransformersBackend(tiny_llama_dir, max_context_tokens=16)
    with pytest.raises(BackendError, match="prompt 1 has .* beyond the model's context of 16"):
        small.generate(["Hi", "word " * 20], GenerationConfig(max_new_tokens=2))
    with pytest.raises(BackendError, match="prompt 0 is empty"):
        small.next_token_logprobs([""], ["A"])


# --- structured outputs ----------------------------------------------------------------------------
def test_json_schema_constraint_yields_valid_json_even_from_a_random_model(
    backend: TransformersBackend,
) -> None:
    schema = {
        "type": "object",
        "properties": {"choice": {"enum": ["Alien", "Heat", "Up"]}},
        "required": ["choice"],
    }
    config = GenerationConfig(max_new_tokens=40, structured=StructuredOutput(json_schema=schema))
    for generation in backend.generate(PROMPTS, config):
        answer = json.loads(generation.text)
        assert set(answer) == {"choice"} and answer["choice"] in {"Alien", "Heat", "Up"}


def test_regex_constraint_is_followed(backend: TransformersBackend) -> None:
    pattern = r"[A-E](, [A-E]){2}"
    config = GenerationConfig(max_new_tokens=20, structured=StructuredOutput(regex=pattern))
    for generation in backend.generate(PROMPTS, config):
        assert re.fullmatch(pattern, generation.text), generation.text


def test_bad_constraints_raise_instead_of_being_ignored(backend: TransformersBackend) -> None:
    both = StructuredOutput(json_schema={"type": "string"}, regex="a+")
    with pytest.raises(BackendError, match="one of json_schema or regex"):
        backend.generate(["Hi"], GenerationConfig(max_new_tokens=2, structured=both))
    with pytest.raises(BackendError, match="structured.regex"):
        backend.generate(
            ["Hi"], GenerationConfig(max_new_tokens=2, structured=StructuredOutput(regex="(unclosed"))
        )


# --- label scoring ---------------------------------------------------------------------------------
def test_label_logprobs_equal_a_direct_log_softmax(
    backend: TransformersBackend, tiny_llama_dir: Path
) -> None:
    labels = ["A", "B", " Yes", "No"]
    label_ids = backend.label_token_ids(labels)
    scores = backend.next_token_logprobs(PROMPTS, labels)

    assert len(scores) == len(PROMPTS)
    for prompt, row in zip(PROMPTS, scores, strict=True):
        expected = reference_logprobs(tiny_llama_dir, prompt)[label_ids]
        torch.testing.assert_close(torch.tensor(row), expected, atol=1e-5, rtol=1e-5)


def test_labels_must_be_single_distinct_tokens(backend: TransformersBackend) -> None:
    with pytest.raises(BackendError, match="single-token labels"):
        backend.next_token_logprobs(PROMPTS[:1], ["A", "Absolutely not"])
    with pytest.raises(BackendError, match="distinct tokens"):
        backend.next_token_logprobs(PROMPTS[:1], ["Yes", "Yes"])


def test_shared_prefix_reuse_equals_the_plain_path(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reusing = TransformersBackend(tiny_llama_dir, batch_size=2)  # 5 prompts: three batches share one cache
    plain = TransformersBackend(tiny_llama_dir, batch_size=2, reuse_prefix=False)
    prefills: list[int] = []
    original = TransformersBackend._prefill
    monkeypatch.setattr(
        TransformersBackend,
        "_prefill",
        lambda self, prefix: prefills.append(len(prefix)) or original(self, prefix),
    )

    reused_scores = reusing.next_token_logprobs(POINTWISE, ["Yes", "No"])
    plain_scores = plain.next_token_logprobs(POINTWISE, ["Yes", "No"])

    assert len(prefills) == 1 and prefills[0] >= MIN_SHARED_PREFIX_TOKENS  # the reuse path really ran
    torch.testing.assert_close(torch.tensor(reused_scores), torch.tensor(plain_scores), atol=1e-5, rtol=1e-5)
    assert reused_scores[0] != reused_scores[1]  # each candidate's own suffix was scored


def test_identical_prompts_still_score_their_last_token(
    backend: TransformersBackend, tiny_llama_dir: Path
) -> None:
    scores = backend.next_token_logprobs([POINTWISE[0]] * 4, ["Yes"])
    expected = reference_logprobs(tiny_llama_dir, POINTWISE[0])[backend.label_token_ids(["Yes"])]
    for row in scores:
        torch.testing.assert_close(torch.tensor(row), expected, atol=1e-5, rtol=1e-5)


# --- loading options -------------------------------------------------------------------------------
def test_lora_adapter_is_applied(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, local_files_only=True)
    # init_lora_weights=False: random A and B, so the adapter really changes the outputs.
    tuned = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    tuned.save_pretrained(tmp_path / "adapter")

    with_adapter = TransformersBackend(tiny_llama_dir, adapter=tmp_path / "adapter")
    without = TransformersBackend(tiny_llama_dir)
    label_ids = with_adapter.label_token_ids(["Yes", "No"])
    [scored] = with_adapter.next_token_logprobs(POINTWISE[:1], ["Yes", "No"])
    [base_scored] = without.next_token_logprobs(POINTWISE[:1], ["Yes", "No"])

    expected = reference_logprobs(tiny_llama_dir, POINTWISE[0], model=tuned.eval())[label_ids]
    torch.testing.assert_close(torch.tensor(scored), expected, atol=1e-4, rtol=1e-4)
    assert max(abs(a - b) for a, b in zip(scored, base_scored, strict=True)) > 1e-4


def test_load_errors_name_the_problem(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BackendError, match="never downloads"):
        TransformersBackend(tmp_path / "no-such-model")
    with pytest.raises(BackendError, match="not a PEFT adapter folder"):
        TransformersBackend(tiny_llama_dir, adapter=tmp_path)
    with pytest.raises(BackendError, match="quantization '3bit'"):
        TransformersBackend(tiny_llama_dir, quantization="3bit")
    with pytest.raises(BackendError, match="dtype 'float8'"):
        TransformersBackend(tiny_llama_dir, dtype="float8")

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    with pytest.raises(BackendError, match="pip install bitsandbytes"):
        TransformersBackend(tiny_llama_dir, quantization="4bit")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendError, match="no CUDA GPU"):
        TransformersBackend(tiny_llama_dir, device="cuda")


def test_context_defaults_to_the_model_config(backend: TransformersBackend, tiny_llama_dir: Path) -> None:
    assert backend.max_context_tokens == 2048
    assert TransformersBackend(tiny_llama_dir, max_context_tokens=512).max_context_tokens == 512


def test_closed_backend_refuses_work(tiny_llama_dir: Path) -> None:
    closing = TransformersBackend(tiny_llama_dir)
    closing.close()
    with pytest.raises(BackendError, match="closed"):
        closing.next_token_logprobs(["Hi"], ["A"])


# --- load_backend ----------------------------------------------------------------------------------
def test_load_backend_builds_the_transformers_backend(tiny_llama_dir: Path) -> None:
    built = loader.load_backend("transformers", str(tiny_llama_dir), batch_size=2)
    assert isinstance(built, TransformersBackend) and built.batch_size == 2


def test_load_backend_resolves_the_bundled_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(loader, "bundled_model_dir", lambda: tmp_path)
    assert loader.resolve_model(None) == loader.resolve_model("bundled") == str(tmp_path)
    assert loader.resolve_model("smollm2-135m-instruct") == str(tmp_path)
    assert loader.resolve_model("/models/other") == "/models/other"


def test_the_quantization_option_reaches_the_transformers_backend_only(tiny_llama_dir: Path) -> None:
    options = LLMOptions(model=str(tiny_llama_dir), adapter="none", quantization="4bit")
    quantised = loader.load_backend(options.backend, options.model, **options.backend_options())
    try:
        assert any(type(module).__name__ == "Linear4bit" for module in quantised.model.modules())
    finally:
        quantised.close()
    with pytest.raises(BackendError, match="invalid options for the openai backend"):
        loader.load_backend("openai", "served", base_url="http://127.0.0.1:9/v1", quantization="8bit")
    with pytest.raises(RequestError, match="quantization"):
        llm_options(quantization="3bit")


def test_load_backend_rejects_unknown_kinds_and_options(tiny_llama_dir: Path) -> None:
    with pytest.raises(BackendError, match="valid backends are: transformers, vllm, openai"):
        loader.load_backend("llamacpp", str(tiny_llama_dir))
    with pytest.raises(BackendError, match="invalid options for the transformers backend"):
        loader.load_backend("transformers", str(tiny_llama_dir), batch_sise=4)
