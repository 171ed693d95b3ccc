"""Per-image image-quality metrics on batches; data range is fixed at 1 (images live in [0, 1]).

Besides PSNR, SSIM and NMSE each image keeps its MSE and the mean square of its reference
(`signal`): from these two, per-volume PSNR and NMSE of an MRI patient are exact
(`recon_core.fairness.patients`), as fastMRI's evaluation reports them per volume.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from recon_core.metrics.catalogue import BY_NAME, IMAGE_COLUMNS

DATA_RANGE = 1.0

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
"""Wang et al. 2004's Gaussian window and constants, MONAI SSIMMetric's defaults."""


@functools.lru_cache(maxsize=8)
def _window_rows(size: int, device: torch.device) -> torch.Tensor:
    """(size − 10, size) matrix whose row i is the normalised 1D Gaussian at offset i (the valid region).

    MONAI's `_gaussian_kernel` is this window's outer product: filtering with it is M @ image @ Mᵀ.
    """
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float32) - (SSIM_WINDOW - 1) / 2
    window = torch.exp(-((offsets / SSIM_SIGMA) ** 2) / 2)
    rows = torch.zeros(size - SSIM_WINDOW + 1, size)
    for i in range(len(rows)):
        rows[i, i:i + SSIM_WINDOW] = window / window.sum()
    return rows.to(device)


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) SSIM with data range 1: MONAI SSIMMetric's definition (Gaussian window, valid region, mean of the map).

    Written out because MONAI filters each of the five local moments with the full 11×11 window in
    its own convolution (≈ 1 ms a 128 px image on a CPU, more than the sweep's classifier). The
    window is separable, so filtering is two matrix products with a band matrix (`_window_rows`),
    which BLAS and GPUs run at full speed: MONAI's values to float rounding (tests/test_metrics.py)
    at a fifth of the time.
    """
    x, y = prediction.float(), target.float()
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5, H, W): one channel per moment
    moments = _window_rows(maps.shape[-2], maps.device) @ maps @ _window_rows(maps.shape[-1], maps.device).T
    mu_x, mu_y, mu_xx, mu_yy, mu_xy = moments.unbind(dim=1)
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    sigma_x, sigma_y, sigma_xy = mu_xx - mu_x * mu_x, mu_yy - mu_y * mu_y, mu_xy - mu_x * mu_y
    contrast = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
    value = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1) * contrast
    return value.flatten(1).mean(1)


QUALITY_METRICS = tuple(name for name in IMAGE_COLUMNS if BY_NAME[name].kind in ("quality", "helper"))
"""What `image_quality` measures, as the catalogue lists them (NaN on the clean road)."""


def image_quality(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR, SSIM, NMSE, MSE and the reference's mean square per image, in float32 on the inputs' device.

    PSNR is MONAI PSNRMetric's formula, 20·log10(data range) − 10·log10(MSE) (+inf for an exact
    copy), and NMSE ‖x̂ − x‖² / ‖x‖² as fastMRI defines it (MONAI has none); both are written out
    so the squared error, the sweep's costliest elementwise step after SSIM, is computed once.
    """
    p, t = prediction.float(), target.float()
    dims = tuple(range(1, t.ndim))
    mse, signal = ((p - t) ** 2).mean(dims), (t ** 2).mean(dims)
    return {"psnr": 20 * np.log10(DATA_RANGE) - 10 * torch.log10(mse), "ssim": ssim(p, t),
            "nmse": mse / signal.clamp_min(1e-12 / t[0].numel()), "mse": mse, "signal": signal}


def volume_quality(mean_mse: np.ndarray, mean_signal: np.ndarray) -> dict[str, np.ndarray]:
    """Per-volume PSNR (data range 1) and NMSE from the means over its equal-sized slices of MSE and signal.

    Exact, not a mean of slice values: a volume's PSNR is 10·log10(1 / MSE of all its voxels)
    and its NMSE ‖x̂ − x‖² / ‖x‖² over all its voxels. NaN in, NaN out (the clean road).
    """
    mse, signal = np.asarray(mean_mse, dtype=float), np.asarray(mean_signal, dtype=float)
    with np.errstate(divide="ignore"):
        return {"psnr_volume": 10 * np.log10(DATA_RANGE ** 2 / mse), "nmse_volume": mse / np.maximum(signal, 1e-12)}
