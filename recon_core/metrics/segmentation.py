"""Per-slice segmentation metrics, MONAI's, with the empty-mask conventions stated once.

- Dice (MONAI `compute_dice`, ignore_empty=False): 1 when truth and prediction are both empty,
  0 when exactly one of them is empty; otherwise 2|A∩B| / (|A| + |B|).
- HD95 (MONAI `compute_hausdorff_distance`, percentile 95, Euclidean, in pixels): undefined
  (NaN) when either mask is empty; patient and group means skip NaN.
Patient values are the mean over the patient's slices (recon_core.fairness.patients).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

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
        return _hd95(prediction, truth)


def _hd95(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """`hd95` without its warning filter (which is process-wide state: set once around threads)."""
    out = compute_hausdorff_distance(_one_hot(prediction), _one_hot(truth), include_background=False,
                                     percentile=95).reshape(-1).float()
    empty = (prediction.flatten(1).sum(1) == 0) | (truth.flatten(1).sum(1) == 0)
    out[empty.to(out.device)] = float("nan")
    return out


HD95_CHUNK = 8
"""Slices per thread in `segmentation_quality`'s HD95."""


def segmentation_quality(prediction: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dice and HD95 per slice, on the CPU, HD95 over chunks of slices in threads.

    MONAI's HD95 finds each slice's edges and distances one slice at a time (≈ 3 ms a 128 px slice,
    more than the segmenter itself); the chunks' results are the same in any order.
    """
    p, t = prediction.cpu(), truth.cpu()
    chunks = range(0, len(p), HD95_CHUNK)
    with warnings.catch_warnings(), ThreadPoolExecutor(max(1, min(len(chunks), os.cpu_count() or 1))) as pool:
        warnings.simplefilter("ignore")
        distances = list(pool.map(lambda lo: _hd95(p[lo:lo + HD95_CHUNK], t[lo:lo + HD95_CHUNK]), chunks))
    return {"dice": dice(p, t), "hd95": torch.cat(distances) if distances else hd95(p, t)}
