"""Vectorised bootstrap statistics over a matrix of resample weights.

A resample drawn with replacement is a vector of multiplicities (how often each image was
drawn); row 0 of every weight matrix is all ones (the point estimate) and rows 1… are the
resamples. Statistics then become matrix–vector products, and AUROC a weighted Mann–Whitney
count over scores sorted once, instead of one sort per resample.

Hand-written because scikit-learn scores one sample per call: a Python loop over 1000
resamples × groups × labels would dominate every sweep (benchmarks/bootstrap_speed.py
measures both on the same resamples; tests check agreement with scikit-learn).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def indices_to_weights(idx: np.ndarray) -> np.ndarray:
    """(R, n) multiplicities from (R, n) resample indices: the same resamples, as weights.

    float32 holds every count exactly (they never exceed n); sums that could lose precision
    are accumulated in float64.
    """
    rows, n = idx.shape
    flat = (np.arange(rows)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float32)


def weights_to_indices(weights: np.ndarray) -> list[np.ndarray]:
    """The image indices of each resample (each image repeated as often as it was drawn)."""
    return [np.repeat(np.arange(weights.shape[1]), row.astype(np.int64)) for row in weights]


def resample_weights(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(1 + n_resamples, n) weights: all ones (the point estimate), then resamples with replacement."""
    idx = rng.integers(0, n, size=(n_resamples, n))
    return np.concatenate([np.ones((1, n), np.float32), indices_to_weights(idx)])


