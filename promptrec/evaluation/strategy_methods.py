"""Evaluation methods built from ranking strategies (promptrec/strategies/) around the run's LLM.

`hybrid`: the LLM fused with `--hybrid-retriever` at the weight chosen on the run's validation cases
(fusion_validation.py). The choice is saved as DIR/<method>-fusion.json the first time and read back on
resume, so a resumed run fuses with the same weight.
`hints`: the LLM with collaborative hints from the task's training histories (its mode's hints template
unless --template names one); `hybrid-hints`: that, fused like `hybrid`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from promptrec.errors import RequestError
from promptrec.evaluation.fusion_validation import (
    FusionChoice,
    held_out_users,
    tune_fusion,
    validation_cases_from,
)
from promptrec.evaluation.leakage import refuse_leaking_training_data
from promptrec.evaluation.protocols import RankingTask, Task
from promptrec.evaluation.runner import RankerMethod
from promptrec.models import RankingCase, RankMode
from promptrec.ranker import Ranker, RetrieverRanker
from promptrec.retrievers import Retriever, make_retriever
from promptrec.strategies.hints import HINT_TEMPLATES, CollaborativeHints, HintsRanker
from promptrec.strategies.hybrid import HybridRanker

STRATEGY_METHODS = ("hybrid", "hints", "hybrid-hints")
DEFAULT_HYBRID_RETRIEVER = "itemknn"
Progress = Callable[[int, int, int], None]  # (done, total, resumed), as the eval's progress bars take


@dataclass(frozen=True)
class Validation:
    cases: list[RankingCase]
    source: str  # what the report states about where the cases came from


def fitted_retriever(name: str, task: Task, seed: int) -> Retriever:
    """A registry retriever fitted on the task's train histories (TALLRec: on its targets' records only)."""
    retriever = make_retriever(name, seed=seed) if name == "random" else make_retriever(name)
    if isinstance(task, RankingTask):
        refuse_leaking_training_data(task.cases, task.train_histories, task.train_source)
        return retriever.fit(task.train_histories, {item.id: item for item in task.catalog})
    # TALLRec: only the random baseline, which learns nothing from its catalogue
    return retriever.fit({}, {item.id: item for item in (case.target_item() for case in task.cases)})


def split_validation(task: Task, config: Any) -> tuple[Task, Validation | None]:
    """The test task and the validation cases the run's options ask for (none if it asks for none)."""
    if config.validation is None and config.validation_users is None:
        return task, None
    if not isinstance(task, RankingTask):
        raise RequestError("--validation / --validation-users apply to the ranking protocol only; drop them")
    if config.validation_users is not None:
        test, cases = held_out_users(task, config.validation_users, config.seed)
        share = f"{config.validation_users:.0%}"
        return test, Validation(
            cases, f"{len(cases)} users of the dataset held out ({share}, seed {config.seed})"
        )
    cases = validation_cases_from(
        Path(config.validation),
        task,
        limit=config.validation_limit,
        n_negatives=config.n_negatives,
        seed=config.seed,
    )
    where = os.path.relpath(config.validation)  # reports never show a machine's absolute paths
    return task, Validation(cases, f"{len(cases)} users of {where} that are not test users")


def build_strategy(
    name: str,
    task: Task,
    validation: Validation | None,
    config: Any,
    llm: Ranker,
    out: Path,
    console: Console | None = None,
    progress: Progress | None = None,
) -> RankerMethod:
    """The strategy `name` around `llm`; `progress(done, total, resumed)` follows a hybrid's validation."""
    if name not in STRATEGY_METHODS:
        raise RequestError(f"unknown strategy method {name!r}; choose from {', '.join(STRATEGY_METHODS)}")
    if not isinstance(task, RankingTask):
        raise RequestError(f"--methods {name}: strategies apply to the ranking protocol only")
    inner = llm
    if name in ("hints", "hybrid-hints"):
        if config.llm.template is None and RankMode(config.mode) not in HINT_TEMPLATES:
            raise RequestError(
                f"--methods {name}: mode {config.mode} has no hints template; use --mode score or pointwise, "
                "or name a template that shows hints with --template"
            )
        popularity = fitted_retriever("popularity", task, config.seed)
        itemknn = fitted_retriever("itemknn", task, config.seed)
        catalogue = {item.id: item for item in task.catalog}
        inner = HintsRanker(llm, CollaborativeHints(popularity, itemknn, catalogue))
    if name == "hints":
        return RankerMethod(name, inner)
    return RankerMethod(name, _hybrid(name, task, validation, config, inner, out, console, progress))


def _hybrid(
    name: str,
    task: RankingTask,
    validation: Validation | None,
    config: Any,
    inner: Ranker,
    out: Path,
    console: Console | None,
    progress: Progress | None,
) -> HybridRanker:
    anchor_name = config.hybrid_retriever or DEFAULT_HYBRID_RETRIEVER
    anchor = RetrieverRanker(fitted_retriever(anchor_name, task, config.seed), config.seed)
    path = out / f"{name}-fusion.json"
    if path.exists():
        choice = FusionChoice.model_validate_json(path.read_text(encoding="utf-8"))
    else:
        if validation is None:
            raise RequestError(
                f"--methods {name} needs validation cases to choose its weight: pass --validation FILE "
                "(other users, e.g. games6k_random_cands20.jsonl) or --validation-users 0.2 (leave-one-out)"
            )
        if console is not None:
            console.print(
                f"{name}: choosing the fusion weight on {validation.source}", highlight=False, markup=False
            )
        done = itertools.count(1)
        total = len(validation.cases)
        choice = tune_fusion(
            inner,
            anchor,
            validation.cases,
            validation.source,
            mode=RankMode(config.mode),
            template=config.llm.template,
            on_result=(lambda index, ranked: progress(next(done), total, 0)) if progress else None,
        )
        path.write_text(choice.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return HybridRanker(inner, anchor, choice.weight, choice.method, name=name)
