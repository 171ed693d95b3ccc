"""What every reconstructor offers: batched reconstruct(), and fit() for the trainable ones."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from recon_core.checkpoints import load_checkpoint
from recon_core.config import StudyConfig
from recon_core.physics.base import Acquisition
from recon_core.progress import Progress, silent


class Reconstructor(ABC):
    """Maps degraded images (B, 1, H, W) in [0, 1] to reconstructions of the same shape.

    A reconstructor sees the degraded image and the physics object, never the clean image.
    """

    name: str
    trainable: bool = False
    cache_outputs: bool = False
    """Expensive (sampling) methods: the runner keeps their outputs on disk, keyed by cache_key()."""

    def __init__(self, config: StudyConfig, device: torch.device) -> None:
        self.config = config
        self.device = device

    def weights_key(self) -> str:
        """What determines this reconstructor's weights ('' when it has none)."""
        return ""

    def fit(self, clean: np.ndarray, physics: Acquisition, checkpoint_dir: Path,  # noqa: B027 (untrained: no-op)
            progress: Progress = silent) -> None:
        """Trains on clean images degraded on the fly, or loads the matching checkpoint; untrained methods skip."""

    def load(self, checkpoint_dir: Path) -> None:  # noqa: B027 (untrained methods: nothing to load)
        """Loads trained weights without training (CheckpointError if absent); untrained methods skip."""

    def cache_key(self) -> str:
        """What determines this reconstructor's outputs beyond the image and level (weights and settings)."""
        return self.weights_key()

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
                            image_ids: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(reconstruction, per-pixel std over posterior samples or None for deterministic methods)."""
        return self.reconstruct(degraded, physics, level, measurement, image_ids), None


class NetworkReconstructor(Reconstructor):
    """A trained reconstructor with one network `net` (architecture `arch`), stored under its weights key."""

    trainable = True
    net: torch.nn.Module
    arch: dict

    def checkpoint_path(self, checkpoint_dir: Path) -> Path:
        """Where this configuration's weights live: `<name>-<weights key>.pt`."""
        return checkpoint_dir / f"{self.name}-{self.weights_key()}.pt"

    def load(self, checkpoint_dir: Path) -> None:
        """The matching weights (CheckpointError when absent or for another architecture), in eval mode."""
        load_checkpoint(self.checkpoint_path(checkpoint_dir), self.net, self.arch)
        self.net.eval()