def stratified_weights(units: np.ndarray, strata: np.ndarray, n_resamples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """(1 + n_resamples, n_rows) row weights of a stratified cluster bootstrap; row 0 all ones.

    `units` (n_rows,) gives each row's resampling unit as a code 0…U−1 (a subject: all its images
    are drawn together); `strata` (U,) gives each unit's stratum. Within every stratum its units
    are drawn with replacement, as many as it has, so each stratum keeps its size in every
    resample; a row weighs as often as its unit was drawn. Hand-written: scipy.stats.bootstrap
    draws independent observations only (no strata, no clusters) and returns no weight matrix
    that every cell of a run can share for pairing.
    """
    n_units = len(strata)
    counts = np.zeros((n_resamples, n_units), np.float32)
    rows = np.arange(n_resamples)[:, None]
    for stratum in np.unique(strata):  # a loop over strata, never over resamples
        members = np.flatnonzero(strata == stratum)
        drawn = members[rng.integers(0, members.size, size=(n_resamples, members.size))]
        np.add.at(counts, (np.broadcast_to(rows, drawn.shape), drawn), 1)
    return np.concatenate([np.ones((1, len(units)), np.float32), counts[:, units]])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)  # float32 quotients of equal counts
    with np.errstate(invalid="ignore", divide="ignore"):                  # must compare equal exactly
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def mean(values: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(R,) weighted mean of values over the masked rows (NaN values ignored)."""
    use = mask & ~np.isnan(values)
    total = weights.astype(np.float64) @ np.where(use, values, 0.0) if weights.dtype != np.float64 else \
        weights @ np.where(use, values, 0.0)
    return _ratio(total, weights @ use.astype(weights.dtype))


def rate(decisions: np.ndarray, targets: np.ndarray, positive: bool, weights: np.ndarray,
         mask: np.ndarray) -> np.ndarray:
    """(R,) TPR (positive=True) or FPR (positive=False) within the masked rows."""
    cls = (mask & (targets == (1 if positive else 0))).astype(weights.dtype)
    return _ratio(weights @ (cls * decisions), weights @ cls)  # integer counts: exact in float32


def ppv(decisions: np.ndarray, targets: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(R,) positive predictive value within the masked rows (unknown labels excluded)."""
    flagged = (mask & decisions & ~np.isnan(targets)).astype(weights.dtype)
    return _ratio(weights @ (flagged * (targets == 1)), weights @ flagged)


def auroc(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(R,) AUROC within the masked rows: weighted Mann–Whitney U, ties counted one half."""
    valid = np.flatnonzero(mask & ~np.isnan(targets))
    if valid.size == 0:
        return np.full(weights.shape[0], np.nan)
    order = valid[np.argsort(scores[valid], kind="stable")]
    is_pos = (targets[order] == 1).astype(weights.dtype)
    n_pos = weights @ np.bincount(order, is_pos, weights.shape[1]).astype(weights.dtype)
    n_neg = weights @ np.bincount(order, 1 - is_pos, weights.shape[1]).astype(weights.dtype)
    w = weights[:, order]
    pos = w * is_pos
    neg = w - pos
    starts = np.concatenate([[0], np.flatnonzero(np.diff(scores[order])) + 1])
    if starts.size < order.size:  # tied scores: pool each run of equal scores, ties count one half
        pos, neg = np.add.reduceat(pos, starts, axis=1), np.add.reduceat(neg, starts, axis=1)
        below = np.cumsum(neg, axis=1) - 0.5 * neg
    else:  # no ties: a positive's own column holds no negatives
        below = np.cumsum(neg, axis=1)
    wins = (pos * below).sum(1, dtype=np.float64)  # exact integer (or half-integer) counts
    return _ratio(wins, n_pos.astype(np.float64) * n_neg)


def calibration_error(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray, mask: np.ndarray,
                      bins: int = 10) -> np.ndarray:
    """(R,) expected calibration error: Σ_b (n_b / n)·|mean score − observed rate| over equal-width bins."""
    use = mask & ~np.isnan(targets)
    in_bin = np.zeros((len(scores), bins))
    in_bin[np.arange(len(scores)), np.minimum((scores * bins).astype(int), bins - 1)] = use
    w = weights if weights.dtype == np.float64 else weights.astype(np.float64)
    count = w @ in_bin  # (R, bins): every bin in one product, never a loop over resamples
    gap = np.abs(w @ (in_bin * (scores - np.nan_to_num(targets))[:, None]))  # |Σ(score − y)| = n_b·|mean − rate|
    return _ratio(np.where(count > 0, gap, 0.0).sum(1), w @ use.astype(np.float64))


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


def normal_test(samples: np.ndarray, level: float, contrasts: int = 1) -> tuple[float, float, float]:
    """(CI low, CI high, p) for 'the statistic = 0' from one bootstrap distribution (row 0 the estimate).

    Bootstrap-normal: SE = SD of the resamples, CI = estimate ± z·SE, p = 2Φ(−|estimate| / SE).
    CI and p come from the same numbers, so the CI excludes 0 exactly when p < 1 − level, and
    p is not floored at 2/(R + 1) as a tail count is: a family of many tests can reach
    significance with 1,000 resamples. With `contrasts` = k > 1 the interval is simultaneous
    over k contrasts (Bonferroni: level 1 − α/k) and p is adjusted to match (min(1, k·p)).
    A zero SE gives the point as its interval and p = 1 when the estimate is 0 (nothing moved),
    NaN otherwise.
    """
    estimate = float(samples[0])
    rest = samples[1:][~np.isnan(samples[1:])]
    if np.isnan(estimate) or rest.size < 2:
        return float("nan"), float("nan"), float("nan")
    se = float(np.std(rest, ddof=1))
    if se == 0:
        return estimate, estimate, 1.0 if estimate == 0 else float("nan")
    z = float(norm.ppf(1 - (1 - level) / (2 * contrasts)))
    p = min(1.0, contrasts * 2 * float(norm.sf(abs(estimate) / se)))
    return estimate - z * se, estimate + z * se, p


def dropped(samples: np.ndarray) -> float:
    """Share of resamples (rows 1…) with no value although the estimate has one (e.g. no positives drawn)."""
    if np.isnan(samples[0]) or samples.size < 2:
        return float("nan")
    return float(np.mean(np.isnan(samples[1:])))
