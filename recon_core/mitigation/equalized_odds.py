"""Differentiable group gaps of a frozen diagnostic model's answers on a reconstruction (the EODD penalty).

X-ray: soft decisions sigmoid((logit − logit(threshold)) / T) of the frozen classifier at its
operating thresholds give each group's soft TPR (mean over its positives) and FPR (over its
negatives); the penalty is, per finding, (max − min TPR) + (max − min FPR) over the groups
that have such cases in the batch, averaged over findings. MRI: the max − min of the groups'
mean soft Dice of the frozen segmenter's tumour probability, over slices with tumour. Written
here because no maintained library offers a differentiable per-group rate gap for a frozen
model in the loop (fairlearn's reductions refit the classifier; its metrics are not autograd).
Gradients flow through the frozen model into the reconstruction only: the model's own
parameters are frozen by the training contract (`frozen_for_training`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from recon_core.mitigation.attributes import SensitiveAttribute
from recon_core.models.batches import TrainingBatch
from recon_core.models.losses import Loss


def group_spread(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """max − min of per-group `values` over the groups with a count > 0; 0 unless two such groups (no host sync)."""
    valid = counts > 0
    hi = torch.where(valid, values, values.new_tensor(-1e6)).max()
    lo = torch.where(valid, values, values.new_tensor(1e6)).min()
    return torch.where(valid.sum() >= 2, hi - lo, values.new_zeros(()))


def group_means(values: torch.Tensor, members: torch.Tensor, groups: torch.Tensor,
                n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(G,) means of `values` over each group's members, and the members' counts (a mean of 0 where none)."""
    one_hot = torch.nn.functional.one_hot(groups, n_groups).to(values.dtype) * members[:, None].to(values.dtype)
    counts = one_hot.sum(0)
    return (one_hot * values[:, None]).sum(0) / counts.clamp_min(1), counts


class SoftEqualizedOddsGap(Loss):
    """Σ over groups' soft (TPR gap + FPR gap) of a frozen classifier on the output, averaged over findings."""

    def __init__(self, logits: Callable[[torch.Tensor], torch.Tensor], thresholds: Sequence[float],
                 attribute: SensitiveAttribute, temperature: float) -> None:
        self.logits, self.attribute, self.temperature = logits, attribute, temperature
        self.cuts = torch.logit(torch.tensor([float(t) for t in thresholds], dtype=torch.float64)).float()

    def __call__(self, output: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        logits = self.logits(output).float()
        if self.cuts.device != logits.device:  # moved once, not every step
            self.cuts = self.cuts.to(logits.device)
        soft = torch.sigmoid((logits - self.cuts) / self.temperature)
        groups = self.attribute.tensor(batch.rows, logits.device)
        n = len(self.attribute.groups)
        gaps = []
        for j in range(soft.shape[1]):
            target = batch.targets[:, j]
            tpr, positives = group_means(soft[:, j], target == 1, groups, n)
            fpr, negatives = group_means(soft[:, j], target == 0, groups, n)
            gaps.append(group_spread(tpr, positives) + group_spread(fpr, negatives))
        return torch.stack(gaps).mean()


class SoftDiceGap(Loss):
    """max − min over groups of the mean soft Dice of a frozen segmenter's tumour probability (slices with tumour)."""

    def __init__(self, lesion_probability: Callable[[torch.Tensor], torch.Tensor],
                 attribute: SensitiveAttribute) -> None:
        self.lesion_probability, self.attribute = lesion_probability, attribute

    def __call__(self, output: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        if batch.masks is None:
            raise ValueError("the soft Dice gap needs the batch's tumour masks")
        p = self.lesion_probability(output).float()
        m = (batch.masks[:, 0] == 1).to(p.dtype)
        dice = 2 * (p * m).sum((-2, -1)) / (p.sum((-2, -1)) + m.sum((-2, -1))).clamp_min(1e-6)
        groups = self.attribute.tensor(batch.rows, p.device)
        means, counts = group_means(dice, m.sum((-2, -1)) > 0, groups, len(self.attribute.groups))
        return group_spread(means, counts)
