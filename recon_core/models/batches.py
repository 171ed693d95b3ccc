"""Training data as models see it: a split's images with their rows, and batches drawn from it.

Every batch carries the rows of its images (labels, sex, age, subject) beside the images, so an
objective can use demographics; reconstructor batches also carry the degraded input, the
measurement it came from and its level.

Where batches are made depends on the model's device. On the CPU, as always: each training
image's noise has its own seed, like evaluation noise. On a GPU the split is copied to the device
once, batches are gathered there and degraded there from one seeded device generator per
training run (`Acquisition.measure_batch`): per-image reproducibility matters for evaluation, not
for training, and per-image draws on the host bounded GPU training at 25–40 steps/s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from recon_core.seeding import derive_seed, numpy_rng

if TYPE_CHECKING:
    from recon_core.physics.base import Acquisition


@dataclass
class TrainingBatch:
    """One training batch: clean images (B, 1, H, W) with their rows, label targets (NaN = unknown) and masks.

    Reconstructor batches also hold the degraded input, the measurement it came from and its level.
    """

    images: torch.Tensor
    rows: pd.DataFrame
    targets: torch.Tensor
    masks: torch.Tensor | None = None
    degraded: torch.Tensor | None = None
    measurement: torch.Tensor | None = None
    level: float | None = None

    def to(self, device: torch.device) -> TrainingBatch:
        """The same batch with every tensor on `device`."""
        moved = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **moved)


@dataclass
class SplitData:
    """The images of one split with their rows (labels, sex, age, subject) and masks: what models train and test on.

    `physics`, where set, degrades the images for reconstructor training.
    """

    rows: pd.DataFrame
    images: np.ndarray
    labels: tuple[str, ...]
    masks: np.ndarray | None = None
    physics: Acquisition | None = None

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx: np.ndarray) -> TrainingBatch:
        """The clean batch of images `idx` (rows, float targets, int64 masks), on the CPU."""
        rows = self.rows.iloc[idx].reset_index(drop=True)
        masks = None if self.masks is None else torch.from_numpy(self.masks[idx][:, None].astype(np.int64))
        return TrainingBatch(torch.from_numpy(self.images[idx][:, None]), rows,
                             torch.from_numpy(rows[list(self.labels)].to_numpy(dtype=np.float32, copy=True)), masks)

    def sampler(self, seed: int, stream: str, batch_size: int,
                device: torch.device | None = None) -> Callable[[int], TrainingBatch]:
        """step → a batch of images drawn with replacement, seeded by (study seed, stream), made on `device`.

        The same images on every device (a GPU gathers them from its own copy of the split). Also
        seeds torch's global generator for draws made while training.
        """
        rng = numpy_rng(seed, stream)
        torch.manual_seed(int(rng.integers(2**31)))
        source = self._source(device)
        return lambda step: source.batch(rng.integers(0, len(self), batch_size))

    def degraded_sampler(self, levels: Sequence[float], seed: int, stream: str, batch_size: int,
                         device: torch.device | None = None,
                         weights: np.ndarray | None = None) -> Callable[[int], TrainingBatch]:
        """step → a batch degraded on the fly by `physics` at one of `levels` drawn at random (reconstructor training).

        One network serves every level of the study. On the CPU each image's noise has its own seed
        ('train-<step>-<i>'), as evaluation noise does; on a GPU the batch is degraded on the device
        from one generator seeded by (study seed, stream). `weights` (one per image, summing to 1)
        draws images with those probabilities instead of uniformly (group-balanced mitigation).
        """
        if self.physics is None:
            raise ValueError("a degraded sampler needs the training set's physics")
        physics = self.physics
        rng = numpy_rng(seed, stream)
        torch.manual_seed(int(rng.integers(2**31)))
        source = self._source(device)
        generator = None
        if isinstance(source, DeviceBatches):
            generator = torch.Generator(source.device).manual_seed(derive_seed(seed, stream, "training-noise"))

        def batch(step: int) -> TrainingBatch:
            drawn = rng.integers(0, len(self), batch_size) if weights is None else rng.choice(len(self), batch_size,
                                                                                              p=weights)
            clean = source.batch(drawn)
            level = float(levels[int(rng.integers(len(levels)))])
            if generator is None:
                measurement = physics.measure(clean.images, level, [f"train-{step}-{i}" for i in range(batch_size)])
            else:
                measurement = physics.measure_batch(clean.images, level, generator)
            return dataclasses.replace(clean, degraded=physics.to_image(measurement, level), measurement=measurement,
                                       level=level)

        return batch

    def _source(self, device: torch.device | None) -> SplitData | DeviceBatches:
        """Where batches are made: this split on the host for a CPU model, its copy on a GPU otherwise."""
        return self if device is None or device.type == "cpu" else DeviceBatches(self, device)


class DeviceBatches:
    """A split's images, targets and masks copied to a device once; batches are gathered there, never sent per step."""

    def __init__(self, data: SplitData, device: torch.device) -> None:
        self.data, self.device = data, device
        self.images = torch.from_numpy(data.images).to(device)
        self.targets = torch.from_numpy(data.rows[list(data.labels)].to_numpy(dtype=np.float32, copy=True)).to(device)
        self.masks = None if data.masks is None else torch.from_numpy(data.masks).to(device)

    def batch(self, idx: np.ndarray) -> TrainingBatch:
        """The clean batch of images `idx` on the device: the same values as `SplitData.batch`."""
        index = torch.from_numpy(idx)
        if self.device.type == "cuda":  # a pinned copy does not wait for the device's queue to drain
            index = index.pin_memory().to(self.device, non_blocking=True)
        index = index.to(self.device)
        rows = self.data.rows.iloc[idx].reset_index(drop=True)
        masks = None if self.masks is None else self.masks[index][:, None].long()
        return TrainingBatch(self.images[index][:, None], rows, self.targets[index], masks)
