"""The record a promptrec adapter folder carries (`promptrec_adapter.json`), and the checks before loading.

An adapter is only meaningful on the base model and prompt it was trained with, so the card records the
base model's identity (a hash of its config), the template and its content hash, the objective, the
data fingerprint, the exact training command and the metrics. Loading refuses an adapter made for another
base model, and one whose weights are empty or all zero (such an adapter silently changes nothing).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from promptrec.errors import BackendError

CARD_FILENAME = "promptrec_adapter.json"
WEIGHTS_FILENAME = "adapter_model.safetensors"
# Keys that differ between saves of the same weights (library versions, where it was loaded from).
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype"}


class AdapterCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_model: str
    base_model_sha256: str
    template: str
    template_sha256: str
    objective: str
    mode: str
    data: dict[str, Any]
    command: str
    training: dict[str, Any]
    metrics: dict[str, Any]

    def serving_options(self) -> dict[str, Any]:
        """Recommender options that serve the adapter as it was trained: a prompt trained on is exactly a
        prompt served (the shipped adapter answers pointwise Yes/No over 10 history items)."""
        from promptrec.models import RankMode
        from promptrec.prompting.builder import PromptBudget

        options: dict[str, Any] = {"default_mode": RankMode(self.mode)}
        if "max_history" in self.data:
            options["budget"] = PromptBudget(max_history_items=self.data["max_history"])
        return options

    def write(self, folder: Path) -> None:
        (folder / CARD_FILENAME).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


def read_card(folder: Path) -> AdapterCard | None:
    path = folder / CARD_FILENAME
    if not path.is_file():
        return None
    try:
        return AdapterCard.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BackendError(f"adapter card {path} is invalid ({exc}); re-train or delete the file") from exc


def base_model_sha256(model_dir: str | Path) -> str:
    """Identity of a base model: its config.json without the keys that vary between saves of one model."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot read {path} ({exc}); pass a local Hugging Face model folder") from exc
    stable = {key: value for key, value in config.items() if key not in _VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()


def check_adapter(adapter_dir: Path, model_dir: str | Path) -> None:
    """BackendError unless `adapter_dir` is a PEFT folder with non-zero weights made for `model_dir`."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise BackendError(
            f"adapter {str(adapter_dir)!r} is not a PEFT adapter folder (no adapter_config.json)"
        )
    card = read_card(adapter_dir)
    if (
        card is not None
        and Path(model_dir).is_dir()
        and card.base_model_sha256 != base_model_sha256(model_dir)
    ):
        raise BackendError(
            f"adapter {str(adapter_dir)!r} was trained on base model {card.base_model!r}, not on "
            f"{str(model_dir)!r}; load it with --model {card.base_model} or train one for this model "
            "(`promptrec finetune`)"
        )
    _check_weights(adapter_dir)


def _check_weights(adapter_dir: Path) -> None:
    from safetensors.torch import load_file

    path = adapter_dir / WEIGHTS_FILENAME
    if not path.is_file():
        raise BackendError(f"adapter {str(adapter_dir)!r} has no {WEIGHTS_FILENAME}; re-save or re-train it")
    tensors = load_file(str(path))
    if not tensors or all(tensor.numel() == 0 for tensor in tensors.values()):
        raise BackendError(f"adapter {str(adapter_dir)!r} holds no weights; re-train it")
    # LoRA's update is B @ A: with every B at zero (its initial value) the adapter changes nothing.
    updates = [tensor for name, tensor in tensors.items() if "lora_B" in name] or list(tensors.values())
    if not any(bool(tensor.any()) for tensor in updates):
        raise BackendError(
            f"adapter {str(adapter_dir)!r} has all-zero weights, so it would change nothing (an untrained "
            "or broken save); re-train it with `promptrec finetune`"
        )
