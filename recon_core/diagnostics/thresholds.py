"""Operating thresholds chosen once on clean validation images, then held fixed everywhere."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve


class ThresholdError(ValueError):
    """A label whose validation data cannot fix an operating point."""


def equal_error_threshold(targets: np.ndarray, scores: np.ndarray, label: str) -> float:
    """Threshold where sensitivity ≈ specificity on the ROC curve (the reference study's choice)."""
    known = ~np.isnan(targets)
    y, s = targets[known], scores[known]
    if len(np.unique(y)) < 2:
        raise ThresholdError(f"label {label!r}: the validation split holds only class(es) "
                             f"{np.unique(y).tolist()}; a threshold needs positives and negatives")
    fpr, tpr, thresholds = roc_curve(y, s)
    best = int(np.argmin(np.abs(tpr - (1 - fpr))))
    return float(min(thresholds[best], 1.0))


def choose_thresholds(targets: np.ndarray, scores: np.ndarray, labels: tuple[str, ...]) -> dict[str, float]:
    """One equal-error threshold per label, from (N, L) targets and scores."""
    return {label: equal_error_threshold(targets[:, j], scores[:, j], label) for j, label in enumerate(labels)}
