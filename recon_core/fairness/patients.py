"""Slice rows → patient rows, so every MRI statistic treats the patient as the unit.

Resampling patient rows in the bootstrap takes all of a patient's slices together. A patient's
grade score is the median of its slice scores (as the reference study); its Dice, HD95, PSNR,
SSIM and NMSE are means over its slices (HD95 skipping slices where it is undefined), and
`psnr_volume`/`nmse_volume` are the volume's own PSNR and NMSE over all its voxels (fastMRI
reports these per volume).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from recon_core.metrics import catalogue
from recon_core.metrics.image_quality import volume_quality

DEMOGRAPHICS = ("sex", "age", "age_band")


def patient_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per subject_id from per-slice rows (wide: score:/target: columns, metrics, demographics).

    `image_id` of the result is the subject id; `n_slices` counts the slices behind each row.
    """
    if rows.empty:
        return rows
    per = rows.groupby("subject_id", sort=True)
    varying = [c for c in (*DEMOGRAPHICS, *[c for c in rows if c.startswith("target:")])
               if c in rows and (per[c].nunique(dropna=False) > 1).any()]
    if varying:
        raise ValueError(f"patient rows: column {varying[0]!r} differs between slices of one patient")
    out = per[[c for c in rows if c in DEMOGRAPHICS or c.startswith("target:")]].first()
    scores = [c for c in rows if c.startswith("score:")]
    out[scores] = per[scores].median()
    means = [c for c in catalogue.IMAGE_COLUMNS
             if c in rows and catalogue.BY_NAME[c].kind in ("quality", "segmentation", "uncertainty")]
    with warnings.catch_warnings():  # all-NaN HD95 of a patient stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        out[means] = per[means].agg(lambda v: np.nanmean(v) if v.notna().any() else np.nan)
    if {"mse", "signal"} <= set(rows):
        for name, values in volume_quality(per["mse"].mean(), per["signal"].mean()).items():
            out[name] = values
    extra = [c for c in rows if c not in out and c not in ("image_id", "subject_id", *catalogue.IMAGE_COLUMNS)]
    for column in extra:  # further attributes (constant per patient)
        out[column] = per[column].first()
    out["n_slices"] = per.size()
    out = out.reset_index()
    out.insert(0, "image_id", out["subject_id"])
    return out
