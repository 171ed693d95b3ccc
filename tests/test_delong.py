"""DeLong's AUROC variance: the area against scikit-learn, the variance against a worked example,
a brute-force kernel, interval coverage on simulated data, and the project's bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, norm
from sklearn.metrics import roc_auc_score

from recon_core.fairness import bootstrap, delong
from recon_core.seeding import numpy_rng


def group_difference_change(scores_clean: np.ndarray, scores_recon: np.ndarray, targets: np.ndarray,
                            in_group_a: np.ndarray, in_group_b: np.ndarray) -> tuple[float, float]:
    """[AUROC_recon(A) − AUROC_clean(A)] − [same for B] and its variance, from two paired DeLong differences.

    The change of a group gap by DeLong, as a reference for the bootstrap that Tandem uses for it:
    disjoint groups are independent, so their variances add.
    """
    in_group_a, in_group_b = np.asarray(in_group_a, dtype=bool), np.asarray(in_group_b, dtype=bool)
    if np.any(in_group_a & in_group_b):
        raise ValueError("group_difference_change needs disjoint groups (an image is in both)")
    change_a, var_a = delong.paired_difference(scores_recon[in_group_a], scores_clean[in_group_a],
                                               targets[in_group_a])
    change_b, var_b = delong.paired_difference(scores_recon[in_group_b], scores_clean[in_group_b],
                                               targets[in_group_b])
    return change_a - change_b, var_a + var_b

R = 2000  # bootstrap resamples: Monte-Carlo error of their SD ≈ 1/√(2R) ≈ 1.6 %


def brute_force(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Structural components from the O(m·n) kernel ψ(x, y) = 1 if x > y, ½ if equal, 0 below."""
    x, y = scores[:, targets == 1][..., :, None], scores[:, targets == 0][..., None, :]
    psi = (x > y) + 0.5 * (x == y)
    return psi.mean(axis=2), psi.mean(axis=1)  # V10 (per positive), V01 (per negative)


