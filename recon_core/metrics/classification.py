"""Set-level classification metrics at a fixed threshold (reference implementations via scikit-learn)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(targets: np.ndarray, scores: np.ndarray) -> float:
    """AUROC over known labels; NaN (not an error) when only one class is present."""
    known = ~np.isnan(targets)
    y = targets[known]
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, scores[known]))


def rates(targets: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TPR, FPR) at a threshold; each NaN when its denominator class is absent."""
    known = ~np.isnan(targets)
    y, decision = targets[known], scores[known] >= threshold
    pos, neg = y == 1, y == 0
    tpr = decision[pos].mean() if pos.any() else float("nan")
    fpr = decision[neg].mean() if neg.any() else float("nan")
    return float(tpr), float(fpr)
