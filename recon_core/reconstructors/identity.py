"""`none`: the degraded image as the scanner gives it; the floor every method must beat."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from recon_core.physics.base import Acquisition
from recon_core.reconstructors.base import Reconstructor


class Identity(Reconstructor):
    """Returns the degraded image unchanged."""

    name = "none"
    returns_degraded = True

    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        return degraded
