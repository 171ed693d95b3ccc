"""Per-image image-quality metrics on batches; data range is fixed at 1 (images live in [0, 1])."""

from __future__ import annotations

import torch
from monai.metrics import PSNRMetric, SSIMMetric

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


def image_quality(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR, SSIM and NMSE per image, computed in float32 on the inputs' device."""
    p, t = prediction.float(), target.float()
    return {"psnr": psnr(p, t), "ssim": ssim(p, t), "nmse": nmse(p, t)}
