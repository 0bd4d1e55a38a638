"""`promptrec finetune`: train a LoRA adapter on a labelled log and write a self-describing adapter folder."""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from promptrec.adapters.card import AdapterCard, base_model_sha256
from promptrec.errors import RequestError
from promptrec.training.examples import Objective
from promptrec.training.prepared import log_data, question_data

RANKING_GROUP = 4  # a positive and three negatives: each group costs four prompts a step

if TYPE_CHECKING:  # torch loads only when a command trains: `promptrec --help` stays fast
    from promptrec.training.trainer import TrainConfig, TrainState


def _lora_modules(listed: str) -> list[str]:
    names = [name.strip() for name in listed.split(",") if name.strip()]
    if not names:
        raise RequestError("--lora-modules is empty; name layers such as q_proj,v_proj")
    return names


def _name_base_model(folder: Path, name: str) -> None:
    """PEFT records the base model's load path (a cache folder on this machine); record its name instead."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = name
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def run_finetune(
    dataset: Path,
    out: Path,
    *,
    interactions: Path | None = None,
    model: str | None = None,
    template: str | None = None,
    samples: int | None = None,
    prefixes_per_user: int = 1,
    max_history: int = 10,
    n_candidates: int | None = None,
    validation_users: int = 40,
    hard_negatives: float = 0.0,
    hard_negative_pool: int = 50,
    config: TrainConfig | None = None,
    start_from: Path | None = None,
    command: str = "",
) -> TrainState:
    """Build examples, train, and write the best adapter with its card into `out`.

    `start_from` continues an adapter of the same base model, template and LoRA shape on this run's
    examples (a fresh optimizer; the objective may change between pointwise and ranking, which train the
    same prompts); its card is kept in the new card under `training.started_from`.
    `n_candidates` per prefix: 20 for listwise, 4 for a ranking group if unset (pointwise uses one negative).
    """
    import torch

    from promptrec.backends.loader import resolve_model
    from promptrec.backends.transformers_backend import TransformersBackend
    from promptrec.bundled import BUNDLED_MODEL_NAME
    from promptrec.evaluation.protocols import Protocol, detect_protocol
    from promptrec.prompting.builder import PromptBudget
    from promptrec.prompting.templates import TemplateLibrary
    from promptrec.training.trainer import LoraTrainer, TrainConfig, peak_memory_mib

    config = config or TrainConfig()
    objective = config.objective
    model_dir = resolve_model(model)
    cuda = torch.cuda.is_available()
    config = config.model_copy(update={"quantize_4bit": cuda})
    backend = TransformersBackend(
        model_dir, device="cuda" if cuda else "cpu", quantization="4bit" if cuda else None, seed=config.seed
    )
    chosen = TemplateLibrary().get(template, objective.mode)
    started_from = None
    if start_from is not None:
        started_from = _starting_adapter(start_from, model_dir, chosen.name)
        config = config.model_copy(update={"start_from_sha256": started_from["weights_sha256"]})
    budget = PromptBudget(max_history_items=max_history)
    if detect_protocol(dataset) is Protocol.TALLREC:
        if hard_negatives:
            raise RequestError(
                f"--hard-negatives needs an interaction log to mine from; {dataset} holds labelled yes/no "
                "rows, whose negatives are given"
            )
        data = question_data(
            dataset,
            chosen,
            backend.formatter,
            budget,
            samples=samples,
            validation_rows=validation_users,
            config=config,
        )
    else:
        data = log_data(
            dataset,
            interactions,
            chosen,
            backend.formatter,
            budget,
            samples=samples,
            prefixes_per_user=prefixes_per_user,
            n_candidates=n_candidates or (RANKING_GROUP if objective is Objective.RANKING else 20),
            validation_users=validation_users,
            config=config,
            hard_negatives=hard_negatives,
            hard_negative_pool=hard_negative_pool,
        )
    print(data.summary, file=sys.stderr, flush=True)
    trainer = LoraTrainer(backend, config, budget, start_from=start_from)

    def write_card(folder: Path, state: TrainState) -> None:
        before_training = state.validations[0][1] if state.validations else None
        _name_base_model(folder, BUNDLED_MODEL_NAME if model is None else model)
        AdapterCard(
            base_model=BUNDLED_MODEL_NAME if model is None else model,
            base_model_sha256=base_model_sha256(model_dir),
            template=chosen.name,
            template_sha256=hashlib.sha256(chosen.path.read_bytes()).hexdigest(),
            objective=objective.value,
            mode=objective.mode.value,
            data={
                **data.card,
                "examples": len(data.examples),
                "examples_sha256": trainer.examples_fingerprint,
                "max_history": max_history,
            },
            command=command,
            training={
                **config.model_dump(mode="json"),
                "device": "cuda" if cuda else "cpu",
                "threads": torch.get_num_threads(),
                "steps": state.step,
                "train_seconds": round(state.seconds, 1),
                "tokens": state.tokens,
                "tokens_per_second": round(state.tokens / state.seconds, 1) if state.seconds else None,
                "peak_rss_mib": round(peak_memory_mib(), 1),
                **({"started_from": started_from} if started_from else {}),
            },
            metrics={
                "validation_metric": data.validation.description if data.validation else None,
                # Step 0 scores the base model, or the adapter a --start-from run continues.
                ("validation_start_adapter" if started_from else "validation_base_model"): before_training,
                "validation_best": state.best_metric if state.validations else None,
                "best_step": state.best_step,
            },
        ).write(folder)

    state = trainer.fit(data.examples, data.validation, out, on_best=write_card)
    if (out / "adapter_model.safetensors").is_file():
        write_card(out, state)  # final figures (time, tokens/s, memory) beside the best adapter's weights
    return state


def _starting_adapter(folder: Path, model_dir: str, template: str) -> dict[str, Any]:
    """What the new card records of the adapter a run starts from; refuses one trained on other prompts."""
    from promptrec.adapters.card import WEIGHTS_FILENAME, check_adapter, read_card

    check_adapter(folder, model_dir)  # the same base model, weights present and not all zero
    card = read_card(folder)
    if card is not None and card.template != template:
        raise RequestError(
            f"--start-from {folder} was trained with template {card.template!r}, not {template!r}; pass "
            "its --template (and an --objective of its mode)"
        )
    weights = hashlib.sha256((folder / WEIGHTS_FILENAME).read_bytes()).hexdigest()
    record: dict[str, Any] = {"adapter": folder.name, "weights_sha256": weights}
    if card is not None:
        record |= {"command": card.command, "data": card.data, "steps": card.training.get("steps")}
    return record


def finetune_command(
    dataset: Annotated[
        Path,
        typer.Option(
            help="Evaluation set (.jsonl, with --interactions), a log to split, or TALLRec yes/no rows "
            "(valid.json)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Adapter folder; re-run the same command to resume.")],
    interactions: Annotated[
        Path | None, typer.Option(help="LLMRank .valid.inter log; its users outside --dataset train.")
    ] = None,
    objective: Annotated[
        Objective,
        typer.Option(
            help="pointwise (Yes/No), listwise (score mode) or ranking (Yes/No prompts of a positive and "
            "its negatives, trained by a softmax over their margins)."
        ),
    ] = Objective.POINTWISE,
    samples: Annotated[
        int | None, typer.Option(min=1, help="Training examples to use (all if unset).")
    ] = None,
    prefixes_per_user: Annotated[
        int, typer.Option(min=1, help="Newest leave-one-out prefixes per user.")
    ] = 1,
    hard_negatives: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of negatives mined from item-kNN's top items for the prefix (the rest random).",
        ),
    ] = 0.0,
    hard_negative_pool: Annotated[
        int, typer.Option(min=1, help="How many of item-kNN's top items a hard negative is drawn from.")
    ] = 50,
    candidates: Annotated[
        int | None,
        typer.Option(
            min=2,
            help=f"Candidates per training prefix, the positive included: listwise (20 if unset) and "
            f"ranking ({RANKING_GROUP} if unset); pointwise always pairs a positive with one negative.",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    max_steps: Annotated[int | None, typer.Option(min=1)] = None,
    max_minutes: Annotated[float | None, typer.Option(min=0.1, help="Training time budget.")] = None,
    lora_r: Annotated[int, typer.Option(min=1)] = 8,
    lora_layers: Annotated[
        int | None, typer.Option(min=1, help="LoRA on the top N layers only (cheaper steps); all if unset.")
    ] = None,
    lora_modules: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated linear layers that get LoRA (attention q/k/v/o_proj if unset); "
            "add gate_proj,up_proj,down_proj for the MLP."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(min=0.1)] = 16.0,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.05,
    lr: Annotated[float, typer.Option(min=1e-7)] = 5e-4,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_history: Annotated[int, typer.Option(min=0, help="Newest history items per prompt.")] = 10,
    validation_users: Annotated[
        int, typer.Option(min=0, help="Training users (or yes/no rows) set aside for validation.")
    ] = 40,
    validate_every: Annotated[int, typer.Option(min=1, help="Steps between validations.")] = 50,
    checkpoint_every: Annotated[int, typer.Option(min=1)] = 25,
    patience: Annotated[
        int, typer.Option(min=1, help="Validations without improvement before stopping.")
    ] = 4,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    model: Annotated[
        str | None, typer.Option(help="Local base model folder; the bundled model if unset.")
    ] = None,
    template: Annotated[str | None, typer.Option(help="Template; the objective's default if unset.")] = None,
    start_from: Annotated[
        Path | None,
        typer.Option(
            help="Adapter folder to continue training from, on this run's data with a fresh optimizer "
            "(same base model, objective and LoRA shape)."
        ),
    ] = None,
) -> None:
    """Fine-tune a LoRA adapter (QLoRA 4-bit on CUDA) on a labelled log; evaluation users never train."""
    from promptrec.training.trainer import TrainConfig

    if candidates is not None and objective is Objective.POINTWISE:
        raise RequestError(
            "--candidates sets the listwise prompt or the ranking group; pointwise pairs each positive with "
            "one negative. Drop it, or pass --objective ranking"
        )
    config = TrainConfig(
        objective=objective,
        lora_r=lora_r,
        top_layers=lora_layers,
        **({"target_modules": _lora_modules(lora_modules)} if lora_modules is not None else {}),
        lora_alpha=alpha,
        lora_dropout=dropout,
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        max_steps=max_steps,
        max_minutes=max_minutes,
        checkpoint_every=checkpoint_every,
        validate_every=validate_every,
        patience=patience,
        seed=seed,
        threads=threads,
    )
    state = run_finetune(
        dataset,
        out,
        interactions=interactions,
        model=model,
        template=template,
        samples=samples,
        prefixes_per_user=prefixes_per_user,
        max_history=max_history,
        n_candidates=candidates,
        validation_users=validation_users,
        hard_negatives=hard_negatives,
        hard_negative_pool=hard_negative_pool,
        config=config,
        start_from=start_from,
        command=shlex.join(["promptrec", *sys.argv[1:]]),
    )
    summary: dict[str, Any] = {
        "out": str(out),
        "steps": state.step,
        "stopped": state.stopped,
        "best_step": state.best_step,
        "best_validation": state.best_metric if state.validations else None,
        "train_seconds": round(state.seconds, 1),
    }
    typer.echo(summary)
