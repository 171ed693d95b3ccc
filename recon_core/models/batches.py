"""Training data as models see it: a split's images with their rows, and batches drawn from it.

Every batch carries the rows of its images (labels, sex, age, subject) beside the images, so an
objective can use demographics; reconstructor batches also carry the degraded input, the
measurement it came from and its level.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from recon_core.seeding import numpy_rng

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

    def sampler(self, seed: int, stream: str, batch_size: int) -> Callable[[int], TrainingBatch]:
        """step → a batch of images drawn with replacement, seeded by (study seed, stream).

        Also seeds torch's global generator for draws made while training.
        """
        rng = numpy_rng(seed, stream)
        torch.manual_seed(int(rng.integers(2**31)))
        return lambda step: self.batch(rng.integers(0, len(self), batch_size))

    def degraded_sampler(self, levels: Sequence[float], seed: int, stream: str,
                         batch_size: int) -> Callable[[int], TrainingBatch]:
        """step → a batch degraded on the fly by `physics` at one of `levels` drawn at random (reconstructor training).

        One network serves every level of the study. Each image's noise has its own seed
        ('train-<step>-<i>'), as evaluation noise does.
        """
        if self.physics is None:
            raise ValueError("a degraded sampler needs the training set's physics")
        physics = self.physics
        rng = numpy_rng(seed, stream)
        torch.manual_seed(int(rng.integers(2**31)))

        def batch(step: int) -> TrainingBatch:
            clean = self.batch(rng.integers(0, len(self), batch_size))
            level = float(levels[int(rng.integers(len(levels)))])
            measurement = physics.measure(clean.images, level, [f"train-{step}-{i}" for i in range(batch_size)])
            return dataclasses.replace(clean, degraded=physics.to_image(measurement, level), measurement=measurement,
                                       level=level)

        return batch
