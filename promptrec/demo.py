"""`promptrec demo`: the main job on the embedded default, shown readably.

The embedded default is MovieLens latest-small (shipped in promptrec/datasets with its README) under
leave-one-out: each user's last rating is held out and mixed with 19 movies they never rated.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from promptrec.data.dataset import RankingDataset, load_dataset
from promptrec.models import RankMode
from promptrec.prompting.templates import TemplateLibrary
from promptrec.ranker import Ranker
from promptrec.terminal import cells

DEMO_DATASET = Path(__file__).resolve().parent / "datasets" / "ml-latest-small"
DEMO_USER = "1"
HISTORY_SHOWN = 10


def run_demo(
    ranker: Ranker,
    user: str | None = None,
    mode: RankMode | None = None,
    template: str | None = None,
    dataset: RankingDataset | None = None,
) -> None:
    """Rank one user's candidates and show them; `mode=None`: the mode `template` declares, else the mode
    the ranker's adapter was trained for (pointwise for the shipped adapter), else score mode. `dataset`:
    the MovieLens demo set when the caller has loaded it already."""
    if mode is None and template is not None:
        mode = TemplateLibrary().load(template).contract.mode
    mode = mode or getattr(ranker, "default_mode", None) or RankMode.SCORE
    console = Console()
    dataset = dataset or load_dataset(DEMO_DATASET)
    case = dataset.case_for_user(user or DEMO_USER)
    titles = {item.id: item.title for item in [*case.history_items, *case.candidates]}

    history = Table(
        title=f"User {case.user.user_id}: newest {HISTORY_SHOWN} of {len(case.user.history)} ratings"
    )
    history.add_column("#", justify="right")
    history.add_column("movie")
    history.add_column("rating", justify="right")
    shown = case.user.history[-HISTORY_SHOWN:]
    for position, event in enumerate(shown, start=len(case.user.history) - len(shown) + 1):
        history.add_row(
            *cells(str(position), titles[event.item_id], f"{event.rating:g}" if event.rating else "")
        )
    console.print(history)

    with console.status(f"ranking {len(case.candidates)} candidates ({mode.value} mode, {ranker.name})"):
        ranked = ranker.rank_many([case.to_request(mode=mode, template=template)])[0]

    result = Table(title="Ranked candidates (the held-out next movie is marked ★)")
    result.add_column("rank", justify="right")
    result.add_column("movie")
    result.add_column("score", justify="right")
    result.add_column("source")
    for position, item_id in enumerate(ranked.item_ids, start=1):
        score = f"{ranked.scores[position - 1]:.3f}" if ranked.scores else ""
        marker = " ★" if item_id == case.target_id else ""
        result.add_row(
            *cells(str(position), titles[item_id] + marker, score, ranked.sources[position - 1].value)
        )
    console.print(result)
    diagnostics = ranked.diagnostics
    console.print(
        f"parse: {diagnostics.parse_status.value}, prompt tokens: {diagnostics.prompt_tokens}, "
        f"history used: {diagnostics.history_used} (dropped {diagnostics.history_dropped}), "
        f"latency: {diagnostics.latency_s:.2f}s, backend: {diagnostics.backend}"
    )
    console.print(
        "[dim]A 135M model on CPU is a development model (by default with the small adapter fine-tuned on "
        "MovieLens that ships with promptrec; --adapter none runs it zero-shot): see evals/ for measured "
        "figures.[/]"
    )
