"""The acquisition as an object: measure(clean, level, image ids) → what the scanner records → to_image."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from recon_core.seeding import derive_seed


class PhysicsError(ValueError):
    """A dose level or input the forward model cannot use."""


class Acquisition(ABC):
    """A forward model with its noise. Images are (B, 1, H, W) in [0, 1], bright = attenuating.

    Noise for each image is drawn from its own generator seeded by (seed, image id, level),
    so a result never depends on batch size, batch order or device.
    """

    name: str
    level_name: str
    level_unit: str

    def __init__(self, seed: int) -> None:
        self.seed = seed

    higher_is_worse = False
    """Whether a larger level degrades more (MRI acceleration) or less (X-ray dose)."""

    def check_level(self, level: float) -> float:
        """Levels are doses (photons): strictly positive numbers."""
        if not isinstance(level, (int, float)) or not level > 0:
            raise PhysicsError(f"{self.name}: {self.level_name} must be > 0 {self.level_unit}, got {level!r}")
        return float(level)

    def image_seed(self, image_id: str, level: float) -> int:
        """The seed of one image's noise at one level."""
        return derive_seed(self.seed, self.name, image_id, f"{level:g}")

    def measure(self, clean: torch.Tensor, level: float, image_ids: Sequence[str]) -> torch.Tensor:
        """What the scanner records (X-ray: the noisy image; MRI: masked complex k-space), on clean's device."""
        level = self.check_level(level)
        if clean.ndim != 4 or clean.shape[1] != 1:
            raise PhysicsError(f"{self.name}: expected (B, 1, H, W) images, got shape {tuple(clean.shape)}")
        if len(image_ids) != clean.shape[0]:
            raise PhysicsError(f"{self.name}: {clean.shape[0]} images but {len(image_ids)} ids")
        seeds = [self.image_seed(i, level) for i in image_ids]
        return self._measure(clean, level, seeds)

    def to_image(self, measurement: torch.Tensor, level: float) -> torch.Tensor:
        """The image a viewer sees of a measurement, (B, 1, H, W) in [0, 1]; X-ray measures images already."""
        return measurement

    def degrade(self, clean: torch.Tensor, level: float, image_ids: Sequence[str]) -> torch.Tensor:
        """Degraded images on clean's device, same shape, in [0, 1]: to_image(measure(clean))."""
        return self.to_image(self.measure(clean, level, image_ids), level)

    def consistent(self, image: torch.Tensor, measurement: torch.Tensor, level: float) -> torch.Tensor:
        """A reconstruction made consistent with what was measured; only k-space physics can do it."""
        raise PhysicsError(f"{self.name}: data consistency needs k-space physics (physics.model: kspace)")

    @abstractmethod
    def _measure(self, clean: torch.Tensor, level: float, seeds: list[int]) -> torch.Tensor:
        """Model-specific measurement with one seed per image."""
