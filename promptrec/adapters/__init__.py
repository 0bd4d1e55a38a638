"""Adapters shipped with promptrec, and the default one used with the bundled model.

`movielens-pointwise` is a LoRA adapter of the bundled SmolLM2-135M-Instruct, trained by `promptrec
finetune` on MovieLens latest-small users outside the held-out split (its card records the command).
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent
DEFAULT_ADAPTER = SHIPPED_DIR / "movielens-pointwise"
# Backends that apply a LoRA adapter in process; a server backend serves whatever it was started with.
ADAPTER_BACKENDS = ("transformers", "vllm")


def default_adapter(backend: str, model: str | None) -> Path | None:
    """The shipped adapter when the bundled model runs in process (`model=None`), else None."""
    if model is None and backend in ADAPTER_BACKENDS and DEFAULT_ADAPTER.is_dir():
        return DEFAULT_ADAPTER
    return None


def adapter_options(value: str | None) -> dict[str, str | None]:
    """Backend options for a CLI `--adapter` value: unset -> the default, 'none' -> off, else the folder."""
    if value is None:
        return {}
    return {"adapter": None if value.lower() == "none" else value}
