"""The training losses, all read at the answer position: the logits of the contract's answer labels.

answer_loss: cross-entropy over one prompt's labels (Yes/No for pointwise, the candidate labels for
listwise). ranking_loss: a softmax over a group's Yes-minus-No margins, the positive first (the ranking
objective); the margin is the score `promptrec eval` ranks pointwise candidates by.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from promptrec.training.examples import RankingGroup, TrainingExample


def answer_loss(
    model: Any, tokenizer: Any, batch: Sequence[TrainingExample], device: torch.device
) -> tuple[torch.Tensor, int]:
    """Cross-entropy over the labels' logits at the last prompt position; returns (loss, tokens run)."""
    answer_logits, tokens = _answer_logits(
        model, tokenizer, [example.prompt for example in batch], [example.labels for example in batch], device
    )
    targets = torch.tensor([example.target for example in batch], device=device)
    return torch.nn.functional.cross_entropy(answer_logits, targets), tokens


def ranking_loss(
    model: Any, tokenizer: Any, batch: Sequence[RankingGroup], device: torch.device
) -> tuple[torch.Tensor, int]:
    """Softmax cross-entropy of each group's positive over its candidates' Yes-minus-No logit margins."""
    prompts = [prompt for group in batch for prompt in group.prompts]
    labels = [group.labels for group in batch for _ in group.prompts]
    answer_logits, tokens = _answer_logits(model, tokenizer, prompts, labels, device)
    margins = answer_logits[:, 0] - answer_logits[:, 1]
    # Split by each group's own size: a batch need not hold groups of one size.
    per_group = margins.split([len(group.prompts) for group in batch])
    return -torch.stack([torch.log_softmax(group, dim=0)[0] for group in per_group]).mean(), tokens


def _answer_logits(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    labels: Sequence[tuple[str, ...]],
    device: torch.device,
) -> tuple[torch.Tensor, int]:
    """Each prompt's next-token logits of its labels (one row per prompt) and the tokens run."""
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device)
    position_ids = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False, logits_to_keep=1
    ).logits[:, -1, :]
    label_ids = torch.tensor([_label_ids(tokenizer, answers) for answers in labels], device=device)
    return torch.gather(logits.float(), 1, label_ids), sum(len(ids) for ids in encoded)


_LABEL_CACHE: dict[tuple[int, tuple[str, ...]], list[int]] = {}


def _label_ids(tokenizer: Any, labels: tuple[str, ...]) -> list[int]:
    key = (id(tokenizer), labels)
    if key not in _LABEL_CACHE:
        _LABEL_CACHE[key] = [tokenizer.encode(label, add_special_tokens=False)[0] for label in labels]
    return _LABEL_CACHE[key]
