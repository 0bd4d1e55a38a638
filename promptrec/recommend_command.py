"""`promptrec recommend`: k items from a catalogue file, as JSON on stdout or as a table for people."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from promptrec.cli_options import with_llm_options
from promptrec.options import LLMOptions, load_recommender
from promptrec.scenarios import Scenario
from promptrec.terminal import cells

if TYPE_CHECKING:
    from promptrec.recommend import Recommendation


class OutputFormat(StrEnum):
    JSON = "json"
    TABLE = "table"


# Demonstrations and bootstrap wrap `rank`; recommend ranks its own shortlist with the plain recommender.
@with_llm_options(omit=("demos", "demo_selector", "bootstrap"))
def recommend_command(
    catalog: Annotated[
        Path,
        typer.Option(help="Catalogue: .jsonl, .csv (id,title[,text]), MovieLens movies.csv, RecBole .item."),
    ],
    request_text: Annotated[str | None, typer.Option(help='Free-text request, e.g. "a 90s comedy".')] = None,
    history: Annotated[
        str | None, typer.Option(help="Catalogue item ids the user already has, oldest first: ID,ID,...")
    ] = None,
    preference: Annotated[
        list[str] | None, typer.Option(help="A stated preference; repeat for several.")
    ] = None,
    k: Annotated[int, typer.Option(min=1, help="Items to recommend.")] = 10,
    n_candidates: Annotated[int, typer.Option(min=1, help="Retrieved items the LLM ranks.")] = 20,
    scenario: Annotated[Scenario, typer.Option(help="Where the list is shown.")] = Scenario.BROWSE,
    diversity: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="MMR lambda: 0 keeps the ranking, 1 only diversifies."),
    ] = None,
    explain: Annotated[bool, typer.Option(help="Add one checked reason per item (slower).")] = False,
    use_llm: Annotated[
        bool, typer.Option("--llm/--no-llm", help="--no-llm: the retrievers' order alone.")
    ] = True,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="json (default) or table.")
    ] = OutputFormat.JSON,
    *,
    llm: LLMOptions,
) -> None:
    """Recommend k items from a whole catalogue for a new user, a short history or a free-text request."""
    user = {
        "request": request_text,
        "preferences": preference or [],
        "history": [
            {"item_id": item_id.strip()} for item_id in (history or "").split(",") if item_id.strip()
        ],
    }
    with load_recommender(llm) as recommender:
        result = recommender.recommend(
            user,
            catalog,
            k=k,
            n_candidates=n_candidates,
            scenario=scenario,
            template=llm.template,
            diversity=diversity,
            explain=explain,
            use_llm=use_llm,
        )
    if output is OutputFormat.TABLE:
        print_table(result)
    else:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False))


def print_table(result: Recommendation) -> None:
    diagnostics = result.diagnostics
    table = Table(title=f"{len(result.item_ids)} recommendations ({diagnostics.scenario.value})")
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("title")
    table.add_column("retrieved by")
    table.add_column("placed by")
    if result.explanations is not None:
        table.add_column("why")
    for position, row in enumerate(
        zip(result.item_ids, result.titles, result.stages, result.sources, strict=True), start=1
    ):
        reason = [result.explanations[position - 1]] if result.explanations is not None else []
        table.add_row(*cells(str(position), *row, *reason))
    console = Console()
    console.print(table)
    facets = diagnostics.facets
    console.print(
        f"strategy: {diagnostics.strategy} ({', '.join(diagnostics.retrievers)}); facets: "
        f"{facets.model_dump(exclude={'evidence'}, exclude_defaults=True) or 'none'} "
        f"-> {diagnostics.facet_policy}"
        f"; index: {diagnostics.index_cache}; total {diagnostics.timings_s['total_s']:.2f}s",
        highlight=False,
        markup=False,  # the facets quote the customer's words
    )
