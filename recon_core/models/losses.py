"""Training objectives as objects (deepinv's convention): `loss(output, batch)`, weighted and summed with `*` and `+`.

A loss sees the network's output on a batch and the batch itself (clean images, rows, targets,
masks, the degraded input), so a fairness term can read the sex of each image and a frozen
classifier it was built with. `100 * ImageLoss("l1") + GeneratorAdversarialLoss(d)` is pix2pix.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from monai.losses import DiceCELoss, PatchAdversarialLoss

from recon_core.models.batches import TrainingBatch


class Loss(ABC):
    """A training objective on (output, batch); `w * loss` weights it, `a + b` sums two."""

    @abstractmethod
    def __call__(self, output: Any, batch: TrainingBatch) -> torch.Tensor:
        """A scalar loss."""

    def __add__(self, other: Loss) -> WeightedSum:
        return WeightedSum([*_terms(self), *_terms(other)])

    def __rmul__(self, weight: float) -> WeightedSum:
        return WeightedSum([(weight * w, loss) for w, loss in _terms(self)])


def _terms(loss: Loss) -> list[tuple[float, Loss]]:
    return loss.terms if isinstance(loss, WeightedSum) else [(1.0, loss)]


class WeightedSum(Loss):
    """Σ wᵢ · lossᵢ(output, batch), in the order the terms were written."""

    def __init__(self, terms: list[tuple[float, Loss]]) -> None:
        self.terms = terms

    def __call__(self, output: Any, batch: TrainingBatch) -> torch.Tensor:
        total = None
        for weight, loss in self.terms:
            value = loss(output, batch) if weight == 1.0 else weight * loss(output, batch)
            total = value if total is None else total + value
        return total


class ImageLoss(Loss):
    """Pixel loss of a reconstruction against the clean image: 'mse' or 'l1'."""

    def __init__(self, criterion: str = "mse") -> None:
        self.criterion = {"mse": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss}[criterion]

    def __call__(self, output: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        return self.criterion(output, batch.images)


class MaskedBCE(Loss):
    """Multi-label binary cross-entropy on logits; unknown (NaN) labels carry no loss."""

    def __call__(self, output: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        known = ~torch.isnan(batch.targets)
        if output.is_cuda:  # no boolean indexing on a GPU: its host sync would stall the device every step
            losses = torch.nn.functional.binary_cross_entropy_with_logits(
                output, batch.targets.nan_to_num(0.0), reduction="none")
            return (losses * known).sum() / known.sum().clamp_min(1)
        return torch.nn.functional.binary_cross_entropy_with_logits(
            output[known], batch.targets[known], reduction="sum") / known.sum().clamp_min(1)


class DiceCE(Loss):
    """MONAI's Dice + cross-entropy of background/tumour logits against the batch's masks."""

    def __init__(self) -> None:
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True)

    def __call__(self, output: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        return self.loss(output, batch.masks)


class GeneratorAdversarialLoss(Loss):
    """Least-squares PatchGAN loss of (degraded, output) pairs judged real by the discriminator (MONAI)."""

    def __init__(self, discriminator: torch.nn.Module) -> None:
        self.discriminator = discriminator
        self.adversarial = PatchAdversarialLoss(criterion="least_squares")

    def __call__(self, output: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        logits = self.discriminator(torch.cat([batch.degraded, output], 1))[-1]
        return self.adversarial(logits, target_is_real=True, for_discriminator=False)


class DiscriminatorLoss(Loss):
    """Least-squares PatchGAN loss of the discriminator: real (y, x) pairs → 1, generated (y, G(y)) pairs → 0."""

    def __init__(self, discriminator: torch.nn.Module) -> None:
        self.discriminator = discriminator
        self.adversarial = PatchAdversarialLoss(criterion="least_squares")

    def __call__(self, output: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        real_logits = self.discriminator(torch.cat([batch.degraded, batch.images], 1))[-1]
        fake_logits = self.discriminator(torch.cat([batch.degraded, output.detach()], 1))[-1]
        return 0.5 * (self.adversarial(real_logits, target_is_real=True, for_discriminator=True)
                      + self.adversarial(fake_logits, target_is_real=False, for_discriminator=True))


class DenoisingLoss(Loss):
    """Diffusion training: MSE between the network's prediction and its target (the noise ε, or x₀), as a pair."""

    def __call__(self, output: tuple[torch.Tensor, torch.Tensor], batch: TrainingBatch) -> torch.Tensor:
        prediction, target = output
        return torch.nn.functional.mse_loss(prediction, target)
