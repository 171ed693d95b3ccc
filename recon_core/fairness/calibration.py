"""Calibration curves of a sampler's spread, per group, from each image's stored bin sums.

Each image stored, per fixed bin of the per-pixel posterior std, its pixel count, Σ std and
Σ squared error of the posterior mean (`metrics.uncertainty.calibration_bins`). A group's curve
pools those sums: in each bin, the mean predicted std against the root-mean-square error. For a
calibrated posterior of n samples the error's RMS is std·√(1 + 1/n) (the truth behaves like
one more draw), so points on that line are calibrated, points above it are overconfident.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recon_core.fairness.groups import iter_groups

CURVE_COLUMNS = ["attribute", "grp", "bin", "predicted_std", "rmse", "pixels", "images"]


def calibration_curve(sums: pd.DataFrame, attributes: Sequence[str] = ()) -> pd.DataFrame:
    """Per group (everyone first) and std bin: mean predicted std, RMS error, pixels and images behind it.

    `sums`: rows of (image_id, bin, pixels, sum_std, sum_sq_error) with the images' demographics.
    Bins holding no pixel of a group are left out.
    """
    if sums.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    images = sums.drop_duplicates("image_id").sort_values("image_id").reset_index(drop=True)
    out = []
    for attribute, grp, mask in iter_groups(images, attributes):
        chosen = sums[sums.image_id.isin(images.image_id[mask])]
        pooled = chosen.groupby("bin")[["pixels", "sum_std", "sum_sq_error"]].sum()
        pooled = pooled[pooled.pixels > 0]
        out.append(pd.DataFrame({
            "attribute": attribute, "grp": grp, "bin": pooled.index.to_numpy(),
            "predicted_std": (pooled.sum_std / pooled.pixels).to_numpy(),
            "rmse": np.sqrt(pooled.sum_sq_error / pooled.pixels).to_numpy(),
            "pixels": pooled.pixels.to_numpy(), "images": int(mask.sum())}))
    return pd.concat(out, ignore_index=True).reindex(columns=CURVE_COLUMNS)
