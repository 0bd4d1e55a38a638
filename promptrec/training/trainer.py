"""LoRA fine-tuning with a plain torch loop: checkpointed, resumable, validated in memory, early-stopped.

The model is the transformers backend's own model wrapped by PEFT, so validation ranks held-out cases
through `Recommender` exactly as `promptrec eval` does (same prompts, same prefix-shared scoring). The
losses are in losses.py. On CUDA the base is loaded 4-bit NF4 with double quantisation (QLoRA,
LlamaRec's recipe); on CPU it trains in float32.

`out/` holds the adapter of the best validated step (adapter files + promptrec_adapter.json; the base
model's step-0 score is kept in the history as a reference, never chosen), `history.json`, `curves.png` and
`checkpoint/` (adapter, optimizer, step and RNG states). Re-running with the same `out/` resumes from the
checkpoint: the same examples in the same order, continuing at the saved step (other examples are refused).
A run may instead start from an existing adapter's weights (`start_from`), with a fresh optimizer: more
training on new data for an adapter that is already good.
"""

from __future__ import annotations

import json
import math
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from promptrec.errors import RequestError
from promptrec.prompting.builder import PromptBudget
from promptrec.training.curves import plot_curves
from promptrec.training.examples import (
    Objective,
    RankingGroup,
    TrainingExample,
    examples_sha256,
    shuffled,
)
from promptrec.training.losses import answer_loss, ranking_loss
from promptrec.training.validation import Validation

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"
T = TypeVar("T")
# Options that only say how long to train or how often to look: a resumed run may change them.
BUDGET_OPTIONS = {
    "epochs",
    "max_steps",
    "max_minutes",
    "patience",
    "validate_every",
    "checkpoint_every",
    "threads",
}


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Objective = Objective.POINTWISE
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: float = Field(default=16.0, gt=0)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    # The pilot's choice, attention only. The MLP's gate/up/down_proj add capacity for little step time
    # (backward runs through every layer either way).
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1
    )
    top_layers: int | None = Field(
        default=None,
        ge=1,
        description="LoRA on the top N decoder layers only: backward stops there, so a step costs far "
        "less time and memory (all layers if unset).",
    )
    lr: float = Field(default=5e-4, gt=0)
    batch_size: int = Field(default=8, ge=1, description="Examples per step (groups, for ranking).")
    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=25, ge=1)
    validate_every: int = Field(default=50, ge=1)
    patience: int = Field(default=4, ge=1, description="Validations without improvement before stopping.")
    seed: int = 0
    threads: int | None = Field(default=None, ge=1)
    quantize_4bit: bool = False  # QLoRA: only on CUDA (bitsandbytes' 4-bit training kernels)
    start_from_sha256: str | None = Field(
        default=None, description="Weights of the adapter the run started from (None: a fresh LoRA)."
    )


@dataclass
class TrainState:
    step: int = 0
    seconds: float = 0.0
    tokens: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    validations: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = -1
    best_metric: float = -math.inf
    stale: int = 0  # validations since the best
    stopped: str = ""


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


def batch_at(examples: Sequence[T], step: int, config: TrainConfig) -> list[T]:
    """The examples of global `step`: epoch e uses its own seeded shuffle, so a resumed run sees the same."""
    per_epoch = steps_per_epoch(len(examples), config.batch_size)
    epoch, index = divmod(step, per_epoch)
    order = shuffled(examples, config.seed + epoch)
    return order[index * config.batch_size : (index + 1) * config.batch_size]


