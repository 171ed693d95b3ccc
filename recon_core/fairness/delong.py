"""DeLong's variance for AUROC: one AUROC (per-group intervals) and a paired difference (the overall change).

DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated receiver
operating characteristic curves: a nonparametric approach", Biometrics 44(3):837–845. The AUROC is the
Mann–Whitney statistic; each positive's share of negatives it outranks (V10) and each negative's share
of positives that outrank it (V01) are its structural components, and

    Var(AUROC) = S10 / m + S01 / n        (m positives, n negatives, S = sample covariance, ddof 1).

For several score sets on the same cases S10 and S01 are covariance matrices, so a paired difference
gets Var_a + Var_b − 2·Cov_ab. The components come from midranks as in Sun & Xu (2014), "Fast
implementation of DeLong's algorithm for comparing the areas under correlated receiver operating
characteristic curves", IEEE Signal Processing Letters 21(11):1389–1393: O(N log N), not O(m·n).

Hand-written because neither scikit-learn (roc_auc_score gives the area only) nor scipy has a DeLong
variance, and the closed form is a few lines over ranks. tests/test_delong.py checks the area against
scikit-learn, the variance against a worked example, a brute-force kernel, interval coverage, and
recon_core.fairness.bootstrap's standard errors.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata


def _components(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(k,) AUROCs and the (k, m) / (k, n) structural components of (k, N) scores; None if a class is missing.

    Targets equal to 1 are positives, other finite targets negatives (as in bootstrap.auroc); NaN
    targets are dropped. Midranks count ties one half, as scikit-learn does.
    """
    targets = np.asarray(targets, dtype=np.float64)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    valid = ~np.isnan(targets)
    pos = valid & (targets == 1)
    neg = valid & (targets != 1)
    m, n = int(pos.sum()), int(neg.sum())
    if m == 0 or n == 0:
        return None
    x, y = scores[:, pos], scores[:, neg]
    combined = rankdata(np.concatenate([x, y], axis=1), method="average", axis=1)
    tx = rankdata(x, method="average", axis=1)  # midranks within the positives
    ty = rankdata(y, method="average", axis=1)  # midranks within the negatives
    v10 = (combined[:, :m] - tx) / n  # per positive: share of negatives it outranks (ties ½)
    v01 = 1.0 - (combined[:, m:] - ty) / m  # per negative: share of positives that outrank it
    auc = v10.mean(axis=1)
    return auc, v10, v01


def _variance(v10: np.ndarray, v01: np.ndarray) -> float:
    """DeLong variance S10/m + S01/n of one row of components (NaN when a class has a single case)."""
    m, n = v10.size, v01.size
    if m < 2 or n < 2:
        return float("nan")
    return float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)


def auroc_variance(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """AUROC (ties ½, as sklearn's roc_auc_score) and its DeLong variance; (nan, nan) if a class is missing."""
    parts = _components(scores, targets)
    if parts is None:
        return float("nan"), float("nan")
    auc, v10, v01 = parts
    return float(auc[0]), _variance(v10[0], v01[0])


def paired_difference(scores_a: np.ndarray, scores_b: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """AUROC(a) − AUROC(b) on the same cases and its DeLong variance Var_a + Var_b − 2·Cov_ab.

    The covariance is that of the two score sets' structural components; the sum is computed as the
    variance of the component differences (the same number by bilinearity, and never negative by
    rounding: identical scores give exactly 0).
    """
    parts = _components(np.stack([np.asarray(scores_a), np.asarray(scores_b)]), targets)
    if parts is None:
        return float("nan"), float("nan")
    auc, v10, v01 = parts
    return float(auc[0] - auc[1]), _variance(v10[0] - v10[1], v01[0] - v01[1])


def interval(estimate: float, variance: float, level: float, *, clip: bool = False) -> tuple[float, float]:
    """Normal (Wald) interval estimate ± z·√variance; clip=True bounds it to [0, 1] (an AUROC, not a difference)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if not (np.isfinite(estimate) and np.isfinite(variance)) or variance < 0:
        return float("nan"), float("nan")
    half = float(norm.ppf(0.5 + level / 2)) * float(np.sqrt(variance))
    lo, hi = estimate - half, estimate + half
    if clip:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return float(lo), float(hi)


def p_value(estimate: float, variance: float) -> float:
    """Two-sided normal p for 'estimate = 0'; zero variance gives 1 for a zero estimate, else NaN (undefined)."""
    if not (np.isfinite(estimate) and np.isfinite(variance)) or variance < 0:
        return float("nan")
    if variance == 0:
        return 1.0 if estimate == 0 else float("nan")
    return float(2 * norm.sf(abs(estimate) / np.sqrt(variance)))
