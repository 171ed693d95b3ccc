"""The diagnostic side of the tandem: what a task model says about a batch of images, whatever its task.

A classifier answers with per-label probabilities (thresholded later, from stored rows); a
segmenter with per-image metrics against the true masks (Dice, HD95) and the masks it drew.
The runner stores both kinds the same way for every road, clean or reconstructed.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from recon_core.models.contract import TrainableModel


@dataclass
class TaskOutput:
    """A task model's answer for a batch: scores (B, L) for labelled findings, per-image metrics, predicted masks."""

    scores: np.ndarray | None = None
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    masks: np.ndarray | None = None


class TaskModel(TrainableModel):
    """A diagnostic model trained on clean images and applied to every road; meets the model contract."""

    labels: tuple[str, ...] = ()
    """The findings it scores (a classifier); empty for a model judged by per-image metrics only."""

    @abstractmethod
    def evaluate(self, images: torch.Tensor, truth: torch.Tensor | None) -> TaskOutput:
        """Its answer for (B, 1, H, W) images; `truth` holds the true (B, 1, H, W) masks where the cohort has them."""

    def given_thresholds(self) -> dict[str, float]:
        """Operating thresholds its maker fixed, by finding (a user's classifier); the others are chosen on clean
        validation images."""
        return {}

    @abstractmethod
    def evidence(self, label: str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """A differentiable (B,) score of what its answer on (B, 1, H, W) images rests on: what attributions explain.

        A classifier gives the logit of finding `label`; a segmenter the mean tumour probability.
        """


def scorer(models: Sequence[TaskModel]) -> TaskModel:
    """The one task model that scores labelled findings (its decisions use the operating thresholds).

    Every modality has exactly one; anything else is a modality defined wrongly, said in words.
    """
    scoring = [model for model in models if model.labels]
    if len(scoring) != 1:
        raise ValueError(f"task models {[m.name for m in models]}: exactly one must score labelled findings, "
                         f"found {len(scoring)}")
    return scoring[0]
