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

from promptrec.cli_options import with_llm_options
from promptrec.errors import PromptrecError, RequestError
from promptrec.evaluation.command import eval_command
from promptrec.models import RankMode
from promptrec.options import LLMOptions
from promptrec.recommend_command import recommend_command
from promptrec.terminal import print_error
from promptrec.training.command import finetune_command

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Prompt-driven LLM recommender.")
stderr = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def exits_on_error(command: F) -> F:
    """Print a PromptrecError as one clear message on stderr and exit with its code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PromptrecError as error:
            print_error(stderr, error)
            raise typer.Exit(error.exit_code) from error

    return wrapper  # type: ignore[return-value]


def make_ranker(options: LLMOptions, dataset: Any = None, keep_prompts: bool = False) -> Any:
    """The LLM ranker `options` describe; demonstrations come from `dataset`'s training histories."""
    from promptrec.options import build_llm_ranker

    pool = {}
    if dataset is not None:
        pool = {
            "train_histories": dataset.train_histories,
            "catalog": {item.id: item for item in dataset.catalog},
        }
    elif options.demos:
        raise RequestError(
            "--demos draws demonstrations (and their negative candidates) from a dataset's training "
            "histories and catalogue: rank with --dataset PATH --user ID"
        )
    with stderr.status(f"loading the {options.backend} backend..."):
        return build_llm_ranker(options, keep_prompts=keep_prompts, **pool)


def _read_request_bytes(source: str, max_bytes: int) -> bytes:
    """At most max_bytes + 1 bytes, so an oversized request is refused (by parse_request) unread."""
    if source == "-":
        stream = getattr(sys.stdin, "buffer", None)
        return stream.read(max_bytes + 1) if stream else sys.stdin.read(max_bytes + 1).encode()
    try:
        with Path(source).open("rb") as handle:
            return handle.read(max_bytes + 1)
    except OSError as error:
        raise RequestError(
            f"--request {source}: cannot read the file ({error.strerror}); give a JSON file or '-'"
        ) from error


@app.command()
@exits_on_error
@with_llm_options()
def rank(
    dataset: Annotated[
        Path | None, typer.Option(help="Ranking set (.jsonl), MovieLens folder or RecBole .inter.")
    ] = None,
    user: Annotated[str | None, typer.Option(help="User id in --dataset.")] = None,
    request: Annotated[
        str | None, typer.Option(help="A rank request as a JSON file, or '-' for stdin.")
    ] = None,
    mode: Annotated[
        RankMode | None,
        typer.Option(
            help="generate: the model writes a list; score / pointwise: log-probs. Default: the "
            "request's own mode, else the adapter's training mode (pointwise for the shipped adapter), else "
            "generate."
        ),
    ] = None,
    k: Annotated[int | None, typer.Option(min=1, help="Return the top k only.")] = None,
    show_prompt: Annotated[
        bool, typer.Option("--show-prompt", help="Print exactly what the model received to stderr, too.")
    ] = False,
    *,
    llm: LLMOptions,
) -> None:
    """Rank one user's candidates and print the ranked list as JSON.

    Fields of a --request win over option defaults; an option given explicitly wins over the request.
    """
    from promptrec.validation import DEFAULT_LIMITS, parse_request

    if (request is None) == (dataset is None):
        raise RequestError("give either --request FILE|- or --dataset PATH --user ID")
    loaded = None
    if request is not None:
        rank_request = parse_request(_read_request_bytes(request, DEFAULT_LIMITS.max_bytes))
        explicit = {"mode": mode, "template": llm.template, "k": k}
        rank_request = rank_request.model_copy(
            update={field: value for field, value in explicit.items() if value is not None}
        )
    else:
        from promptrec.data.dataset import load_dataset

        if user is None:
            raise RequestError("--user is required with --dataset")
        loaded = load_dataset(dataset)
        rank_request = loaded.case_for_user(user).to_request(mode=mode, template=llm.template, k=k)
    ranked = make_ranker(llm, loaded, keep_prompts=show_prompt).rank_many([rank_request])[0]
    for number, prompt in enumerate(ranked.diagnostics.prompts or [], start=1):
        typer.echo(f"----- prompt {number} (verbatim, chat template applied) -----\n{prompt}", err=True)
    payload = {"user_id": rank_request.user.user_id, **ranked.model_dump(mode="json")}
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


@app.command()
@exits_on_error
@with_llm_options()
def demo(
    user: Annotated[
        str | None, typer.Option(help="A MovieLens user id; a fixed example user if unset.")
    ] = None,
    mode: Annotated[
        RankMode | None,
        typer.Option(
            help="Default: the adapter's training mode (pointwise for the shipped one), else score."
        ),
    ] = None,
    *,
    llm: LLMOptions,
) -> None:
    """Rank 20 MovieLens candidates for one user with the bundled model, shown readably."""
    from promptrec.data.dataset import load_dataset
    from promptrec.demo import DEMO_DATASET, run_demo

    dataset = load_dataset(DEMO_DATASET)  # the user shown, and with --demos the demonstrations' source
    ranker = make_ranker(llm, dataset if llm.demos else None)
    run_demo(ranker, user=user, mode=mode, template=llm.template, dataset=dataset)


app.command("recommend")(exits_on_error(recommend_command))

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
