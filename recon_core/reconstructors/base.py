"""What every reconstructor offers: batched reconstruct(); the trained ones also meet the model contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from recon_core.config import StudyConfig
from recon_core.models.batches import TrainingBatch
from recon_core.models.contract import TrainableModel
from recon_core.models.losses import Loss
from recon_core.physics.base import Acquisition


@dataclass
class FineTuning:
    """What bias mitigation fine-tunes in a reconstructor: its network, the network's differentiable output on a
    training batch (as `reconstruct` computes it, with gradients) and the pixel loss it was trained with."""

    net: torch.nn.Module
    output: Callable[[TrainingBatch], torch.Tensor]
    loss: Loss
    arch: dict


class Reconstructor(ABC):
    """Maps degraded images (B, 1, H, W) in [0, 1] to reconstructions of the same shape.

    A reconstructor sees the degraded image and the physics object, never the clean image.
    """

    name: str
    returns_degraded = False
    """True for methods whose output is the degraded image itself (none, zero_filled): shown once, not twice."""
    cache_outputs = False
    """Expensive (sampling) methods: the runner keeps their outputs on disk, keyed by cache_key()."""

    def __init__(self, config: StudyConfig, device: torch.device) -> None:
        self.config = config
        self.device = device

    def cache_key(self) -> str:
        """What determines this reconstructor's outputs beyond the image and level (weights and settings)."""
        return ""

    @abstractmethod
    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        """Batched reconstruction, same shape and device as `degraded`, values in [0, 1].

        `measurement` is what the scanner recorded (MRI: the masked k-space), for methods that
        enforce consistency with it; `image_ids` seed the draws of stochastic methods, so a
        sample never depends on batching. Deterministic methods ignore both.
        """

    def reconstruct_samples(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                            measurement: torch.Tensor | None = None,
                            image_ids: Sequence[str] | None = None) -> torch.Tensor:
        """(n, B, 1, H, W) posterior samples, image i's k-th sample at [k, i]; a deterministic method's one output.

        Samplers (n > 1) report their mean as the reconstruction and the samples' per-pixel spread
        as its uncertainty; the runner also hands each sample to the diagnostic model.
        """
        return self.reconstruct(degraded, physics, level, measurement, image_ids)[None]

    def fine_tuning(self) -> FineTuning | None:
        """Its trainable network for mitigation to fine-tune; None for a method with none (classical, sampled)."""
        return None


class NetworkReconstructor(Reconstructor, TrainableModel):
    """A trained reconstructor: one network `net`, fit or loaded through the model contract.

    Trained across all levels of the study (each training image degraded on the fly at a random
    level), so one set of weights serves the sweep. Gradients flow at training time only:
    `reconstruct` runs without them.
    """

    def cache_key(self) -> str:
        return self.weights_key()

    def consistent(self, output: torch.Tensor, physics: Acquisition, level: float,
                   measurement: torch.Tensor | None, data_consistency: bool) -> torch.Tensor:
        """The output with the measured k-space samples put back, when the config asks for it (MRI)."""
        if data_consistency and measurement is not None:
            return physics.consistent(output, measurement, level)
        return output
