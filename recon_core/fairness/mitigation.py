"""Mitigation effects: a variant against its base on the same units, every statistic a paired change.

The change in *added* bias is added(variant) − added(base) = [gap(variant) − gap(clean)] −
[gap(base) − gap(clean)] = gap(variant) − gap(base): the clean road cancels, so the summary of
the variant's cell with the base's cell as its reference (`summarise_cell(…, clean=base)`)
gives every change with intervals from one paired bootstrap (the same resampling plan, so
the same resampled units on both roads). Signed differences and overall task metrics get
p-values (bootstrap-normal; the overall AUROC change paired DeLong), folded gaps (EODD,
equal-opportunity gap, Dice gap) percentile intervals only, as everywhere in Tandem. The
price in image quality (PSNR, SSIM) is the paired mean change per unit with its test.
Metrics are named `<m>_change` (variant − base).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recon_core.fairness import bootstrap as bs
from recon_core.fairness import resampling
from recon_core.fairness.groups import OVERALL
from recon_core.fairness.summary import COLUMNS, DEFAULT_ATTRIBUTES, summarise_cell

SUFFIX = "_change"
"""A mitigation effect's metric is the base statistic's name + SUFFIX: variant − base, paired."""


def compare_to_base(variant: pd.DataFrame, base: pd.DataFrame, labels: Sequence[str], thresholds: dict[str, float], *,
                    attributes: Sequence[str] = DEFAULT_ATTRIBUTES, quality: Sequence[str] = ("psnr", "ssim"),
                    n_resamples: int = 1000, ci_level: float = 0.95, min_group_size: int = 10,
                    min_positives: int = 5, min_negatives: int = 5, seed: int = 0) -> pd.DataFrame:
    """Each statistic's change from the base's cell to the variant's at one level (`COLUMNS`, metrics `<m>_change`).

    `variant` and `base` hold the same units' stored rows (per image, or per patient) on the two roads.
    """
    table = summarise_cell(variant, labels, thresholds, clean=base, attributes=attributes, n_resamples=n_resamples,
                           ci_level=ci_level, min_group_size=min_group_size, min_positives=min_positives,
                           min_negatives=min_negatives, seed=seed)
    changes = table[table.metric.str.endswith("_added")].copy()
    changes["metric"] = changes.metric.str.removesuffix("_added") + SUFFIX
    v = variant.sort_values("image_id").reset_index(drop=True)
    b = base.sort_values("image_id").reset_index(drop=True)
    weights = resampling.plan(v, attributes, n_resamples, seed).astype(np.float64)
    rows = []
    for metric in quality:
        if metric not in v or metric not in b or v[metric].isna().all():
            continue
        difference = v[metric].to_numpy(dtype=float) - b[metric].to_numpy(dtype=float)
        difference = np.where(np.isfinite(difference), difference, np.nan)
        samples = bs.mean(difference, weights, np.ones(len(v), bool))
        low, high, p = bs.normal_test(samples, ci_level)
        rows.append(dict(metric=f"{metric}{SUFFIX}", label="", attribute=OVERALL[0], grp=OVERALL[1],
                         estimate=float(samples[0]), ci_low=low, ci_high=high, n=int(np.isfinite(difference).sum()),
                         n_pos=None, p_value=p, dropped=bs.dropped(samples)))
    return pd.concat([changes, pd.DataFrame(rows, columns=COLUMNS)], ignore_index=True)[COLUMNS]