class LoraTrainer:
    """Wraps a loaded `TransformersBackend`'s model with a LoRA adapter and trains it.

    Args:
        backend: a TransformersBackend on the base model (its model is wrapped in place).
        config: the training options.
        budget: the prompt budget the validation cases are ranked with (as the examples were built).
        start_from: an adapter folder of the same LoRA shape whose weights training starts from.
    """

    def __init__(
        self, backend: Any, config: TrainConfig, budget: PromptBudget, start_from: Path | None = None
    ):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        from promptrec.recommender import Recommender

        self.config = config
        self.backend = backend
        self.examples_fingerprint: str | None = None  # set by fit()
        if config.threads:
            torch.set_num_threads(config.threads)
        base = backend.model
        if config.quantize_4bit:
            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
        _check_target_modules(base, config.target_modules)
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules),
            layers_to_transform=_top_layers(base, config.top_layers),
            task_type="CAUSAL_LM",
        )
        torch.manual_seed(config.seed)
        self.model = get_peft_model(base, lora)
        if start_from is not None:
            _load_start_weights(self.model, lora, start_from)
        backend.model = self.model
        self.recommender = Recommender(backend, budget=budget)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.lr)

    def fit(
        self,
        examples: Sequence[TrainingExample] | Sequence[RankingGroup],
        validation: Validation | None,
        out: Path,
        on_best: Callable[[Path, TrainState], None] | None = None,
    ) -> TrainState:
        """Train until epochs / max_steps / max_minutes / early stopping; returns the final state.

        `on_best(out, state)` runs after the best adapter is written into `out` (to add its card).
        """
        from tqdm import tqdm

        if not examples:
            raise RequestError("no training examples; check --dataset, --samples and the user split")
        out.mkdir(parents=True, exist_ok=True)
        self.examples_fingerprint = examples_sha256(examples)  # checked on resume; the card records it
        state = self._resume(out)
        config = self.config
        total = steps_per_epoch(len(examples), config.batch_size) * config.epochs
        if config.max_steps is not None:
            total = min(total, config.max_steps)
        if validation is not None and not state.validations:
            self._validate(validation, state, out, on_best)  # step 0: the base model's score
        bar = tqdm(total=total, initial=state.step, desc="finetune", file=sys.stderr, dynamic_ncols=True)
        device = next(self.model.parameters()).device
        started = time.perf_counter() - state.seconds
        loss_of = ranking_loss if config.objective is Objective.RANKING else answer_loss
        while state.step < total and not state.stopped:
            if config.max_minutes is not None and state.seconds >= config.max_minutes * 60:
                state.stopped = f"time budget of {config.max_minutes} min reached"
                break
            self.model.train()
            batch = batch_at(examples, state.step, config)
            loss, tokens = loss_of(self.model, self.backend.tokenizer, batch, device)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            state.step += 1
            state.tokens += tokens
            state.seconds = time.perf_counter() - started
            state.losses.append((state.step, loss.item()))
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{state.tokens / state.seconds:.0f}")
            if validation is not None and state.step % config.validate_every == 0:
                self._validate(validation, state, out, on_best)
                started = time.perf_counter() - state.seconds  # validation time is not training time
            if state.step % config.checkpoint_every == 0:
                self._checkpoint(out, state)
        bar.close()
        if validation is not None and state.validations[-1][0] != state.step:
            self._validate(validation, state, out, on_best)  # the last step's score
        if validation is None:
            state.best_step = state.step
            self._save_best(out, state, on_best)
        state.stopped = state.stopped or "completed"
        self._checkpoint(out, state)
        plot_curves(state, out / "curves.png", validation.description if validation else "")
        return state

    # --- internals ------------------------------------------------------------------------------------
    def _validate(
        self,
        validation: Validation,
        state: TrainState,
        out: Path,
        on_best: Callable[[Path, TrainState], None] | None,
    ) -> None:
        self.model.eval()
        metric = validation.score(self.recommender)
        state.validations.append((state.step, metric))
        print(f"step {state.step}: validation {metric:.4f} ({validation.description})", file=sys.stderr)
        if state.step == 0:
            return  # the base model's score is a reference in the history; the kept adapter is a trained one
        if metric > state.best_metric:
            state.best_metric, state.best_step, state.stale = metric, state.step, 0
            self._save_best(out, state, on_best)
        else:
            state.stale += 1
            if state.stale >= self.config.patience:
                state.stopped = f"early stop: no improvement in {state.stale} validations"

    def _save_best(
        self, out: Path, state: TrainState, on_best: Callable[[Path, TrainState], None] | None
    ) -> None:
        self.model.save_pretrained(str(out))
        _to_half(out / "adapter_model.safetensors")
        if on_best is not None:
            on_best(out, state)

    def _checkpoint(self, out: Path, state: TrainState) -> None:
        folder = out / CHECKPOINT_DIR
        partial = out / (CHECKPOINT_DIR + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(partial / "adapter"))
        torch.save(
            {
                "state": state.__dict__,
                "optimizer": self.optimizer.state_dict(),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "python": random.getstate(),
                    "numpy": np.random.get_state(),
                },
                "config": self.config.model_dump(mode="json"),
                "examples_sha256": self.examples_fingerprint,
            },
            partial / STATE_FILE,
        )
        # Swap in the complete checkpoint only once it is written, so a kill never leaves half of one.
        if folder.exists():
            old = out / (CHECKPOINT_DIR + ".old")
            folder.rename(old)
            partial.rename(folder)
            _remove_tree(old)
        else:
            partial.rename(folder)
        (out / HISTORY_FILE).write_text(json.dumps(state.__dict__, indent=1) + "\n", encoding="utf-8")

    def _resume(self, out: Path) -> TrainState:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = out / CHECKPOINT_DIR / STATE_FILE
        if not path.is_file():
            return TrainState()
        saved = torch.load(path, weights_only=False)
        current = self.config.model_dump(mode="json")
        changed = {
            key: (saved["config"].get(key), value)
            for key, value in current.items()
            if key not in BUDGET_OPTIONS and saved["config"].get(key) != value
        }
        if changed:
            raise RequestError(
                f"--out {out} holds a checkpoint trained with other options (saved, now): {changed}; "
                "re-run with the same options to resume, or pass a new --out"
            )
        if saved.get("examples_sha256", self.examples_fingerprint) != self.examples_fingerprint:
            raise RequestError(
                f"--out {out} holds a checkpoint trained on other examples (the dataset, --samples, "
                "--prefixes-per-user, --max-history or --seed changed); re-run with the same data to resume, "
                "pass a new --out, or continue from its adapter with --start-from"
            )
        weights = load_file(str(out / CHECKPOINT_DIR / "adapter" / "adapter_model.safetensors"))
        set_peft_model_state_dict(self.model, weights)
        self.optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"]["torch"])
        random.setstate(saved["rng"]["python"])
        np.random.set_state(saved["rng"]["numpy"])
        state = TrainState(**saved["state"])
        state.stopped = ""  # the budget options may have changed: the loop decides again whether to go on
        print(f"resuming from step {state.step} of {out}", file=sys.stderr, flush=True)
        return state


