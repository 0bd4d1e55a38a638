"""Command-line options shared by `promptrec rank`, `demo` and `eval`: one definition, one help text."""

from __future__ import annotations

from typing import Annotated

import typer

BackendOption = Annotated[str, typer.Option(help="transformers | vllm | openai (a running `vllm serve`).")]
ModelOption = Annotated[
    str | None, typer.Option(help="Local model folder or name; the bundled SmolLM2-135M-Instruct if unset.")
]
TemplateOption = Annotated[
    str | None, typer.Option(help="Template name in prompts/; the mode's default if unset.")
]
BaseUrlOption = Annotated[
    str | None, typer.Option(help="Server URL for --backend openai, e.g. http://127.0.0.1:8000/v1")
]
MaxHistoryOption = Annotated[int, typer.Option(help="Newest history items offered to the prompt budget.")]
AdapterOption = Annotated[
    str | None,
    typer.Option(
        help="LoRA adapter folder; 'none' runs the model zero-shot. Unset: the shipped fine-tuned adapter "
        "with the bundled model (transformers, vllm), none otherwise."
    ),
]
