"""Copy out a LoRA adapter folded into its base model, e.g. to serve it with `vllm serve`.

The vLLM backend does this itself on CPU (promptrec.adapters.merge: vLLM's CPU LoRA path is several times
slower than the merged model), so `promptrec eval --backend vllm --adapter DIR` needs no copy; this script
is for engines promptrec does not start, and for the commands in older reports.

    python evals/merge_adapter.py ../runs/tallrec-movie-16 ../runs/tallrec-movie-16-merged
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from promptrec.adapters.card import read_card
from promptrec.adapters.merge import merged_model_dir
from promptrec.bundled import BUNDLED_MODEL_NAME, bundled_model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    card = read_card(args.adapter)
    if card.base_model != BUNDLED_MODEL_NAME:
        raise SystemExit(
            f"{args.adapter}: base model {card.base_model!r}; only the bundled model is merged here"
        )
    merged = merged_model_dir(args.adapter, bundled_model_dir())
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(merged, args.out)
    print(f"merged {args.adapter} into {args.out}")


if __name__ == "__main__":
    main()
