"""Per-image image-quality metrics on batches; data range is fixed at 1 (images live in [0, 1]).

Besides PSNR, SSIM and NMSE each image keeps its MSE and the mean square of its reference
(`signal`): from these two, per-volume PSNR and NMSE of an MRI patient are exact
(`recon_core.fairness.patients`), as fastMRI's evaluation reports them per volume.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import PSNRMetric

from recon_core.metrics.catalogue import BY_NAME, IMAGE_COLUMNS

DATA_RANGE = 1.0

_psnr = PSNRMetric(max_val=DATA_RANGE, reduction="none")
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
"""Wang et al. 2004's Gaussian window and constants, MONAI SSIMMetric's defaults."""


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) PSNR in dB with data range 1 (MONAI); +inf for an exact copy."""
    return _psnr(prediction, target).reshape(-1)


def _gaussian_window(device: torch.device) -> torch.Tensor:
    """The normalised 1D Gaussian of the SSIM window (MONAI's `_gaussian_kernel` is its outer product)."""
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=device) - (SSIM_WINDOW - 1) / 2
    window = torch.exp(-((offsets / SSIM_SIGMA) ** 2) / 2)
    return window / window.sum()


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) SSIM with data range 1: MONAI SSIMMetric's definition (Gaussian window, valid region, mean of the map).

    Written out because MONAI filters each of the five local moments with the full 11×11 window in
    its own convolution; the same Gaussian is separable, so one grouped convolution of the five
    maps along rows and one along columns (22 taps instead of 121) gives MONAI's values to float
    rounding (tests/test_metrics.py) at a fifth of the arithmetic: SSIM was a third of the sweep's
    non-model time.
    """
    x, y = prediction.float(), target.float()
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5, H, W): one channel per moment
    window = _gaussian_window(maps.device)
    rows = window.view(1, 1, 1, -1).expand(5, 1, 1, SSIM_WINDOW)
    moments = F.conv2d(F.conv2d(maps, rows, groups=5), rows.transpose(-1, -2), groups=5)
    mu_x, mu_y, mu_xx, mu_yy, mu_xy = moments.unbind(dim=1)
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    sigma_x, sigma_y, sigma_xy = mu_xx - mu_x * mu_x, mu_yy - mu_y * mu_y, mu_xy - mu_x * mu_y
    contrast = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
    value = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1) * contrast
    return value.flatten(1).mean(1)


def nmse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) normalised MSE ‖x̂ − x‖² / ‖x‖², as fastMRI defines it (MONAI has no NMSE metric)."""
    dims = tuple(range(1, target.ndim))
    return ((prediction - target) ** 2).sum(dims) / (target ** 2).sum(dims).clamp_min(1e-12)


QUALITY_METRICS = tuple(name for name in IMAGE_COLUMNS if BY_NAME[name].kind in ("quality", "helper"))
"""What `image_quality` measures, as the catalogue lists them (NaN on the clean road)."""


def image_quality(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR, SSIM, NMSE, MSE and the reference's mean square per image, in float32 on the inputs' device."""
    p, t = prediction.float(), target.float()
    dims = tuple(range(1, t.ndim))
    return {"psnr": psnr(p, t), "ssim": ssim(p, t), "nmse": nmse(p, t), "mse": ((p - t) ** 2).mean(dims),
            "signal": (t ** 2).mean(dims)}


def volume_quality(mean_mse: np.ndarray, mean_signal: np.ndarray) -> dict[str, np.ndarray]:
    """Per-volume PSNR (data range 1) and NMSE from the means over its equal-sized slices of MSE and signal.

    Exact, not a mean of slice values: a volume's PSNR is 10·log10(1 / MSE of all its voxels)
    and its NMSE ‖x̂ − x‖² / ‖x‖² over all its voxels. NaN in, NaN out (the clean road).
    """
    mse, signal = np.asarray(mean_mse, dtype=float), np.asarray(mean_signal, dtype=float)
    with np.errstate(divide="ignore"):
        return {"psnr_volume": 10 * np.log10(DATA_RANGE ** 2 / mse), "nmse_volume": mse / np.maximum(signal, 1e-12)}
