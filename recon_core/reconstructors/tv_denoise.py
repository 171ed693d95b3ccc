"""`tv`: scikit-image's total-variation (Chambolle) denoiser, its weight set from the estimated noise."""

from __future__ import annotations

from collections.abc import Sequence

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
        out = np.empty_like(images)
        factor = self.config.reconstructors.tv.weight_per_sigma
        for i, image in enumerate(images):  # skimage works one image at a time
            sigma = float(estimate_sigma(image))
            out[i] = denoise_tv_chambolle(image, weight=max(factor * sigma, 1e-4)) if sigma > 0 else image
        return torch.from_numpy(np.clip(out, 0, 1)[:, None]).to(degraded.device, degraded.dtype)
