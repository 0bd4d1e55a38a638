"""Folding a LoRA adapter into a cached copy of its model (the vLLM backend's default on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptrec.adapters.merge import merged_model_dir
from promptrec.backends.transformers_backend import TransformersBackend
from tests.lora_helpers import make_lora_adapter

PROMPT = "<|im_start|>user\nIs Zelda a video game?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTREC_CACHE", str(tmp_path / "cache"))


def label_logprobs(model: Path, adapter: Path | None = None) -> list[float]:
    backend = TransformersBackend(model, adapter=adapter)
    try:
        return backend.next_token_logprobs([PROMPT], ["Yes", "No"])[0]
    finally:
        backend.close()


def test_the_merged_copy_scores_like_the_adapter_and_is_reused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    adapter = make_lora_adapter(tiny_llama_dir, tmp_path / "adapter")

    merged = merged_model_dir(adapter, tiny_llama_dir)
    built = (merged / "model.safetensors").stat().st_mtime_ns

    assert label_logprobs(merged) == pytest.approx(label_logprobs(tiny_llama_dir, adapter), abs=1e-5)
    assert label_logprobs(merged) != pytest.approx(label_logprobs(tiny_llama_dir), abs=1e-3)
    assert merged_model_dir(adapter, tiny_llama_dir) == merged
    assert (merged / "model.safetensors").stat().st_mtime_ns == built  # read from the cache, not rebuilt
    assert not [path for path in merged.parent.iterdir() if path.name.startswith(".building-")]


def test_a_changed_adapter_gets_a_new_copy(tiny_llama_dir: Path, tmp_path: Path) -> None:
    adapter = make_lora_adapter(tiny_llama_dir, tmp_path / "adapter")
    first = merged_model_dir(adapter, tiny_llama_dir)

    make_lora_adapter(tiny_llama_dir, adapter, seed=1)  # retrained in place
    second = merged_model_dir(adapter, tiny_llama_dir)

    assert second != first
    assert label_logprobs(second) == pytest.approx(label_logprobs(tiny_llama_dir, adapter), abs=1e-5)
