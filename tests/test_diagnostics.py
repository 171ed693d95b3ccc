"""Operating thresholds: sensitivity = specificity on validation data; one class is an error."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from recon_core.diagnostics import ThresholdError, choose_thresholds


def test_equal_error_threshold_balances_sensitivity_and_specificity():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(float)
    scores = np.clip(0.3 * y + rng.normal(0.4, 0.15, y.size), 0, 1)
    threshold = choose_thresholds(y[:, None], scores[:, None], ("a",))["a"]
    decisions = scores >= threshold
    sensitivity = decisions[y == 1].mean()
    specificity = 1 - decisions[y == 0].mean()
    assert sensitivity == pytest.approx(specificity, abs=0.02)
    fpr, tpr, _ = roc_curve(y, scores)
    assert abs(sensitivity - specificity) <= np.min(np.abs(tpr - (1 - fpr))) + 0.01


def test_unknown_labels_are_ignored_and_one_class_is_an_error():
    y = np.array([[1.0], [np.nan], [0.0], [1.0], [0.0]])
    s = np.array([[0.9], [0.1], [0.2], [0.8], [0.3]])
    assert 0.3 < choose_thresholds(y, s, ("a",))["a"] <= 0.8
    with pytest.raises(ThresholdError, match=r"label 'b'.*only class"):
        choose_thresholds(np.array([[1.0], [1.0], [np.nan]]), np.array([[0.2], [0.4], [0.5]]), ("b",))
