"""Run methods over a task's cases, appending one judged JSON line per case so a run can resume.

A method sees only label-free `RankRequest`s and answers through `emit(index, answer)`; the runner then
judges the answer against its case (protocols.judge_*) and appends the record to
`DIR/results/<method>.jsonl`, flushed and fsynced once per batch. On start, finished case ids are read
back (a truncated last line -- a write cut by a kill -- is cut off and that case re-run) and skipped.
`DIR/run.json` pins the run's options: resuming with different ones is a RunConfigMismatch.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from promptrec.data.tallrec import PointwiseCase
from promptrec.errors import DataError, RequestError
from promptrec.evaluation.protocols import PointwiseTask, Task, history_length, judge_pointwise, judge_ranking
from promptrec.models import ItemSource, RankedList, RankMode, RankRequest
from promptrec.options import LLMOptions
from promptrec.ranker import Ranker


class RunConfigMismatch(RequestError):
    """`--out` holds a run made with other options; resuming into it would mix two experiments."""


class RunConfig(BaseModel):
    """Everything that decides a run's results; saved as DIR/run.json and compared on resume.

    Paths are stored as given (relative to the working directory when given so), never resolved to a
    machine's absolute path; the sha256 fields pin the contents, including the template's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    dataset_sha256: str
    protocol: str
    interactions: str | None
    interactions_sha256: str | None
    methods: list[str]
    reference: str
    limit: int | None
    seed: int
    n_negatives: int
    mode: str
    template_sha256: str
    llm: LLMOptions
    # Strategy options (promptrec/evaluation/strategy_methods.py); None when unused.
    hybrid_retriever: str | None = None
    validation: str | None = None
    validation_sha256: str | None = None
    validation_limit: int | None = None
    validation_users: float | None = None
    rerank_top: int | None = None
    held_out: bool = False  # only the held-out user split (data.splits.held_out_users)
    history_items: int | None = None  # cold start: cases show only their newest N history items


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def open_run_dir(out: Path, config: RunConfig) -> None:
    """Create DIR with run.json, or check that an existing run.json holds exactly this config."""
    path = out / "run.json"
    if path.exists():
        try:
            saved = _flat(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot be read ({exc}); delete it or pass a new --out", path=str(path)) from exc
        current = _flat(config.model_dump(mode="json"))
        for option in sorted(set(current) | set(saved)):
            value = current.get(option)
            if saved.get(option) != value:
                name = option.removeprefix("llm.")
                flag = "--" + name.removesuffix("_sha256").replace("_", "-")
                changed = " (the file's contents changed)" if option.endswith("_sha256") else ""
                raise RunConfigMismatch(
                    f"--out {out} holds a run with {name}={saved.get(option)!r}, this run has "
                    f"{value!r}{changed}; resume with the same {flag}, or pass a new --out for a new run"
                )
        return
    (out / "results").mkdir(parents=True, exist_ok=True)
    path.write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")


class ResultStore:
    """Append-only JSONL of judged cases for one method."""

    def __init__(self, path: Path):
        self.path = path

    def load(self, known_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Finished records by case id. A last line without its newline is cut off (re-run); any other bad
        line, duplicate or unknown case id is a DataError, since silently dropping it would change results."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete))
        records: dict[str, dict[str, Any]] = {}
        for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
            where = f"line {number}"
            try:
                record = json.loads(line)
                case_id = record["case_id"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(
                    f"is not a result record ({exc}); delete the line to re-run its case",
                    path=str(self.path),
                    record=where,
                ) from exc
            if case_id in records or case_id not in known_ids:
                problem = "is a duplicate" if case_id in records else "is not a case of this run"
                raise DataError(
                    f"case id {case_id!r} {problem}; delete the line or choose a new --out",
                    path=str(self.path),
                    record=where,
                )
            records[case_id] = record
        return records

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
            handle.flush()
            os.fsync(handle.fileno())


@dataclass(frozen=True)
class Answer:
    """A method's answer to one request: the full ordering of its candidates, and their scores if it has
    any (by item id; generate-mode LLM answers have none)."""

    ranked_ids: list[str]
    scores: dict[str, float] | None = None
    diagnostics: dict[str, Any] | None = None


Emit = Callable[[int, Answer], None]


class Method(ABC):
    """Something that answers label-free requests; `batch_size` answers are committed to disk at once."""

    name: str
    batch_size: int = 256

    @abstractmethod
    def answer(self, requests: Sequence[RankRequest], emit: Emit) -> None:
        """Call emit(index, answer) for every request (in any order, each once)."""


def llm_diagnostics(ranked: RankedList) -> dict[str, Any]:
    diagnostics = ranked.diagnostics
    return {
        "parse_status": diagnostics.parse_status.value,
        "backfilled": sum(source is ItemSource.BACKFILL for source in ranked.sources),
        "invalid_count": diagnostics.invalid_count,
        "duplicate_count": diagnostics.duplicate_count,
        "prompt_tokens": diagnostics.prompt_tokens,
        "completion_tokens": diagnostics.completion_tokens,
        "history_used": diagnostics.history_used,
        "history_dropped": diagnostics.history_dropped,
        "latency_s": diagnostics.latency_s,
        "raw_output": diagnostics.raw_output,
        "passes": len(ranked.passes) or 1,
    }


class RankerMethod(Method):
    """Any `Ranker` (the LLM, a retriever, a strategy wrapping either) as an evaluation method. Its
    results arrive through on_result, and each batch of them is committed to disk as soon as it
    finishes. Rankings the LLM took part in carry their diagnostics into the results file."""

    def __init__(self, name: str, ranker: Ranker):
        self.name = name
        self.ranker = ranker
        self.batch_size = getattr(ranker, "batch_size", 256)

    def answer(self, requests: Sequence[RankRequest], emit: Emit) -> None:
        def on_result(index: int, ranked: RankedList) -> None:
            scores = dict(zip(ranked.item_ids, ranked.scores, strict=True)) if ranked.scores else None
            from_llm = any(source is not ItemSource.RETRIEVER for source in ranked.sources)
            emit(index, Answer(list(ranked.item_ids), scores, llm_diagnostics(ranked) if from_llm else None))

        self.ranker.rank_many(list(requests), on_result=on_result)


@dataclass
class MethodRun:
    """What one invocation did for one method (for the timings table)."""

    method: str
    resumed: int  # cases found finished in the results file
    ran: int = 0
    setup_seconds: float = 0.0  # loading the model / fitting the retriever
    seconds: float = 0.0  # answering the pending cases


class TimingLog:
    """DIR/timings.json: seconds and answered cases per step, summed over every invocation on this folder
    (an interrupted invocation's partial work included), so a resumed run still reports its full cost."""

    def __init__(self, out: Path):
        self.path = out / "timings.json"

    def read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"is not valid JSON ({exc.msg}); delete it to restart the timings", path=str(self.path)
            ) from exc

    def add(self, step: str, answered: int, setup_s: float, answer_s: float) -> None:
        timings = self.read()
        entry = timings.setdefault(step, {"answered": 0, "invocations": 0, "setup_s": 0.0, "answer_s": 0.0})
        entry["answered"] += answered
        entry["invocations"] += 1
        entry["setup_s"] += setup_s
        entry["answer_s"] += answer_s
        entry["s_per_case"] = entry["answer_s"] / entry["answered"] if entry["answered"] else None
        self.path.write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")


def _requests(task: Task, cases: Sequence[Any], mode: RankMode, template: str | None) -> list[RankRequest]:
    if isinstance(task, PointwiseTask):
        return [case.to_request(mode=RankMode.POINTWISE, template=template) for case in cases]
    return [case.to_request(mode=mode, template=template) for case in cases]


def _judge(case: Any, answer: Answer) -> dict[str, Any]:
    if isinstance(case, PointwiseCase):
        if not answer.scores or len(answer.scores) != 1:
            raise RequestError(f"case {case.case_id}: a pointwise answer needs exactly one score")
        return judge_pointwise(case, next(iter(answer.scores.values())))
    return {**judge_ranking(case, answer.ranked_ids, answer.scores), "ranked_ids": answer.ranked_ids}


def run_method(
    name: str,
    build: Callable[[], Method],
    task: Task,
    out: Path,
    *,
    mode: RankMode = RankMode.GENERATE,
    template: str | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
    timings: TimingLog | None = None,
    make_requests: Callable[[Sequence[Any]], list[RankRequest]] | None = None,
    judge: Callable[[Any, Answer], dict[str, Any]] | None = None,
) -> MethodRun:
    """Answer every case not yet in DIR/results/<name>.jsonl; on_progress(done, total, resumed).

    `build` makes the method (loads a model, fits a retriever) and is only called if cases are pending.
    A protocol with its own requests and judging (full-catalogue) passes `make_requests` and `judge`.
    """
    store = ResultStore(out / "results" / f"{name}.jsonl")
    done = store.load({case.case_id for case in task.cases})
    pending = [case for case in task.cases if case.case_id not in done]
    stats = MethodRun(name, resumed=len(done))
    if on_progress:
        on_progress(len(done), len(task.cases), len(done))
    if not pending:
        return stats
    started = time.perf_counter()
    method = build()
    stats.setup_seconds = time.perf_counter() - started
    requests = make_requests(pending) if make_requests else _requests(task, pending, mode, template)
    buffer: list[dict[str, Any]] = []

    def commit() -> None:
        store.append(buffer)
        stats.ran += len(buffer)
        buffer.clear()
        if on_progress:
            on_progress(len(done) + stats.ran, len(task.cases), len(done))

    def emit(index: int, answer: Answer) -> None:
        case = pending[index]
        judged = (judge or _judge)(case, answer)
        record = {"case_id": case.case_id, "history_length": history_length(case), **judged}
        if answer.diagnostics is not None:
            record["diagnostics"] = answer.diagnostics
        buffer.append(record)
        if len(buffer) >= method.batch_size:
            commit()

    started = time.perf_counter()
    try:
        method.answer(requests, emit)
    finally:
        # Whatever was answered before an interruption is kept: those records are complete and judged.
        commit()
        stats.seconds = time.perf_counter() - started
        if timings is not None:
            timings.add(name, stats.ran, stats.setup_seconds, stats.seconds)
    return stats


def read_results(out: Path, method: str, task: Task) -> list[dict[str, Any]]:
    """Every case's record in the task's case order; DataError if a case has none (the run is unfinished)."""
    records = ResultStore(out / "results" / f"{method}.jsonl").load({case.case_id for case in task.cases})
    missing = [case.case_id for case in task.cases if case.case_id not in records]
    if missing:
        raise DataError(
            f"{len(missing)} cases have no result (e.g. {missing[:3]}); run the same command again to finish",
            path=str(out / "results" / f"{method}.jsonl"),
        )
    return [records[case.case_id] for case in task.cases]
