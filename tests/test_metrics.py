"""Per-image metrics against scikit-image, set metrics and vectorised bootstrap against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import PSNRMetric, SSIMMetric
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import roc_auc_score

from recon_core.fairness import bootstrap as bs
from recon_core.metrics.image_quality import image_quality


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    clean = rng.random((3, 1, 48, 48)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, [[[[0.02]]], [[[0.05]]], [[[0.1]]]], clean.shape), 0, 1).astype(np.float32)
    return clean, noisy


def test_image_metrics_match_scikit_image(pair):
    clean, noisy = pair
    got = image_quality(torch.from_numpy(noisy), torch.from_numpy(clean))
    for i in range(3):
        c, n = clean[i, 0].astype(float), noisy[i, 0].astype(float)
        assert got["psnr"][i].item() == pytest.approx(peak_signal_noise_ratio(c, n, data_range=1.0), abs=1e-3)
        ref_ssim = structural_similarity(c, n, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False)
        assert got["ssim"][i].item() == pytest.approx(ref_ssim, abs=1e-3)
        assert got["nmse"][i].item() == pytest.approx(mean_squared_error(c, n) / np.mean(c**2), rel=1e-4)
    assert got["psnr"][0] > got["psnr"][1] > got["psnr"][2]  # one value per image, ordered by noise


def test_ssim_and_psnr_equal_monai_metrics():
    """The separable window and the written-out PSNR give MONAI's values (the definitions stored results used)."""
    rng = np.random.default_rng(1)
    clean = torch.from_numpy(rng.random((4, 1, 64, 64)).astype(np.float32))
    noisy = (clean + torch.from_numpy(rng.normal(0, 0.1, clean.shape).astype(np.float32))).clamp(0, 1)
    monai_ssim = SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")(noisy, clean).reshape(-1)
    got = image_quality(noisy, clean)
    torch.testing.assert_close(got["ssim"], monai_ssim, rtol=0, atol=2e-6)
    torch.testing.assert_close(got["psnr"], PSNRMetric(max_val=1.0, reduction="none")(noisy, clean).reshape(-1),
                               rtol=0, atol=1e-5)
    assert image_quality(clean, clean)["psnr"].isinf().all()  # an exact copy


def test_auroc_and_rates():
    targets = np.array([0, 0, 1, 1, np.nan, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.9, 0.5, 0.8])
    known = ~np.isnan(targets)
    everyone, point = np.ones(6, bool), np.ones((1, 6), np.float32)  # the point-estimate row
    assert bs.auroc(scores, targets, point, everyone)[0] == pytest.approx(roc_auc_score(targets[known], scores[known]))
    tpr = bs.rate(scores >= 0.5, targets, True, point, everyone)[0]
    fpr = bs.rate(scores >= 0.5, targets, False, point, everyone)[0]
    assert tpr == pytest.approx(2 / 3) and fpr == pytest.approx(1 / 2)
    one_class = bs.auroc(np.array([0.2, 0.3]), np.array([1.0, 1.0]), np.ones((1, 2), np.float32), np.ones(2, bool))
    assert np.isnan(one_class[0])  # one class → NaN, no crash


def test_vectorised_bootstrap_auroc_matches_sklearn_on_same_indices():
    rng = np.random.default_rng(1)
    n = 300
    targets = (rng.random(n) < 0.3).astype(float)
    targets[rng.random(n) < 0.05] = np.nan
    scores = np.round(targets * 0.3 + rng.random(n), 2)  # rounding creates ties
    group = rng.random(n) < 0.5
    idx = np.concatenate([np.arange(n)[None], rng.integers(0, n, size=(50, n))])
    weights = bs.indices_to_weights(idx)
    for case_scores in (scores, scores + rng.random(n) * 1e-3):  # with ties, then without
        fast = bs.auroc(case_scores, targets, weights, group)
        for r in range(idx.shape[0]):
            sel = idx[r][group[idx[r]] & ~np.isnan(targets[idx[r]])]
            assert fast[r] == pytest.approx(roc_auc_score(targets[sel], case_scores[sel]), abs=1e-9)


