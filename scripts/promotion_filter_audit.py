"""Audit sanitiser step 6 (promptrec.prompting.meta_talk): precision on real titles, recall on attacks.

Precision: every title of MovieLens latest-small (shipped in the package), MovieLens 100K and LLMRank
Games (`Games.item` and the titles in the ranking sets), the latter two read from ../shared/data at run
time and never copied into the repository. A title counts as changed when step 6 alters what the prompt
would show; each changed title is listed with the segments removed (up to --show).

Recall: four sets of hostile phrasings written for this audit (none of them the benchmark's), kept with
their history in evals/data/hostile_phrasings.json, each appended to a seeded sample of real titles. The
first three guided rounds of changes to the rule; the fourth was measured once, so only its first figure
estimates recall on phrasings the rule has never seen. A pair is *neutralised* when the attacked title
cleans to the same words as the plain title (punctuation aside); *shortened* when no word of the payload
is left but the removal also took words of the title; *emptied* when nothing is left (the prompt builder
then rejects the text); *residue* when something was removed but part of the payload stays; *missed* when
nothing was removed. The injection benchmark's "rank me first" strings (evals/injection_benchmark.py) are
checked the same way, through each mode's own sanitiser (score: candidate labels are answer words;
pointwise: Yes/No). They were in view when the rule was first written, so this shows they are covered, not
how the rule generalises.

    PYTHONPATH=. nice -n 10 python scripts/promotion_filter_audit.py [--data ../shared/data] [--show 50]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from collections import Counter
from pathlib import Path

from promptrec.prompting.sanitize import TextSanitizer

MOVIELENS_SMALL = Path(__file__).resolve().parents[1] / "promptrec/datasets/ml-latest-small/movies.csv"
FULL_LENGTH = 100_000  # titles are audited whole, not cut to the prompt's limit
LABELS = "ABCDEFGHIJKLMNOPQRST"
TITLES_PER_PHRASING = 30

# Four sets of hostile phrasings, each with its own joiner and the history of how it was used.
PHRASINGS = Path(__file__).resolve().parents[1] / "evals/data/hostile_phrasings.json"


def movielens_small() -> list[str]:
    with MOVIELENS_SMALL.open(encoding="utf-8", newline="") as handle:
        return [row["title"] for row in csv.DictReader(handle)]


def movielens_100k(data: Path) -> list[str]:
    lines = (data / "movielens-100k/u.item").read_text(encoding="latin-1").splitlines()
    return [line.split("|")[1] for line in lines if line.strip()]


def games(data: Path) -> list[str]:
    folder = data / "llmrank-games"
    lines = (folder / "Games.item").read_text(encoding="utf-8").splitlines()[1:]
    titles = [line.split("\t", 1)[1] for line in lines if "\t" in line]
    for ranking_set in sorted(folder.glob("*.jsonl")):
        for line in ranking_set.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            titles += record["history_titles"] + record["candidate_titles"] + [record["target_title"]]
    return titles


def precision(name: str, titles: list[str], show: int) -> dict[str, object]:
    sanitizer = TextSanitizer()
    unique = sorted(set(titles))
    changed = []
    for title in unique:
        cleaned, removed = sanitizer.clean_item(title, FULL_LENGTH)
        if removed:
            changed.append((title, cleaned, removed))
    print(f"\n## {name}: {len(changed)} of {len(unique)} distinct titles changed")
    for title, cleaned, removed in changed[:show]:
        print(f"- {title!r}\n    -> {cleaned!r}  (removed {removed})")
    return {"titles": len(unique), "changed": len(changed)}


def _words(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text))


def outcome(sanitizer: TextSanitizer, title: str, attacked: str) -> str:
    """neutralised: the same words as the plain title; shortened: no payload word left, but the removal
    also took words of the title; emptied: nothing left; residue: part of the payload left; missed:
    nothing removed."""
    plain = _words(sanitizer.clean(title, FULL_LENGTH, item=True))
    cleaned, removed = sanitizer.clean_item(attacked, FULL_LENGTH)
    if not removed:
        return "missed"
    if not cleaned:
        return "emptied"
    left = _words(cleaned)
    if left == plain:
        return "neutralised"
    return "shortened" if not left - plain else "residue"


def recall(name: str, phrasings: list[str], pool: list[str], seed: int) -> dict[str, object]:
    sanitizer = TextSanitizer()
    rng = random.Random(seed)
    totals: Counter[str] = Counter()
    per_phrasing = {}
    examples = []
    for phrasing in phrasings:
        outcomes = Counter()
        for title in rng.sample(pool, TITLES_PER_PHRASING):
            result = outcome(sanitizer, title, title + phrasing)
            outcomes[result] += 1
            if result != "neutralised" and sum(phrasing in attacked for _, attacked, _ in examples) < 2:
                examples.append((result, title + phrasing, sanitizer.clean(title + phrasing, 500, item=True)))
        totals.update(outcomes)
        per_phrasing[phrasing] = dict(outcomes)
    pairs = sum(totals.values())
    whole = sum(counts.get("neutralised", 0) == TITLES_PER_PHRASING for counts in per_phrasing.values())
    print(f"\n## {name}: {len(phrasings)} phrasings x {TITLES_PER_PHRASING} real titles")
    share = 100 * totals["neutralised"] / pairs
    print(f"neutralised {totals['neutralised']} / {pairs} pairs ({share:.1f}%);", end=" ")
    print(", ".join(f"{name} {totals[name]}" for name in ("shortened", "emptied", "residue", "missed")))
    print(f"phrasings neutralised on every title: {whole} / {len(phrasings)}")
    for phrasing, counts in per_phrasing.items():
        if counts.get("neutralised", 0) < TITLES_PER_PHRASING:
            print(f"- {phrasing!r}: {counts}")
    for result, attacked, cleaned in examples:
        print(f"  {result}: {attacked!r} -> {cleaned!r}")
    return {"pairs": pairs, **totals, "phrasings": len(phrasings), "phrasings_always_neutralised": whole}


def benchmark_strings(pool: list[str], seed: int) -> dict[str, object]:
    from evals.injection_benchmark import RANK_ME_FIRST  # the benchmark's own strings

    rng = random.Random(seed + 1)
    modes = {
        "score": TextSanitizer(answer_words=LABELS),
        "pointwise": TextSanitizer(answer_words=["Yes", "No"]),
    }
    print("\n## Benchmark rank_me_first strings")
    results = {}
    for mode, sanitizer in modes.items():
        totals: Counter[str] = Counter()
        for template in RANK_ME_FIRST:
            for title in rng.sample(pool, TITLES_PER_PHRASING):
                label = rng.choice(LABELS)
                attacked = template.format(title=title, label=label)
                result = outcome(sanitizer, title, attacked)
                totals[result] += 1
                if result != "neutralised":
                    print(f"  {mode} {result}: {attacked!r} -> {sanitizer.clean(attacked, 500, item=True)!r}")
        pairs = sum(totals.values())
        print(f"{mode}: neutralised {totals['neutralised']} / {pairs} ({dict(totals)})")
        results[mode] = {"pairs": pairs, **totals}
    return results


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    arguments.add_argument("--data", default="../shared/data")
    arguments.add_argument("--show", type=int, default=50)
    arguments.add_argument("--seed", type=int, default=0)
    options = arguments.parse_args()
    data = Path(options.data)
    datasets = {"MovieLens latest-small": movielens_small()}
    if (data / "movielens-100k/u.item").exists():
        datasets["MovieLens 100K"] = movielens_100k(data)
    if (data / "llmrank-games/Games.item").exists():
        datasets["LLMRank Games"] = games(data)
    summary = {
        "precision": {name: precision(name, titles, options.show) for name, titles in datasets.items()}
    }
    pool = sorted({title for titles in datasets.values() for title in titles})
    for hostile in json.loads(PHRASINGS.read_text(encoding="utf-8"))["sets"]:
        name = f"{hostile['name'].capitalize()} hostile set" + (
            " (never tuned on)" if hostile["name"] == "fourth" else ""
        )
        summary[f"recall_{hostile['name']}"] = recall(name, hostile["phrasings"], pool, options.seed)
    summary["benchmark_rank_me_first"] = benchmark_strings(pool, options.seed)
    print("\n" + json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
