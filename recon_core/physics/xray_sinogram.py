"""The reference study's sinogram-domain low-dose model (Radon → bowtie → Poisson → FBP with Hann).

As in the reference: the bowtie-weighted sinogram is scaled so its maximum equals the photon
count, Poisson noise is drawn on it, it is scaled back and the bowtie removed, then filtered
back-projection with a Hann filter. scikit-image's radon/iradon run per image on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.transform import iradon, radon

from recon_core.physics.base import Acquisition, LevelAxis


class SinogramDose(Acquisition):
    """Sinogram-domain model; level = photon count at the sinogram maximum."""

    name = "xray_sinogram"
    axis = LevelAxis("dose", "photons", minimum=0.0, minimum_included=False, higher_is_worse=False)

    def __init__(self, seed: int, n_angles: int = 256) -> None:
        super().__init__(seed)
        self.theta = np.linspace(0.0, 180.0, n_angles, endpoint=False)

    @staticmethod
    def bowtie(n_detectors: int) -> np.ndarray:
        """Bowtie filter transmission: 0.05 at the edges rising linearly to 1 at the centre."""
        half = np.linspace(0.05, 1.0, (n_detectors + 1) // 2)
        return np.concatenate([half, half[::-1][n_detectors % 2:]])

    def _measure(self, clean: torch.Tensor, level: float, seeds: list[int]) -> torch.Tensor:
        images = clean.detach().to("cpu", torch.float64).numpy()[:, 0]
        out = np.empty_like(images)
        size = images.shape[-1]
        for i, seed in enumerate(seeds):
            sinogram = radon(images[i], theta=self.theta, circle=False)
            weight = self.bowtie(sinogram.shape[0])[:, None]
            weighted = sinogram * weight
            scale = level / max(weighted.max(), 1e-12)
            noisy = np.random.default_rng(seed).poisson(weighted * scale) / scale / weight
            out[i] = iradon(noisy, theta=self.theta, filter_name="hann", circle=False, output_size=size)
        return torch.from_numpy(np.clip(out, 0, 1)[:, None]).to(clean.device, clean.dtype)