def test_vectorised_rates_and_mean_match_loops():
    rng = np.random.default_rng(2)
    n = 120
    targets = (rng.random(n) < 0.4).astype(float)
    decisions = rng.random(n) < 0.5
    values = rng.normal(size=n)
    mask = rng.random(n) < 0.6
    weights = bs.resample_weights(n, 20, rng)
    tpr = bs.rate(decisions, targets, True, weights, mask)
    ppv = bs.ppv(decisions, targets, weights, mask)
    means = bs.mean(values, weights, mask)
    for r, picked in enumerate(bs.weights_to_indices(weights)):
        sel = picked[mask[picked]]
        pos = sel[targets[sel] == 1]
        assert tpr[r] == pytest.approx(decisions[pos].mean())
        assert ppv[r] == pytest.approx(targets[sel[decisions[sel]]].mean())
        assert means[r] == pytest.approx(values[sel].mean())


def test_calibration_error_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    scores = rng.random(500)
    targets = (rng.random(500) < scores ** 2).astype(float)  # over-confident scores
    weights = bs.resample_weights(500, 5, rng)
    ece = bs.calibration_error(scores, targets, weights, np.ones(500, bool))
    for r, picked in enumerate(bs.weights_to_indices(weights)):
        s, y = scores[picked], targets[picked]
        bins = np.minimum((s * 10).astype(int), 9)
        direct = sum(np.mean(bins == b) * abs(s[bins == b].mean() - y[bins == b].mean())
                     for b in range(10) if np.any(bins == b))
        assert ece[r] == pytest.approx(direct)
    assert ece[0] > 0.05


def test_normal_test_interval_and_p_agree():
    """CI excludes 0 exactly when p < α; k contrasts widen the CI and multiply p; no variance: p = 1 at 0."""
    rng = np.random.default_rng(0)
    for centre in (0.0, 0.05, 0.1, 0.2):
        samples = np.concatenate([[centre], rng.normal(centre, 0.05, 999)])
        lo, hi, p = bs.normal_test(samples, 0.95)
        assert (lo > 0 or hi < 0) == (p < 0.05)
        lo3, hi3, p3 = bs.normal_test(samples, 0.95, contrasts=3)
        assert lo3 < lo and hi3 > hi and p3 == pytest.approx(min(1.0, 3 * p))
    assert bs.normal_test(np.zeros(100), 0.95) == (0.0, 0.0, 1.0)
    assert all(np.isnan(bs.normal_test(np.array([np.nan, 1.0, 2.0]), 0.95)))
    assert bs.normal_test(np.full(10, 0.3), 0.95)[2] != bs.normal_test(np.full(10, 0.3), 0.95)[2]  # NaN: no test
    # not floored at 2/(R + 1) like a tail count: a family of many tests can reach significance
    assert bs.normal_test(np.concatenate([[0.3], rng.normal(0.3, 0.05, 999)]), 0.95)[2] < 1e-6


def test_stratified_weights_keep_each_stratum_and_draw_clusters_whole():
    units = np.array([0, 0, 1, 2, 2, 2, 3])  # 4 units, unit 2 has three rows
    strata = np.array([0, 0, 1, 1])
    weights = bs.stratified_weights(units, strata, 200, np.random.default_rng(1))
    assert (weights[0] == 1).all()
    unit_weights = weights[1:, [0, 2, 3, 6]]  # one row of each unit
    np.testing.assert_array_equal(unit_weights[:, :2].sum(1), 2)  # stratum 0 keeps its two units
    np.testing.assert_array_equal(unit_weights[:, 2:].sum(1), 2)
    np.testing.assert_array_equal(weights[:, 3], weights[:, 5])  # a unit's rows are drawn together
    assert len(np.unique(unit_weights[:, 0])) == 3  # 0, 1 or 2 draws


def test_identity_row_and_spread():
    weights = bs.resample_weights(5, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(weights[0], np.ones(5))
    assert (weights[1:].sum(1) == 5).all()
    per_group = np.array([[0.5, np.nan, 0.2], [0.8, 0.4, np.nan], [0.6, np.nan, np.nan]])
    gap = bs.spread(per_group)
    assert gap[0] == pytest.approx(0.3) and np.isnan(gap[1]) and np.isnan(gap[2])
    lo, hi = bs.interval(np.array([np.nan, np.nan]), 0.95)
    assert np.isnan(lo) and np.isnan(hi)
