"""Shared fixtures for tests that need a real tokenizer or model.

- `bundled_model_dir` (session): Path of the bundled SmolLM2-135M-Instruct converted to a plain Hugging
  Face folder (promptrec.bundled.bundled_model_dir). The first run on a machine converts the GGUF
  (~40 s); later runs reuse the cache under `$PROMPTREC_CACHE` or `~/.cache/promptrec`.
- `tiny_llama_dir` (session): Path of a random-initialised tiny Llama (hidden 64, 2 layers, seed 0)
  saved with the bundled SmolLM2 tokenizer and chat template. Loads in well under a second: use it for
  unit tests of anything that needs a real transformers model; its outputs are meaningless but
  deterministic.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from promptrec import bundled


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    return bundled.bundled_model_dir()


@pytest.fixture(scope="session")
def tiny_llama_dir(bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir, local_files_only=True)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
