"""Vectorised bootstrap statistics over a matrix of resample indices.

Row 0 of every index matrix is the identity (the point estimate); rows 1… are resamples.
Hand-written because scikit-learn scores one sample per call: a Python loop over 1000
resamples × groups × labels would dominate every sweep. Each function agrees with its
scikit-learn counterpart on the same indices (tested).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def resample_indices(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(1 + n_resamples, n) indices: the identity row, then resamples with replacement."""
    identity = np.arange(n)[None]
    return np.concatenate([identity, rng.integers(0, n, size=(n_resamples, n))])


def mean(values: np.ndarray, idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(R,) mean of values over the masked rows of each resample (NaN values ignored)."""
    v, w = values[idx], mask[idx] & ~np.isnan(values[idx])
    count = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(w, v, 0).sum(1) / count, np.nan)


def auroc(scores: np.ndarray, targets: np.ndarray, idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(R,) AUROC (Mann–Whitney U, ties averaged) within the masked rows of each resample."""
    t = targets[idx]
    valid = mask[idx] & ~np.isnan(t)
    # Excluded rows rank above every valid score, so valid ranks are exactly their own ranks.
    ranks = rankdata(np.where(valid, scores[idx], np.inf), axis=1)
    pos, neg = valid & (t == 1), valid & (t == 0)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    u = np.where(pos, ranks, 0).sum(1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def rate(decisions: np.ndarray, targets: np.ndarray, positive: bool, idx: np.ndarray,
         mask: np.ndarray) -> np.ndarray:
    """(R,) TPR (positive=True) or FPR (positive=False) within the masked rows of each resample."""
    t = targets[idx]
    cls = mask[idx] & (t == (1 if positive else 0))
    count = cls.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (decisions[idx] & cls).sum(1) / count, np.nan)


def spread(per_group: np.ndarray) -> np.ndarray:
    """(R,) max − min across groups (axis 0); NaN unless at least two groups have values."""
    valid = ~np.isnan(per_group)
    enough = valid.sum(0) >= 2
    hi = np.where(valid, per_group, -np.inf).max(0)
    lo = np.where(valid, per_group, np.inf).min(0)
    return np.where(enough, hi - lo, np.nan)


def interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the bootstrap rows (NaN rows dropped; NaN if none are left)."""
    finite = samples[~np.isnan(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)
