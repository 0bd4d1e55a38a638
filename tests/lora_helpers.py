"""A LoRA adapter with random weights, for tests that must see an adapter change the model's answers."""

from __future__ import annotations

from pathlib import Path


def make_lora_adapter(model_dir: Path, destination: Path, seed: int = 0) -> Path:
    """A PEFT LoRA adapter with random (non-zero) weights, so that applying it visibly changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(destination)
    return destination
