"""Write the bundled model as bitsandbytes quantizes it (NF4 or int8), stored back in float32.

Written when bitsandbytes' CPU kernels measured far slower than float32 (~77 s per Games user; a later run
took 1.7 s, so `promptrec eval --quantization 4bit` is the direct measurement), it remains a check that
the quantized weights alone explain the 4-bit scores. A quantized linear layer computes with its
dequantized weights, so the same model with those weights written out in float32 scores as the quantized
model does, at float32 speed, up to rounding: bitsandbytes' CPU path seems to compute in bfloat16 (its
quantization state's dtype), which moves a score by a few hundredths. This script makes that copy and
checks it: it ranks the first `--check` cases of a dataset with the real bitsandbytes model and with the
copy (adapter applied to both), reports the largest score gap, the mean Kendall tau between the two
orderings and how often the target keeps its rank, and fails if a score differs by more than
`--tolerance`. Then evaluate the copy:

    python evals/dequantized_model.py ../runs/smollm2-nf4 --quantization 4bit \
      --dataset ../shared/data/llmrank-games/games200_random_cands20.jsonl \
      --interactions ../shared/data/llmrank-games/Games-6k.valid.inter --adapter ../runs/games-pointwise-v3
    promptrec eval --model ../runs/smollm2-nf4 --adapter ../runs/games-pointwise-v3 ...
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from scipy.stats import kendalltau

from promptrec.backends.transformers_backend import TransformersBackend
from promptrec.bundled import bundled_model_dir
from promptrec.evaluation.protocols import load_task
from promptrec.models import RankMode
from promptrec.prompting.builder import PromptBudget
from promptrec.recommender import Recommender

# The source's own config too: the copy is the same model, and adapters check the base by its config.
SOURCE_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
)


def write_dequantized(quantization: str, out: Path) -> None:
    source = bundled_model_dir()
    model = TransformersBackend(source, quantization=quantization).model
    model.dequantize()  # float weights holding exactly the quantized values
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(str(out))
    for name in SOURCE_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)


def rankings(backend: TransformersBackend, requests: list, max_history: int) -> list[dict[str, float]]:
    """Each case's candidate scores in ranked order."""
    recommender = Recommender(backend, budget=PromptBudget(max_history_items=max_history))
    ranked = [recommender.rank(request) for request in requests]
    return [dict(zip(answer.item_ids, answer.scores or [], strict=True)) for answer in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--quantization", choices=["4bit", "8bit"], default="4bit")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--interactions", type=Path)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--max-history", type=int, default=10)
    parser.add_argument("--check", type=int, default=2, help="Cases ranked by both models.")
    # bitsandbytes' CPU path seems to compute in bfloat16 (the copy computes in float32): the
    # scores move by a few hundredths even though the weights are the same.
    parser.add_argument("--tolerance", type=float, default=0.1)
    args = parser.parse_args()

    write_dequantized(args.quantization, args.out)
    task = load_task(args.dataset, interactions=args.interactions, limit=args.check)
    requests = [case.to_request(mode=RankMode.POINTWISE) for case in task.cases]
    quantized = TransformersBackend(bundled_model_dir(), quantization=args.quantization, adapter=args.adapter)
    expected = rankings(quantized, requests, args.max_history)
    got = rankings(TransformersBackend(args.out, adapter=args.adapter), requests, args.max_history)
    pairs = list(zip(got, expected, strict=True))
    gap = max(abs(copy[item] - real[item]) for copy, real in pairs for item in real)
    tau = sum(kendalltau([copy[i] for i in real], list(real.values())).statistic for copy, real in pairs)
    same_target_rank = sum(
        list(copy).index(case.target_id) == list(real).index(case.target_id)
        for (copy, real), case in zip(pairs, task.cases, strict=True)
    )
    print(
        f"{args.out}: {args.quantization} weights in float32 against bitsandbytes over {len(pairs)} cases: "
        f"largest score gap {gap:.4f}, mean Kendall tau {tau / len(pairs):.3f}, target at the same rank "
        f"in {same_target_rank}"
    )
    if gap > args.tolerance:
        raise SystemExit(f"the copy does not score like the {args.quantization} model (gap {gap:.4f})")


if __name__ == "__main__":
    main()
