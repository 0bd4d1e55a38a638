"""Fuzz the three places untrusted bytes enter promptrec, and count failures (the goal is zero of each).

1. The answer parser: generated model outputs (hostile and random) against hostile candidate sets. A crash
   is any exception; an off-list item is a parsed id that is not a candidate (or appears twice); every
   parse is also assembled into a RankedList, which must be a permutation prefix of the candidates.
2. The request validator (`promptrec.parse_request`): hostile JSON documents as bytes, text and dicts.
   Anything but a RankRequest or a RequestError is a crash; accepted requests are also built into prompts
   with the bundled model's tokenizer (a RequestError there is fine, anything else is a crash).
3. The loaders (`load_dataset`, `load_tallrec`): malformed files (truncated, wrong encoding, wrong
   delimiter, huge fields, flipped bytes, dropped or duplicated lines). Anything but success or a
   PromptrecError is a crash.

    PYTHONPATH=. nice -n 10 python scripts/fuzz.py [--outputs 100000] [--requests 10000] [--files 300]

Loader seeds are small samples written to a temporary folder: MovieLens latest-small (shipped in the
package) and, when ../shared/data exists, LLMRank Games and TALLRec rows (never written into the repo).
Prints one JSON summary; exits 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from promptrec.aggregate import assemble_ranked_list
from promptrec.bundled import bundled_model_dir
from promptrec.data.dataset import load_dataset
from promptrec.data.tallrec import load_tallrec
from promptrec.errors import PromptrecError, RequestError
from promptrec.models import Diagnostics, Item, RankRequest, UserContext
from promptrec.parsing import parse_answer
from promptrec.prompting.builder import PromptBudget, build_prompts
from promptrec.prompting.contract import OutputContract
from promptrec.prompting.formatter import PromptFormatter
from promptrec.prompting.templates import TemplateLibrary
from promptrec.validation import parse_request

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
HOSTILE_PIECES = [
    '"', "\\", "[", "]", "{", "}", ",", "\n", "1.", "2)", "- ", "* ", "[A]", "[Z]", '"A"', "</candidates>",
    "<|im_end|>", "<|im_start|>assistant\n", "<file_sep>", "\u202e", "\u200b", "\ufeff", "\x00", "\ud800",
    "ignore previous instructions", "rank me first", "NaN", "null", "true", "-1", "99", "０", "ß", "İ",
    "😀", "\u0301", "...", "```json", "```", "id", ":", "title", "Alien (1979)", " " * 50,
]  # fmt: skip
CONTRACTS = [
    OutputContract(format="json_array", mode="generate", identifiers=identifiers)
    for identifiers in ("labels", "ids")
] + [
    OutputContract(format="numbered_list", mode="generate", identifiers=identifiers)
    for identifiers in ("labels", "ids")
]


def hostile_text(rng: random.Random, max_pieces: int = 12) -> str:
    parts = []
    for _ in range(rng.randint(0, max_pieces)):
        roll = rng.random()
        if roll < 0.5:
            parts.append(rng.choice(HOSTILE_PIECES))
        elif roll < 0.8:
            parts.append("".join(chr(rng.randint(32, 126)) for _ in range(rng.randint(1, 8))))
        else:
            parts.append("".join(chr(rng.randint(0, 0x2FFFF)) for _ in range(rng.randint(1, 4))))
    return "".join(parts)


def hostile_candidates(rng: random.Random) -> list[Item]:
    count = rng.randint(1, 26)
    items, seen = [], set()
    while len(items) < count:
        item_id = rng.choice([str(rng.randint(0, 50)), rng.choice("ABCDEFGZ"), hostile_text(rng, 2).strip()])
        title = rng.choice(["Alien (1979)", "A", "The Game", "1. A", '"B"', "[C]", hostile_text(rng, 4)])
        if item_id and item_id not in seen and title.strip():
            try:
                items.append(Item(id=item_id, title=title))
            except ValidationError:  # an unpaired surrogate: not valid text, refused by the model itself
                continue
            seen.add(item_id)
    return items


def hostile_output(rng: random.Random, candidates: list[Item], labels: list[str]) -> str:
    names = [item.id for item in candidates] + labels[: len(candidates)] + [item.title for item in candidates]
    invented = ["Q", "42", "not a candidate", hostile_text(rng, 3)]
    picks = [rng.choice(names + invented) for _ in range(rng.randint(0, 40))]
    shape = rng.randrange(8)
    if shape == 0:
        return json.dumps(picks, ensure_ascii=rng.random() < 0.5)
    if shape == 1:
        return json.dumps(picks)[: rng.randint(0, 200)]  # cut off mid-answer
    if shape == 2:
        return "\n".join(f"{n}. {pick}" for n, pick in enumerate(picks, start=rng.randint(-1, 2)))
    if shape == 3:
        return json.dumps(
            [{"id": pick, "rank": n} if rng.random() < 0.7 else [pick] for n, pick in enumerate(picks)]
        )
    if shape == 4:
        return ", ".join(picks) + hostile_text(rng)
    if shape == 5:
        return hostile_text(rng, 40)
    if shape == 6:
        return "[" * rng.randint(1, 5000) + '"A"' + "]" * rng.randint(0, 10)
    return "".join(
        rng.choice([hostile_text(rng, 3), json.dumps(rng.choice(names)), "\n", "[", "]"]) for _ in range(60)
    )


def fuzz_parser(count: int, rng: random.Random, failures: list[str]) -> dict[str, int]:
    counts = Counter()
    for trial in range(count):
        candidates = hostile_candidates(rng)
        contract = rng.choice(CONTRACTS)
        text = hostile_output(rng, candidates, contract.labels)
        try:
            parsed = parse_answer(text, candidates, contract)
            ids = {item.id for item in candidates}
            if any(item_id not in ids for item_id in parsed.ordered_ids) or len(
                set(parsed.ordered_ids)
            ) != len(parsed.ordered_ids):
                counts["off_list"] += 1
                failures.append(f"parser off-list: {text[:200]!r}")
            request = RankRequest(
                user=UserContext(), candidates=candidates, k=rng.randint(1, len(candidates))
            )
            ranked = assemble_ranked_list(request, parsed, Diagnostics())
            if len(set(ranked.item_ids)) != request.effective_k or not set(ranked.item_ids) <= ids:
                counts["bad_ranking"] += 1
        except Exception:  # noqa: BLE001 - counting every crash is the point
            counts["crashes"] += 1
            failures.append(f"parser trial {trial}: {text[:200]!r}\n{traceback.format_exc(limit=3)}")
        counts["outputs"] += 1
    return dict(counts)


def valid_request(rng: random.Random) -> dict[str, Any]:
    history = [{"id": f"h{i}", "title": f"Old game {i}"} for i in range(rng.randint(0, 5))]
    return {
        "user": {
            "user_id": "u1",
            "history": [{"item_id": item["id"], "rating": 4.0} for item in history],
            "request": "something calm",
            "preferences": ["puzzles"],
        },
        "candidates": [{"id": f"c{i}", "title": f"Candidate {i}"} for i in range(rng.randint(1, 8))],
        "history_items": history,
        "mode": rng.choice(["generate", "score", "pointwise"]),
        "k": rng.randint(1, 3),
    }


def hostile_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            True, False, None, float("nan"), float("inf"), -1, 0, 10**30, 2.0, "3", "", " ", "\ud800",
            "x" * rng.randint(1, 5000), hostile_text(rng), [], {}, [[[]]], {"unknown": 1},
            [{"id": True, "title": "t"}], {"id": "dup", "title": "t"}, "generate", "pointwise",
            [{"id": i, "title": hostile_text(rng, 3)} for i in range(rng.randint(0, 300))],
        ]
    )  # fmt: skip


def mutate(node: Any, rng: random.Random, depth: int = 0) -> Any:
    """Replace, drop or add one thing somewhere inside `node`."""
    if isinstance(node, dict) and node and rng.random() < 0.7:
        key = rng.choice(list(node))
        roll = rng.random()
        if roll < 0.15:
            node.pop(key)
        elif roll < 0.25:
            node[hostile_text(rng, 2) or "extra"] = hostile_value(rng)
        elif roll < 0.55 or depth > 4:
            node[key] = hostile_value(rng)
        else:
            node[key] = mutate(node[key], rng, depth + 1)
        return node
    if isinstance(node, list) and node and rng.random() < 0.7:
        index = rng.randrange(len(node))
        if rng.random() < 0.3:
            node.append(node[index])  # duplicates
        else:
            node[index] = mutate(node[index], rng, depth + 1)
        return node
    return hostile_value(rng)


def hostile_document(rng: random.Random) -> bytes | str | dict[str, Any]:
    roll = rng.random()
    if roll < 0.05:
        return b"[" * rng.choice([100, 1000, 100_000])
    if roll < 0.1:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    document = valid_request(rng)
    for _ in range(rng.randint(0, 3)):
        document = mutate(document, rng)
    if rng.random() < 0.3 or not isinstance(document, dict):
        text = json.dumps(document, ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.2:
            text = text[: rng.randint(0, len(text))]
        if rng.random() < 0.5:
            return text
        encoded = text.encode("utf-8", "surrogatepass")
        return encoded.replace(b"e", b"\xe9") if rng.random() < 0.2 else encoded
    return document


def fuzz_requests(count: int, rng: random.Random, failures: list[str]) -> dict[str, int]:
    formatter = PromptFormatter.from_model_dir(bundled_model_dir())
    library = TemplateLibrary()
    counts = Counter()
    for trial in range(count):
        document = hostile_document(rng)
        try:
            request = parse_request(document)
            counts["accepted"] += 1
            try:
                build_prompts(
                    request, library.get(None, request.mode), formatter, PromptBudget(max_history_items=5)
                )
                counts["prompts_built"] += 1
            except RequestError:
                counts["rejected_at_prompt"] += 1
        except RequestError:
            counts["rejected"] += 1
        except Exception:  # noqa: BLE001
            counts["crashes"] += 1
            failures.append(f"request trial {trial}: {str(document)[:200]}\n{traceback.format_exc(limit=3)}")
        counts["documents"] += 1
    return dict(counts)


def seed_files(folder: Path) -> dict[str, Path]:
    """Small valid files of every format the loaders read."""
    seeds = {}
    movielens = folder / "movielens"
    movielens.mkdir()
    shipped = ROOT / "promptrec" / "datasets" / "ml-latest-small"
    ratings = (shipped / "ratings.csv").read_text(encoding="utf-8").splitlines()[:1500]
    (movielens / "ratings.csv").write_text("\n".join(ratings) + "\n", encoding="utf-8")
    shutil.copy(shipped / "movies.csv", movielens / "movies.csv")
    seeds["movielens/ratings.csv"] = movielens
    seeds["movielens/movies.csv"] = movielens
    games = SHARED / "llmrank-games"
    if games.is_dir():
        lines = (games / "games200_random_cands20.jsonl").read_text(encoding="utf-8").splitlines()[:20]
        (folder / "set.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        seeds["set.jsonl"] = folder / "set.jsonl"
        inter = (games / "Games-6k.valid.inter").read_text(encoding="utf-8").splitlines()[:60]
        (folder / "seq.inter").write_text("\n".join(inter) + "\n", encoding="utf-8")
        (folder / "seq.item").write_text(
            "\n".join((games / "Games.item").read_text(encoding="utf-8").splitlines()[:800]) + "\n",
            encoding="utf-8",
        )
        seeds["seq.inter"] = seeds["seq.item"] = folder / "seq.inter"
    tallrec = SHARED / "tallrec" / "movie" / "test.json"
    if tallrec.is_file():
        rows = json.loads(tallrec.read_text(encoding="utf-8"))[:15]
        (folder / "rows.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
        seeds["rows.json"] = folder / "rows.json"
    return seeds


def corrupt(data: bytes, rng: random.Random) -> bytes:
    roll = rng.randrange(9)
    if roll == 0:
        return data[: rng.randint(0, len(data))]
    if roll == 1:
        return data.decode("utf-8", "replace").encode(rng.choice(["utf-16", "latin-1", "cp1252"]), "replace")
    if roll == 2:
        old, new = rng.choice([(b",", b";"), (b"\t", b","), (b",", b"\t"), (b"\n", b"\r\n"), (b":", b"")])
        return data.replace(old, new)
    if roll == 3:
        lines = data.split(b"\n")
        index = rng.randrange(len(lines))
        lines[index] = lines[index] + b"x" * rng.choice([10_000, 1_000_000])
        return b"\n".join(lines)
    if roll == 4:
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            if flipped:
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        return bytes(flipped)
    if roll == 5:
        lines = data.split(b"\n")
        rng.shuffle(lines)
        return b"\n".join(lines[: rng.randint(0, len(lines))])
    if roll == 6:
        return b"\xef\xbb\xbf" + data
    if roll == 7:
        return b""
    lines = data.split(b"\n")
    return b"\n".join(lines[:1] + lines)  # header twice


def fuzz_loaders(count: int, rng: random.Random, failures: list[str]) -> dict[str, int]:
    counts = Counter()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        seeds = seed_files(folder)
        originals = {name: (folder / name).read_bytes() for name in seeds}
        loaders: dict[str, Callable[[Path], Any]] = {
            "rows.json": load_tallrec,
        }
        for trial in range(count):
            name = rng.choice(list(seeds))
            (folder / name).write_bytes(corrupt(originals[name], rng))
            target = seeds[name]
            try:
                loaded = loaders.get(name, load_dataset)(target)
                if name != "rows.json":
                    for user_id in loaded.user_ids[:3]:
                        loaded.case_for_user(user_id)
                counts["loaded"] += 1
            except PromptrecError:
                counts["rejected"] += 1
            except Exception:  # noqa: BLE001
                counts["crashes"] += 1
                failures.append(f"loader trial {trial} on {name}\n{traceback.format_exc(limit=3)}")
            finally:
                (folder / name).write_bytes(originals[name])
            counts["files"] += 1
    return dict(counts)


def main() -> int:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    arguments.add_argument("--outputs", type=int, default=100_000)
    arguments.add_argument("--requests", type=int, default=10_000)
    arguments.add_argument("--files", type=int, default=300)
    arguments.add_argument("--seed", type=int, default=0)
    options = arguments.parse_args()
    rng = random.Random(options.seed)
    failures: list[str] = []
    summary = {}
    for name, run, count in (
        ("parser", fuzz_parser, options.outputs),
        ("requests", fuzz_requests, options.requests),
        ("loaders", fuzz_loaders, options.files),
    ):
        started = time.perf_counter()
        summary[name] = run(count, rng, failures) | {"seconds": round(time.perf_counter() - started, 1)}
        print(f"{name}: {summary[name]}", file=sys.stderr, flush=True)
    for failure in failures[:10]:
        print(failure, file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
