"""Per-image image-quality metrics and set-level task metrics."""

from recon_core.metrics.classification import auroc, rates
from recon_core.metrics.image_quality import DATA_RANGE, image_quality, nmse, psnr, ssim

__all__ = ["DATA_RANGE", "auroc", "image_quality", "nmse", "psnr", "rates", "ssim"]
