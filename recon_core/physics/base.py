"""The acquisition as an object: measure(clean, level, image ids) → what the scanner records → to_image."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from recon_core.seeding import derive_seed


class PhysicsError(ValueError):
    """A dose level or input the forward model cannot use."""


@dataclass(frozen=True)
class LevelAxis:
    """What a physics level means: its name and unit, the smallest allowed value, and its direction.

    X-ray: dose in photons, > 0, a lower dose is noisier; MRI: acceleration, ≥ 1, a higher one
    samples less. Plots, the sidebar and reports read the direction from here (stored with each run).
    """

    name: str
    unit: str
    minimum: float
    minimum_included: bool
    higher_is_worse: bool
    note: str = ""
    """What the minimum means, said in errors: '1× = fully sampled'."""

    def problem(self, level: object) -> str | None:
        """Why a level is impossible on this axis ('must be > 0 photons/pixel'), or None when it is fine."""
        ok = isinstance(level, (int, float)) and not isinstance(level, bool) and (
            level >= self.minimum if self.minimum_included else level > self.minimum)
        if ok:
            return None
        return (f"must be {'≥' if self.minimum_included else '>'} {self.minimum:g} {self.unit}"
                + (f" ({self.note})" if self.note else ""))

    def worst_first(self, levels: Sequence[float]) -> list[float]:
        """Levels from the most degraded to the mildest."""
        return sorted(levels, reverse=self.higher_is_worse)


class Acquisition(ABC):
    """A forward model with its noise. Images are (B, 1, H, W) in [0, 1], bright = attenuating.

    Noise for each image is drawn from its own generator seeded by (seed, image id, level),
    so a result never depends on batch size, batch order or device.
    """

    name: str
    axis: LevelAxis
    measures_kspace = False
    """Whether `consistent` can put measured samples back (k-space physics only)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    @property
    def level_name(self) -> str:
        return self.axis.name

    @property
    def level_unit(self) -> str:
        return self.axis.unit

    def check_level(self, level: float) -> float:
        """A level on this physics' axis as a float; anything else is a PhysicsError naming the rule."""
        problem = self.axis.problem(level)
        if problem:
            raise PhysicsError(f"{self.name}: {self.axis.name} {problem}, got {level!r}")
        return float(level)

    def image_seed(self, image_id: str, level: float) -> int:
        """The seed of one image's noise at one level."""
        return derive_seed(self.seed, self.name, image_id, f"{level:g}")

    def measure(self, clean: torch.Tensor, level: float, image_ids: Sequence[str]) -> torch.Tensor:
        """What the scanner records (X-ray: the noisy image; MRI: masked complex k-space), on clean's device."""
        level = self.check_level(level)
        self._check_images(clean)
        if len(image_ids) != clean.shape[0]:
            raise PhysicsError(f"{self.name}: {clean.shape[0]} images but {len(image_ids)} ids")
        seeds = [self.image_seed(i, level) for i in image_ids]
        return self._measure(clean, level, seeds)

    def measure_batch(self, clean: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
        """What the scanner records for a training batch, every draw from `generator`, on its device.

        For training only: no per-image generators and no trip through the host, but a draw depends
        on the batch it falls in. Physics without a device model draw one seed per image from
        `generator` and measure as `measure` does.
        """
        level = self.check_level(level)
        self._check_images(clean)
        return self._measure_batch(clean, level, generator)

    def _check_images(self, clean: torch.Tensor) -> None:
        """PhysicsError unless `clean` is a (B, 1, H, W) batch."""
        if clean.ndim != 4 or clean.shape[1] != 1:
            raise PhysicsError(f"{self.name}: expected (B, 1, H, W) images, got shape {tuple(clean.shape)}")

    def _measure_batch(self, clean: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
        """Training draws: one seed per image from `generator`, then the per-image model."""
        seeds = torch.randint(2**62, (clean.shape[0],), generator=generator, device=generator.device).tolist()
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
