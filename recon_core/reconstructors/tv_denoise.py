"""`tv`: scikit-image's total-variation (Chambolle) denoiser, its weight set from the estimated noise.

The noise std of each image is scikit-image's `estimate_sigma` (wavelet MAD, on the CPU, in
threads). On a CPU device each image is denoised by scikit-image's `denoise_tv_chambolle`, in
threads. Beside a GPU, scikit-image's one-image-at-a-time CPU loop (≈ 2.5 ms a 128 px image) was
the slowest part of the sweep, so the same iteration is ported to torch for a batch
(`tv_chambolle`: float64, each image's own weight and stopping rule) and runs on the device; on
a CPU the port is slower than scikit-image (all images iterate until the last one stops). The
energies are summed in another order than NumPy's, so an image whose stopping test is borderline
can stop one iteration apart on the two devices (values then differ by far less than the noise).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from skimage.restoration import denoise_tv_chambolle, estimate_sigma

from recon_core.physics.base import Acquisition
from recon_core.reconstructors.base import Reconstructor


def tv_chambolle(images: torch.Tensor, weights: torch.Tensor, eps: float = 2.0e-4,
                 max_num_iter: int = 200) -> torch.Tensor:
    """scikit-image's `_denoise_tv_chambolle_nd` on a batch (B, H, W) of 2-D images, each with its weight.

    Step for step the same iteration (dual variable p, divergence d, energy E); each image stops
    when its energy changes by less than eps × its first energy, as scikit-image's loop breaks,
    and keeps the estimate of that iteration. Tested equal to scikit-image.
    """
    batch, height, width = images.shape
    weight = weights.to(images).view(1, batch, 1, 1)
    p = images.new_zeros((2, batch, height, width))
    g = torch.zeros_like(p)
    d = torch.zeros_like(images)
    result = images.clone()
    done = torch.zeros(batch, dtype=torch.bool, device=images.device)
    first = previous = None
    for i in range(max_num_iter):
        if i > 0:  # d is the negative divergence of p
            d = -p.sum(0)
            d[:, 1:, :] += p[0, :, :-1, :]
            d[:, :, 1:] += p[1, :, :, :-1]
            out = images + d
        else:
            out = images
        energy = (d ** 2).sum((1, 2))
        g[0, :, :-1, :] = torch.diff(out, dim=1)
        g[1, :, :, :-1] = torch.diff(out, dim=2)
        norm = torch.sqrt((g ** 2).sum(0, keepdim=True))
        energy = (energy + weight.view(-1) * norm.sum((2, 3)).view(-1)) / float(height * width)
        tau = 1.0 / 4.0  # 1 / (2 · dimensions)
        p -= tau * g
        p /= norm * (tau / weight) + 1.0
        if i == 0:
            first = previous = energy
            continue
        stop = ((previous - energy).abs() < eps * first) & ~done
        result[stop] = out[stop]
        done |= stop
        if bool(done.all()):
            return result
        previous = energy
    return torch.where(done.view(-1, 1, 1), result, out)


class TVDenoise(Reconstructor):
    """Classical baseline: weight = weight_per_sigma × noise std estimated from the image itself."""

    name = "tv"

    def reconstruct(self, degraded: torch.Tensor, physics: Acquisition, level: float,
                    measurement: torch.Tensor | None = None,
                    image_ids: Sequence[str] | None = None) -> torch.Tensor:
        host = degraded.detach().cpu().numpy()[:, 0].astype(np.float64)
        factor = self.config.reconstructors.tv.weight_per_sigma
        with ThreadPoolExecutor(max_workers=max(1, min(len(host), os.cpu_count() or 1))) as pool:
            sigmas = np.array(list(pool.map(lambda image: float(estimate_sigma(image)), host)))
            weights = np.maximum(factor * sigmas, 1e-4)
            if self.device.type == "cpu":  # one image at a time is faster here: each stops at its own iteration
                out = np.stack(list(pool.map(lambda i: denoise_tv_chambolle(host[i], weight=weights[i]),
                                             range(len(host)))))
            else:  # the batch at once on the device
                out = tv_chambolle(torch.from_numpy(host).to(self.device), torch.from_numpy(weights)).cpu().numpy()
        out = np.where((sigmas > 0)[:, None, None], out, host)  # a flat image stays as it is
        return torch.from_numpy(np.clip(out, 0, 1)[:, None]).to(degraded.device, degraded.dtype)
