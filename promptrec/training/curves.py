"""The training run's curves as a PNG: batch loss (raw and smoothed) and validation by step."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from promptrec.training.trainer import TrainState


def plot_curves(state: TrainState, path: Path, validation: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if state.losses:
        steps, losses = zip(*state.losses, strict=True)
        window = max(1, len(losses) // 20)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        left.plot(steps, losses, alpha=0.3, label="batch loss")
        left.plot(steps[window - 1 :], smooth, label=f"mean of {window}")
        left.legend()
    left.set(title="training loss (answer-token cross-entropy)", xlabel="step")
    if state.validations:
        steps, metrics = zip(*state.validations, strict=True)
        right.plot(steps, metrics, marker="o")
        if state.best_step >= 0:
            right.axvline(
                state.best_step, linestyle="--", color="grey", label=f"best (step {state.best_step})"
            )
            right.legend()
    right.set(title="validation", xlabel="step")
    right.set_ylabel(textwrap.fill(validation, 48), fontsize=8)  # the metric's description is long
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
