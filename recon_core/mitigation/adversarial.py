"""Adversarial debiasing: an adversary tells the sensitive attribute from what the frozen diagnostic model sees.

The adversary reads the frozen model's view of a reconstruction (the classifier's logits, or
the segmenter's tumour probability pooled to 8 × 8) and is trained to predict the group
(`AdversaryLoss`, on detached reconstructions). The reconstructor is trained to defeat it
(`DefeatAdversary` = −the adversary's cross-entropy up to chance, added with a positive weight):
alternating updates, the reconstructor's gradient reversed relative to the adversary's. The reference
study's objective had its sign in doubt; tests/test_mitigation.py checks that this one lowers the
adversary's accuracy and that the flipped sign raises it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from recon_core.diagnostics.task import TaskModel
from recon_core.mitigation.attributes import SensitiveAttribute
from recon_core.models.batches import TrainingBatch
from recon_core.models.losses import Loss

POOLED = 8
"""A segmenter's tumour probability map is pooled to POOLED × POOLED for the adversary."""


def diagnostic_view(model: TaskModel) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """What the adversary reads of (B, 1, H, W) images, differentiably, and its width: a classifier's (B, L) logits,
    a segmenter's pooled tumour probability."""
    if model.labels:
        return (lambda images: model.net(images).float()), len(model.labels)
    return (lambda images: torch.nn.functional.adaptive_avg_pool2d(
        model.lesion_probability(images)[:, None].float(), POOLED).flatten(1)), POOLED * POOLED


class Adversary(torch.nn.Module):
    """A small MLP from the diagnostic model's view (standardised per feature over the batch) to the group's logits."""

    def __init__(self, width: int, hidden: int, n_groups: int) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.BatchNorm1d(width), torch.nn.Linear(width, hidden), torch.nn.ReLU(),
                                          torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                          torch.nn.Linear(hidden, n_groups))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class AdversaryLoss(Loss):
    """The adversary's cross-entropy on the groups of (detached) features; keeps each step's batch accuracy."""

    def __init__(self, adversary: Adversary, attribute: SensitiveAttribute) -> None:
        self.adversary, self.attribute = adversary, attribute
        self.accuracy: list[torch.Tensor] = []
        """Each step's share of the batch whose group the adversary named (0-d tensors: no host sync per step)."""

    def __call__(self, output: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        groups = self.attribute.tensor(batch.rows, output.device)
        logits = self.adversary(output)
        self.accuracy.append((logits.argmax(1) == groups).float().mean().detach())
        return torch.nn.functional.cross_entropy(logits, groups)


class DefeatAdversary(Loss):
    """−the adversary's cross-entropy on the diagnostic view of the reconstruction, up to chance: lower when the
    adversary fails.

    The cross-entropy is capped at `chance`, that of an adversary that knows only the groups'
    shares (their entropy; log 2 for two equal groups): past it the reconstructor gets no further
    push, so it makes the adversary uninformed rather than confidently wrong (an adversary that
    is always wrong still reads the attribute).
    """

    def __init__(self, adversary: Adversary, view: Callable[[torch.Tensor], torch.Tensor],
                 attribute: SensitiveAttribute, chance: float | None = None) -> None:
        self.adversary, self.view, self.attribute = adversary, view, attribute
        self.chance = math.log(len(attribute.groups)) if chance is None else chance

    def __call__(self, output: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        groups = self.attribute.tensor(batch.rows, output.device)
        entropy = torch.nn.functional.cross_entropy(self.adversary(self.view(output)), groups)
        return -entropy.clamp(max=self.chance)
