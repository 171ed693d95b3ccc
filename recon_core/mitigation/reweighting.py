"""Group-balanced resampling: training images drawn with probability inversely proportional to their group's size."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recon_core.mitigation.attributes import SensitiveAttribute


def balanced_weights(rows: pd.DataFrame, attribute: SensitiveAttribute) -> np.ndarray:
    """Each row's draw probability ∝ 1 / |its group|, summing to 1: every group is drawn equally often on average."""
    codes = attribute.codes(rows)
    sizes = np.bincount(codes, minlength=len(attribute.groups)).astype(np.float64)
    weights = 1.0 / sizes[codes]
    return weights / weights.sum()