def correlated(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two correlated score sets on the same n cases (a shared latent term), b the weaker."""
    targets = (rng.random(n) < 0.4).astype(float)
    shared = rng.normal(size=n)
    a = 1.0 * targets + shared + 0.5 * rng.normal(size=n)
    b = 0.8 * targets + shared + 0.8 * rng.normal(size=n)
    return a, b, targets


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_equals_scikit_learn(ties):
    rng = np.random.default_rng(1)
    targets = (rng.random(300) < 0.3).astype(float)
    scores = rng.normal(size=300) + targets
    if ties:
        scores = np.round(scores, 1)  # many runs of equal scores, across the classes
        assert np.unique(scores).size < 100
    auc, _ = delong.auroc_variance(scores, targets)
    assert auc == pytest.approx(roc_auc_score(targets, scores), abs=1e-12)


def test_variance_of_a_worked_example():
    """Positives 0.8, 0.6, 0.4; negatives 0.5, 0.3, 0.6 (one tie across the classes at 0.6).

    V10 (share of negatives each positive beats, ties ½): 0.8 → 3/3, 0.6 → 2.5/3, 0.4 → 1/3.
    V01 (share of positives beating each negative):       0.5 → 2/3, 0.3 → 3/3, 0.6 → 1.5/3.
    AUROC = mean V10 = mean V01 = 13/18. Deviations from 13/18 in 18ths: V10 5, 2, −7 → S10 = 78/324/2
    = 13/108; V01 −1, 5, −4 → S01 = 42/324/2 = 7/108. Var = S10/3 + S01/3 = 20/324 = 5/81.
    """
    scores = np.array([0.8, 0.6, 0.4, 0.5, 0.3, 0.6])
    targets = np.array([1, 1, 1, 0, 0, 0], dtype=float)
    auc, var = delong.auroc_variance(scores, targets)
    assert auc == pytest.approx(13 / 18, abs=1e-12)
    assert var == pytest.approx(5 / 81, abs=1e-12)


def test_variance_and_covariance_match_the_brute_force_kernel():
    rng = np.random.default_rng(2)
    a, b, targets = correlated(rng, 150)
    a, b = np.round(a, 1), np.round(b, 1)  # with ties
    v10, v01 = brute_force(np.stack([a, b]), targets)
    m, n = v10.shape[1], v01.shape[1]
    cov = np.cov(v10) / m + np.cov(v01) / n
    auc_a, var_a = delong.auroc_variance(a, targets)
    assert (auc_a, var_a) == pytest.approx((v10[0].mean(), cov[0, 0]), rel=1e-12)
    diff, var_diff = delong.paired_difference(a, b, targets)
    assert diff == pytest.approx(v10[0].mean() - v10[1].mean(), abs=1e-12)
    assert var_diff == pytest.approx(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], rel=1e-10)
    assert cov[0, 1] > 0  # the correlated sets do share variance: the covariance term matters here


def test_ninety_five_percent_intervals_cover_the_true_auroc():
    """300 binormal datasets (100 + 100 cases, unit variances, shift d): true AUROC = Φ(d/√2)."""
    trials, d = 300, 1.0
    truth = norm.cdf(d / np.sqrt(2))
    lo, hi = binom.ppf(0.005, trials, 0.95), binom.isf(0.005, trials, 0.95)  # 99 % acceptance band
    assert binom.sf(lo - 1, trials, 0.85) <= 0.2  # a true coverage of 0.85 would pass with probability ≤ 0.2
    rng = np.random.default_rng(3)
    targets = np.r_[np.ones(100), np.zeros(100)]
    covered = 0
    for _ in range(trials):
        auc, var = delong.auroc_variance(rng.normal(size=200) + d * targets, targets)
        low, high = delong.interval(auc, var, 0.95, clip=True)
        covered += low <= truth <= high
    print(f"DeLong 95 % coverage: {covered}/{trials} = {covered / trials:.3f} (accepted {lo:.0f}–{hi:.0f})")
    assert lo <= covered <= hi


def test_standard_errors_agree_with_the_bootstrap():
    rng = np.random.default_rng(4)
    a, b, targets = correlated(rng, 400)
    in_a = rng.random(targets.size) < 0.5
    weights = bootstrap.resample_weights(targets.size, R, numpy_rng(4, "bootstrap", targets.size))
    everyone = np.ones(targets.size, bool)

    def auc_rows(scores, mask):
        return bootstrap.auroc(scores, targets, weights, mask)

    boot_a, boot_b = auc_rows(a, everyone), auc_rows(b, everyone)
    boot_change = (auc_rows(a, in_a) - auc_rows(b, in_a)) - (auc_rows(a, ~in_a) - auc_rows(b, ~in_a))
    cases = {
        "auroc": (boot_a, delong.auroc_variance(a, targets)),
        "paired difference": (boot_a - boot_b, delong.paired_difference(a, b, targets)),
        "group difference change": (boot_change, group_difference_change(b, a, targets, in_a, ~in_a)),
    }
    for name, (rows, (estimate, variance)) in cases.items():
        assert rows[0] == pytest.approx(estimate, abs=1e-6)  # row 0 is the point estimate (float32 weights)
        ratio = rows[1:].std(ddof=1) / np.sqrt(variance)
        print(f"{name}: bootstrap SE / DeLong SE = {ratio:.3f}")
        assert ratio == pytest.approx(1, abs=0.10), name


def test_nan_targets_are_ignored():
    rng = np.random.default_rng(5)
    a, b, targets = correlated(rng, 120)
    unknown = targets.copy()
    unknown[::7] = np.nan
    kept = ~np.isnan(unknown)
    assert delong.auroc_variance(a, unknown) == delong.auroc_variance(a[kept], targets[kept])
    assert delong.paired_difference(a, b, unknown) == delong.paired_difference(a[kept], b[kept], targets[kept])


def test_a_missing_class_gives_nan():
    scores = np.linspace(0, 1, 10)
    for targets in (np.ones(10), np.zeros(10), np.r_[np.ones(5), np.full(5, np.nan)]):
        assert np.isnan(delong.auroc_variance(scores, targets)).all()
        assert np.isnan(delong.paired_difference(scores, scores[::-1], targets)).all()
    in_a = np.arange(10) < 5
    change = group_difference_change(scores, scores[::-1], np.r_[np.ones(5), 0, 1, 0, 1, 0], in_a, ~in_a)
    assert np.isnan(change).all()  # group A has positives only


def test_identical_scores_differ_by_zero_with_p_one():
    rng = np.random.default_rng(6)
    a, _, targets = correlated(rng, 100)
    diff, var = delong.paired_difference(a, a.copy(), targets)
    assert (diff, var) == (0.0, 0.0)
    assert delong.p_value(diff, var) == 1.0
    assert delong.interval(diff, var, 0.95) == (0.0, 0.0)
    in_a = rng.random(100) < 0.5
    assert group_difference_change(a, a.copy(), targets, in_a, ~in_a) == (0.0, 0.0)


def test_p_value_and_interval():
    assert delong.p_value(1.96, 1.0) == pytest.approx(0.05, abs=1e-4)
    assert delong.p_value(-1.96, 1.0) == pytest.approx(0.05, abs=1e-4)
    assert np.isnan(delong.p_value(0.1, 0.0))  # a difference with no variance: no test
    assert np.isnan(delong.p_value(np.nan, 0.01))
    assert delong.interval(0.5, 0.01, 0.95) == pytest.approx((0.5 - 0.196, 0.5 + 0.196), abs=1e-3)
    assert delong.interval(0.95, 0.01, 0.95, clip=True) == pytest.approx((0.95 - 0.196, 1.0), abs=1e-3)
    assert delong.interval(-0.1, 0.01, 0.95)[0] == pytest.approx(-0.296, abs=1e-3)  # differences stay unclipped
    assert np.isnan(delong.interval(0.5, np.nan, 0.95)).all()
    with pytest.raises(ValueError):
        delong.interval(0.5, 0.01, 1.0)


def test_group_difference_change_needs_disjoint_groups():
    scores, targets = np.linspace(0, 1, 10), np.tile([0.0, 1.0], 5)
    with pytest.raises(ValueError, match="disjoint"):
        group_difference_change(scores, scores, targets, np.ones(10, bool), np.arange(10) < 3)
