"""A stand-in for a user's reconstructor: a 3 × 3 median filter, run in-process as an entry point.

The same filter run on exported files outside Tandem must store the same metrics
(tests/test_imported_reconstructions.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.ndimage import median_filter


def median(image: np.ndarray) -> np.ndarray:
    """One (H, W) image through a 3 × 3 median filter (scipy's default reflecting edges)."""
    return median_filter(image, size=3)


def factory() -> Callable[..., torch.Tensor]:
    """The entry point: a callable (images, physics, level, measurement) → the images median-filtered."""

    def reconstruct(images: torch.Tensor, physics: object, level: float, measurement: object) -> torch.Tensor:
        """Each (1, H, W) image of the batch median-filtered on the host, returned on the batch's device."""
        filtered = np.stack([median(image[0]) for image in images.cpu().numpy()])[:, None]
        return torch.from_numpy(filtered).to(images.device)

    return reconstruct
