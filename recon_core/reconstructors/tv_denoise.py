"""`tv`: scikit-image's total-variation (Chambolle) denoiser, its weight set from the estimated noise."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from skimage.restoration import denoise_tv_chambolle, estimate_sigma

from recon_core.physics.base import Acquisition
from recon_core.reconstructors.base import Reconstructor


class TVDenoise(Reconstructor):
    """Classical baseline: weight = weight_per_sigma × noise std estimated from the image itself."""

    name = "tv"

    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        images = degraded.detach().cpu().numpy()[:, 0].astype(np.float64)
        factor = self.config.reconstructors.tv.weight_per_sigma

        def denoised(image: np.ndarray) -> np.ndarray:
            sigma = float(estimate_sigma(image))
            return denoise_tv_chambolle(image, weight=max(factor * sigma, 1e-4)) if sigma > 0 else image

        # skimage works one image at a time on the CPU; its NumPy loops release the GIL, so the
        # images of a batch are denoised by threads (the same result whatever the thread count)
        with ThreadPoolExecutor(max_workers=max(1, min(len(images), os.cpu_count() or 1))) as pool:
            out = np.stack(list(pool.map(denoised, images)))
        return torch.from_numpy(np.clip(out, 0, 1)[:, None]).to(degraded.device, degraded.dtype)
