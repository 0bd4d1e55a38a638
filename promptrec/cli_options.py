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
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0.001,
        help="Deadline in seconds of each backend call (transformers and openai backends); a later answer is "
        "a backend error (exit 4).",
    ),
]
FallbackOption = Annotated[
    str | None,
    typer.Option(help="'retriever': if the backend fails, answer in candidate order, marked 'fallback'."),
]