def _load_start_weights(model: Any, lora: Any, folder: Path) -> None:
    """Copy an adapter's weights into the freshly wrapped model; RequestError if its LoRA shape differs."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    wanted = {
        "r": lora.r,
        "lora_alpha": lora.lora_alpha,
        "target_modules": sorted(lora.target_modules),
        "layers_to_transform": lora.layers_to_transform,
    }
    found = {key: saved.get(key) for key in wanted}
    found["target_modules"] = sorted(found["target_modules"] or [])
    differ = {key: (found[key], wanted[key]) for key in wanted if found[key] != wanted[key]}
    if differ:
        raise RequestError(
            f"--start-from {folder}: its LoRA shape differs from this run's (adapter, run): {differ}; "
            "pass the adapter's --lora-r, --alpha, --lora-layers and --lora-modules"
        )
    weights = load_file(str(folder / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, {name: tensor.float() for name, tensor in weights.items()})
    if result.unexpected_keys:
        raise RequestError(f"--start-from {folder}: weights {result.unexpected_keys[:3]} fit no LoRA layer")


def _check_target_modules(model: Any, names: Sequence[str]) -> None:
    """RequestError naming the option when a LoRA target is not a linear layer of the model."""
    linear = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    linear.discard("lm_head")  # tied to the embeddings in the bundled model: LoRA there is not served by vLLM
    unknown = sorted(set(names) - linear)
    if unknown:
        raise RequestError(
            f"--lora-modules: {unknown} are not linear layers of the base model; choose from {sorted(linear)}"
        )


def _top_layers(model: Any, count: int | None) -> list[int] | None:
    if count is None:
        return None
    total = int(model.config.num_hidden_layers)
    return list(range(max(0, total - count), total))


def _to_half(path: Path) -> None:
    """Store the shipped adapter in float16: half the size, and LoRA deltas lose nothing that matters."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    save_file({name: tensor.half().contiguous() for name, tensor in tensors.items()}, str(path))


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def peak_memory_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
