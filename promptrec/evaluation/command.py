"""`promptrec eval`: run methods over a dataset's cases, resumably, and write metrics, report and plots.

Register with `app.command("eval")(eval_command)`; the command prints PromptrecErrors itself and exits
with their code. `run_evaluation` is the same thing as a Python function (tests inject a recommender).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from promptrec.cli_options import with_llm_options
from promptrec.errors import PromptrecError, RequestError
from promptrec.evaluation import full_catalogue, report
from promptrec.evaluation.protocols import (
    PUBLISHED,
    PUBLISHED_NOTES,
    Protocol,
    RankingTask,
    Task,
    describe_task,
    detect_protocol,
    fingerprint,
    load_task,
    shown_path,
)
from promptrec.evaluation.runner import (
    Method,
    RankerMethod,
    RunConfig,
    TimingLog,
    open_run_dir,
    read_results,
    run_method,
)
from promptrec.evaluation.strategy_methods import (
    STRATEGY_METHODS,
    Validation,
    build_strategy,
    fitted_retriever,
    split_validation,
)
from promptrec.models import RankMode
from promptrec.options import LLMOptions, build_llm_ranker, template_sha256
from promptrec.retrievers import RETRIEVERS
from promptrec.strategies.memo import MemoRanker
from promptrec.terminal import print_error

BASELINES = ("random", "popularity", "bm25", "itemknn", "embedding")
POINTWISE_METHODS = ("llm", "random")  # a one-candidate question gives count/text baselines nothing to rank
RecommenderFactory = Callable[[], Any]


def _methods(text: str | None, protocol: Protocol) -> list[str]:
    default = POINTWISE_METHODS if protocol is Protocol.TALLREC else ("llm", *BASELINES)
    allowed = POINTWISE_METHODS if protocol is Protocol.TALLREC else ("llm", *BASELINES, *STRATEGY_METHODS)
    if protocol is Protocol.FULL_CATALOGUE:
        default, allowed = full_catalogue.DEFAULT_METHODS, full_catalogue.catalogue_methods()
    methods = [name.strip() for name in text.split(",") if name.strip()] if text else list(default)
    unknown = [name for name in methods if name not in allowed]
    if unknown or len(set(methods)) != len(methods) or not methods:
        problem = f"unknown or unsupported {unknown}" if unknown else "empty or repeated names"
        raise RequestError(
            f"--methods {text!r}: {problem} for the {protocol.value} protocol; "
            f"choose from {', '.join(allowed)}"
        )
    return methods


def _mode(mode: RankMode | None, protocol: Protocol, llm: LLMOptions) -> RankMode:
    if protocol is Protocol.TALLREC:
        if mode not in (None, RankMode.POINTWISE):
            raise RequestError(
                f"--mode {mode.value}: the tallrec protocol asks one yes/no question per row; "
                "use --mode pointwise (or leave --mode unset)"
            )
        return RankMode.POINTWISE
    return mode or llm.served_mode() or RankMode.GENERATE  # an adapter is evaluated the way it was trained


def build_config(
    dataset: Path,
    *,
    methods: str | None,
    protocol: Protocol,
    interactions: Path | None,
    reference: str | None,
    limit: int | None,
    seed: int,
    n_negatives: int,
    mode: RankMode | None,
    llm: LLMOptions,
    hybrid_retriever: str | None = None,
    validation: Path | None = None,
    validation_limit: int | None = None,
    validation_users: float | None = None,
    rerank_top: int | None = None,
    held_out: bool = False,
    history_items: int | None = None,
) -> RunConfig:
    protocol = detect_protocol(dataset) if protocol is Protocol.AUTO else protocol
    chosen = _methods(methods, protocol)
    if reference is not None and reference not in chosen:
        raise RequestError(
            f"--reference {reference}: not among --methods {','.join(chosen)}; add it to --methods or drop it"
        )
    if hybrid_retriever is not None and hybrid_retriever not in RETRIEVERS:
        raise RequestError(f"--hybrid-retriever {hybrid_retriever}: choose from {', '.join(RETRIEVERS)}")
    if validation is not None and validation_users is not None:
        raise RequestError(
            "--validation and --validation-users: pass one source of validation cases, not both"
        )
    run_mode = _mode(mode, protocol, llm)
    return RunConfig(
        dataset=shown_path(dataset),
        dataset_sha256=fingerprint(dataset),
        protocol=protocol.value,
        interactions=shown_path(interactions) if interactions else None,
        interactions_sha256=fingerprint(interactions) if interactions else None,
        methods=chosen,
        reference=reference or ("random" if "random" in chosen else ""),
        limit=limit,
        seed=seed,
        n_negatives=n_negatives,
        mode=run_mode.value,
        template_sha256=template_sha256(llm.template, run_mode),
        llm=llm,
        hybrid_retriever=hybrid_retriever,
        validation=shown_path(validation) if validation else None,
        validation_sha256=fingerprint(validation) if validation else None,
        validation_limit=validation_limit,
        validation_users=validation_users,
        rerank_top=rerank_top,
        held_out=held_out,
        history_items=history_items,
    )


def _method_factory(
    name: str,
    task: Task,
    config: RunConfig,
    recommender: RecommenderFactory,
    *,
    validation: Validation | None = None,
    out: Path | None = None,
    console: Console | None = None,
    bars: _ProgressBars | None = None,
) -> Callable[[], Method]:
    def build() -> Method:
        if name == "llm":
            return RankerMethod(name, recommender())
        if name in STRATEGY_METHODS:
            progress = bars.callback(f"{name} (validation)") if bars else None
            return build_strategy(
                name, task, validation, config, recommender(), out or Path("."), console, progress
            )
        from promptrec.ranker import RetrieverRanker

        return RankerMethod(name, RetrieverRanker(fitted_retriever(name, task, config.seed), config.seed))

    return build


_COLUMNS = (
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
    TextColumn("ETA"),
    TimeRemainingColumn(),
)


class _ProgressBars:
    """One rich bar per method on stderr; a resumed method's bar starts at its finished count, so the ETA
    reflects only this run's speed."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.bars: dict[str, Any] = {}

    def callback(self, method: str) -> Callable[[int, int, int], None]:
        def update(done: int, total: int, resumed: int) -> None:
            if method not in self.bars:
                label = f"{method} ({resumed} resumed)" if resumed else method
                self.bars[method] = self.progress.add_task(label, total=total, completed=done)
            else:
                self.progress.update(self.bars[method], completed=done)

        return update


