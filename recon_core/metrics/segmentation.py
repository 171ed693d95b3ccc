"""Per-slice segmentation metrics, MONAI's, with the empty-mask conventions stated once.

- Dice (MONAI `compute_dice`, ignore_empty=False): 1 when truth and prediction are both empty,
  0 when exactly one of them is empty; otherwise 2|A∩B| / (|A| + |B|).
- HD95 (MONAI `compute_hausdorff_distance`, percentile 95, Euclidean, in pixels): undefined
  (NaN) when either mask is empty; patient and group means skip NaN.
Patient values are the mean over the patient's slices (recon_core.fairness.patients).
"""

from __future__ import annotations

import warnings

import torch
from monai.metrics import compute_dice, compute_hausdorff_distance


def _one_hot(masks: torch.Tensor) -> torch.Tensor:
    m = masks.bool()
    return torch.cat([~m, m], dim=1).float()


def dice(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(B,) Dice of binary (B, 1, H, W) masks."""
    return compute_dice(_one_hot(prediction), _one_hot(truth), include_background=False,
                        ignore_empty=False).reshape(-1)


def hd95(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(B,) 95th-percentile Hausdorff distance in pixels; NaN where either mask is empty."""
    with warnings.catch_warnings():  # MONAI warns for every empty mask; NaN is the documented answer
        warnings.simplefilter("ignore")
        out = compute_hausdorff_distance(_one_hot(prediction), _one_hot(truth), include_background=False,
                                         percentile=95).reshape(-1).float()
    empty = (prediction.flatten(1).sum(1) == 0) | (truth.flatten(1).sum(1) == 0)
    out[empty.to(out.device)] = float("nan")
    return out


def segmentation_quality(prediction: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dice and HD95 per slice, on the CPU."""
    p, t = prediction.cpu(), truth.cpu()
    return {"dice": dice(p, t), "hd95": hd95(p, t)}
