"""Per-image image-quality metrics on batches; data range is fixed at 1 (images live in [0, 1]).

Besides PSNR, SSIM and NMSE each image keeps its MSE and the mean square of its reference
(`signal`): from these two, per-volume PSNR and NMSE of an MRI patient are exact
(`recon_core.fairness.patients`), as fastMRI's evaluation reports them per volume.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import PSNRMetric, SSIMMetric

from recon_core.metrics.catalogue import BY_NAME, IMAGE_COLUMNS

DATA_RANGE = 1.0

_psnr = PSNRMetric(max_val=DATA_RANGE, reduction="none")
_ssim = SSIMMetric(spatial_dims=2, data_range=DATA_RANGE, reduction="none")  # Gaussian 11×11, σ 1.5


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) PSNR in dB with data range 1 (MONAI); +inf for an exact copy."""
    return _psnr(prediction, target).reshape(-1)


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) SSIM with data range 1 (MONAI, Gaussian window as in Wang et al. 2004)."""
    return _ssim(prediction, target).reshape(-1)


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
