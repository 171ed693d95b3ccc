"""Per-image image-quality metrics (set-level task metrics live in recon_core.fairness.bootstrap)."""

from recon_core.metrics.image_quality import (
    DATA_RANGE,
    QUALITY_METRICS,
    image_quality,
    nmse,
    psnr,
    ssim,
    volume_quality,
)

__all__ = ["DATA_RANGE", "QUALITY_METRICS", "image_quality", "nmse", "psnr", "ssim", "volume_quality"]
