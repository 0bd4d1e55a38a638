"""Command line: `promptrec rank`, `promptrec demo`, `promptrec eval`, `promptrec templates`.

Results go to stdout as JSON; progress and errors go to stderr; every PromptrecError exits non-zero.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from promptrec.cli_options import (
    AdapterOption,
    BackendOption,
    BaseUrlOption,
    MaxHistoryOption,
    ModelOption,
    TemplateOption,
)
from promptrec.errors import PromptrecError, RequestError
from promptrec.evaluation.command import eval_command
from promptrec.models import RankMode
from promptrec.training.command import finetune_command

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Prompt-driven LLM recommender.")
stderr = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ModeOption = Annotated[
    RankMode, typer.Option(help="generate: the model writes a list; score / pointwise: log-probs.")
]


def exits_on_error(command: F) -> F:
    """Print a PromptrecError as one clear message on stderr and exit with its code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PromptrecError as error:
            stderr.print(f"[bold red]error[/]: {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from error

    return wrapper  # type: ignore[return-value]


def make_recommender(
    backend: str, model: str | None, base_url: str | None, max_history: int, adapter: str | None = None
) -> Any:
    from promptrec.adapters import adapter_options
    from promptrec.prompting.builder import PromptBudget
    from promptrec.recommender import Recommender

    options: dict[str, Any] = {
        "budget": PromptBudget(max_history_items=max_history),
        **adapter_options(adapter),
    }
    if base_url:
        options["base_url"] = base_url
    with stderr.status(f"loading the {backend} backend..."):
        return Recommender.load(backend, model, **options)


def _read_request_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise RequestError(
            f"--request {source}: cannot read the file ({error.strerror}); give a JSON file or '-'"
        ) from error


@app.command()
@exits_on_error
def rank(
    dataset: Annotated[
        Path | None, typer.Option(help="Ranking set (.jsonl), MovieLens folder or RecBole .inter.")
    ] = None,
    user: Annotated[str | None, typer.Option(help="User id in --dataset.")] = None,
    request: Annotated[
        str | None, typer.Option(help="A rank request as a JSON file, or '-' for stdin.")
    ] = None,
    backend: BackendOption = "transformers",
    model: ModelOption = None,
    mode: ModeOption = RankMode.GENERATE,
    template: TemplateOption = None,
    k: Annotated[int | None, typer.Option(min=1, help="Return the top k only.")] = None,
    base_url: BaseUrlOption = None,
    max_history: MaxHistoryOption = 50,
    adapter: AdapterOption = None,
) -> None:
    """Rank one user's candidates and print the ranked list as JSON."""
    from promptrec.validation import parse_request

    if (request is None) == (dataset is None):
        raise RequestError("give either --request FILE|- or --dataset PATH --user ID")
    if request is not None:
        rank_request = parse_request(_read_request_text(request))
        rank_request = rank_request.model_copy(
            update={"mode": mode, "template": template or rank_request.template, "k": k or rank_request.k}
        )
    else:
        from promptrec.data.dataset import load_dataset

        if user is None:
            raise RequestError("--user is required with --dataset")
        case = load_dataset(dataset).case_for_user(user)
        rank_request = case.to_request(mode=mode, template=template, k=k)
    recommender = make_recommender(backend, model, base_url, max_history, adapter)
    ranked = recommender.rank(rank_request)
    payload = {"user_id": rank_request.user.user_id, **ranked.model_dump(mode="json")}
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


@app.command()
@exits_on_error
def demo(
    user: Annotated[
        str | None, typer.Option(help="A MovieLens user id; a fixed example user if unset.")
    ] = None,
    mode: ModeOption = RankMode.SCORE,
    backend: BackendOption = "transformers",
    model: ModelOption = None,
    max_history: MaxHistoryOption = 20,
    adapter: AdapterOption = None,
) -> None:
    """Rank 20 MovieLens candidates for one user with the bundled model, shown readably."""
    from promptrec.demo import run_demo

    run_demo(make_recommender(backend, model, None, max_history, adapter), user=user, mode=mode)


# eval_command reports PromptrecErrors itself (it must close its progress display first).
app.command("eval", help="Evaluate methods offline against held-out targets; resumable.")(eval_command)


app.command("finetune")(exits_on_error(finetune_command))


@app.command()
def templates() -> None:
    """List the prompt templates and their output contracts."""
    from promptrec.prompting.templates import TemplateLibrary

    library = TemplateLibrary()
    for name in library.names():
        contract = library.load(name).contract
        typer.echo(
            f"{name:24} mode={contract.mode.value:10} format={contract.format.value:14} "
            f"{contract.description}"
        )


if __name__ == "__main__":
    app()