def _llm_ranker(config: RunConfig, task: Task | None, recommender: RecommenderFactory | None) -> Any:
    """The run's LLM ranker (LLMOptions' strategies around the recommender); demonstrations come from the
    task's training histories only. `recommender` replaces the loaded model (tests)."""
    ranking = isinstance(task, RankingTask)
    return build_llm_ranker(
        config.llm,
        train_histories=task.train_histories if ranking else None,
        catalog={item.id: item for item in task.catalog} if ranking else None,
        seed=config.seed,
        recommender=recommender() if recommender else None,
    )


def run_evaluation(
    config: RunConfig,
    out: Path,
    *,
    recommender: RecommenderFactory | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run (or resume) every method, then write metrics.json, diagnostics.json, timings.json, report.md and
    the plots into `out`. Returns the metrics."""
    console = console or Console(stderr=True)
    if config.protocol == Protocol.FULL_CATALOGUE.value:
        with Progress(*_COLUMNS, console=console) as progress:
            llm = functools.cache(lambda: _llm_ranker(config, None, recommender))
            return full_catalogue.run_full_catalogue(config, out, llm, _ProgressBars(progress).callback)
    open_run_dir(out, config)
    started = time.perf_counter()
    task = load_task(
        Path(config.dataset),
        Protocol(config.protocol),
        interactions=Path(config.interactions) if config.interactions else None,
        limit=config.limit,
        n_negatives=config.n_negatives,
        seed=config.seed,
        held_out=config.held_out,
        history_items=config.history_items,
    )
    task, validation = split_validation(task, config)
    # One LLM for every method of the run, remembering its answers: `hybrid` reuses what `llm` ranked.
    llm = functools.cache(lambda: MemoRanker(_llm_ranker(config, task, recommender)))
    timings = TimingLog(out)
    timings.add("load data", 0, time.perf_counter() - started, 0.0)
    with Progress(*_COLUMNS, console=console) as progress:
        bars = _ProgressBars(progress)
        for name in config.methods:
            build = _method_factory(
                name, task, config, llm, validation=validation, out=out, console=console, bars=bars
            )
            run_method(
                name,
                build,
                task,
                out,
                mode=RankMode(config.mode),
                template=config.llm.template,
                on_progress=bars.callback(name),
                timings=timings,
            )
    return write_outputs(out, task, config)


def write_outputs(out: Path, task: Task, config: RunConfig) -> dict[str, Any]:
    """metrics.json, diagnostics.json, the plots and report.md from the finished results in `out`."""
    from promptrec.evaluation.plots import make_plots  # matplotlib is slow to import; only reports need it

    ranking = isinstance(task, RankingTask)
    results = {name: read_results(out, name, task) for name in config.methods}
    reference = config.reference or None
    metrics = report.build_metrics(results, ranking=ranking, reference=reference, seed=config.seed)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    diagnostics = {name: d for name, records in results.items() if (d := report.llm_diagnostics(records))}
    (out / "diagnostics.json").write_text(json.dumps(diagnostics, indent=2) + "\n", encoding="utf-8")
    sizes = {len(case.candidates) for case in task.cases} if ranking else set()
    n_candidates = sizes.pop() if len(sizes) == 1 else None
    plots = make_plots(out, metrics, results, ranking=ranking, n_candidates=n_candidates)
    analytic = report.random_analytic(n_candidates) if n_candidates else None
    text = report.render_report(
        task=describe_task(task),
        config=config.model_dump(),
        metrics=metrics,
        diagnostics=diagnostics,
        timings=TimingLog(out).read(),
        plots=plots,
        analytic=analytic,
        published=PUBLISHED.get(task.reference_key, []),
        notes=[PUBLISHED_NOTES[task.reference_key]] if task.reference_key in PUBLISHED_NOTES else [],
        reference=reference,
    )
    (out / "report.md").write_text(text, encoding="utf-8")
    return metrics


def _help(text: str) -> Any:
    return typer.Option(help=text)


DatasetOption = Annotated[Path, _help("LLMRank .jsonl, MovieLens folder, RecBole .inter or TALLRec .json.")]
OutOption = Annotated[Path, _help("Run folder; run the same command again to resume it.")]
MethodsOption = Annotated[
    str | None,
    _help(
        "Comma-separated: llm, random, popularity, bm25, itemknn, embedding, and the strategies hybrid, "
        "hints, hybrid-hints (tallrec: llm, random; full-catalogue: itemknn, itemknn+llm, ...); "
        "all but the strategies if unset."
    ),
]
InteractionsOption = Annotated[
    Path | None, _help("Train histories for the baselines, e.g. Games-6k.valid.inter (never a .test.inter).")
]
ProtocolOption = Annotated[
    Protocol, _help("auto: a .json file is tallrec, anything else ranking; full-catalogue: all items (LOO).")
]
ReferenceOption = Annotated[str | None, _help("Method the others are compared with; random if run.")]
ModeOption = Annotated[RankMode | None, _help("LLM mode; unset: generate (ranking), pointwise (tallrec).")]
# Strategy options (promptrec/evaluation/strategy_methods.py).
HybridRetrieverOption = Annotated[
    str | None,
    _help("Retriever the hybrid fuses with the LLM (popularity, bm25, itemknn, embedding); itemknn."),
]
ValidationOption = Annotated[
    Path | None,
    _help("Ranking set of OTHER users to choose the hybrid weight on (Games: games6k_random_cands20.jsonl)."),
]
ValidationLimitOption = Annotated[int | None, typer.Option(min=1, help="Use the first N validation users.")]
ValidationUsersOption = Annotated[
    float | None,
    typer.Option(
        min=0.0, max=1.0, help="Hold out this share of the dataset's users for validation (e.g. 0.2)."
    ),
]


@with_llm_options()
def eval_command(
    dataset: DatasetOption,
    out: OutOption,
    methods: MethodsOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate the first N cases only.")] = None,
    seed: Annotated[int, typer.Option(help="Negative sampling, tie-break and bootstrap seed.")] = 0,
    interactions: InteractionsOption = None,
    protocol: ProtocolOption = Protocol.AUTO,
    reference: ReferenceOption = None,
    n_negatives: Annotated[int, typer.Option(min=1, help="Sampled negatives per case (leave-one-out).")] = 19,
    mode: ModeOption = None,
    held_out: Annotated[
        bool, typer.Option(help="Evaluate only the held-out user split (the users fine-tuning never sees).")
    ] = False,
    history_items: Annotated[
        int | None,
        typer.Option(min=0, help="Cold start: show each case only its newest N history items (0: none)."),
    ] = None,
    hybrid_retriever: HybridRetrieverOption = None,
    validation: ValidationOption = None,
    validation_limit: ValidationLimitOption = None,
    validation_users: ValidationUsersOption = None,
    rerank_top: Annotated[
        int | None,
        typer.Option(min=1, help="full-catalogue: items the retriever shortlists for the LLM (20)."),
    ] = None,
    *,
    llm: LLMOptions,
) -> None:
    """Evaluate the LLM and baselines offline: metrics with 95% CIs, slices, report.md and plots in --out.

    Prints the main metrics per method as JSON on stdout; progress and errors go to stderr.
    """
    console = Console(stderr=True)
    try:
        config = build_config(
            dataset,
            methods=methods,
            protocol=protocol,
            interactions=interactions,
            reference=reference,
            limit=limit,
            seed=seed,
            n_negatives=n_negatives,
            mode=mode,
            llm=llm,
            hybrid_retriever=hybrid_retriever,
            validation=validation,
            validation_limit=validation_limit,
            validation_users=validation_users,
            rerank_top=rerank_top,
            held_out=held_out,
            history_items=history_items,
        )
        metrics = run_evaluation(config, out, console=console)
    except PromptrecError as error:
        print_error(console, error)
        raise typer.Exit(error.exit_code) from error
    console.print(f"wrote {out / 'report.md'} and {out / 'metrics.json'}", highlight=False, markup=False)
    typer.echo(json.dumps(report.headline(metrics), indent=2))
