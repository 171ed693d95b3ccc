"""Cell summaries: per-group metrics, gaps, one-class groups, small groups, paired added bias."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix

from recon_core.fairness import GroupError, summarise_cell


def rows_frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "image_id": [f"i{i:03d}" for i in range(n)],
        "sex": np.where(np.arange(n) % 2 == 0, "F", "M"),
        "age_band": np.where(np.arange(n) < n // 2, "<60", "60+"),
        "psnr": rng.normal(30, 1, n), "ssim": rng.random(n), "nmse": rng.random(n),
    })
    for label in ("a", "b"):
        target = (rng.random(n) < 0.4).astype(float)
        frame[f"target:{label}"] = target
        frame[f"score:{label}"] = np.clip(0.35 * target + rng.random(n) * 0.65, 0, 1)
    return frame


def pick(summary, metric, label="", attribute="all", grp="all"):
    row = summary[(summary.metric == metric) & (summary.label == label) & (summary.attribute == attribute)
                  & (summary.grp == grp)]
    assert len(row) == 1, (metric, label, attribute, grp)
    return row.iloc[0]


def test_group_rates_and_gaps_match_direct_computation():
    frame = rows_frame()
    thresholds = {"a": 0.5, "b": 0.45}
    summary = summarise_cell(frame, ["a", "b"], thresholds, n_resamples=100)
    tprs, fprs = {}, {}
    for sex in ("F", "M"):
        part = frame[frame.sex == sex]
        tn, fp, fn, tp = confusion_matrix(part["target:a"], part["score:a"] >= 0.5).ravel()
        tprs[sex], fprs[sex] = tp / (tp + fn), fp / (fp + tn)
        assert pick(summary, "tpr", "a", "sex", sex).estimate == pytest.approx(tprs[sex])
    eo = abs(tprs["F"] - tprs["M"])
    assert pick(summary, "eo_gap", "a", "sex", "").estimate == pytest.approx(eo)
    eodd = 0.5 * (eo + abs(fprs["F"] - fprs["M"]))
    assert pick(summary, "eodd", "a", "sex", "").estimate == pytest.approx(eodd)
    psnr = pick(summary, "psnr")
    assert psnr.estimate == pytest.approx(frame.psnr.mean())
    assert psnr.ci_low < psnr.estimate < psnr.ci_high


def test_one_class_group_gives_nan_and_count_not_crash():
    frame = rows_frame()
    frame.loc[frame.sex == "F", "target:a"] = 0.0  # no positives among women for label a
    summary = summarise_cell(frame, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=50)
    row = pick(summary, "auroc", "a", "sex", "F")
    assert np.isnan(row.estimate) and row.n == 100 and row.n_pos == 0
    assert np.isnan(pick(summary, "tpr", "a", "sex", "F").estimate)
    assert not np.isnan(pick(summary, "auroc", "b", "sex", "F").estimate)


def test_small_groups_report_size_not_numbers():
    frame = rows_frame(60)
    frame.loc[:4, "age_band"] = "90+"
    summary = summarise_cell(frame, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=50, min_group_size=10)
    row = pick(summary, "auroc", "a", "age_band", "90+")
    assert np.isnan(row.estimate) and row.n == 5


def test_added_is_zero_when_reconstruction_changes_nothing():
    frame = rows_frame()
    summary = summarise_cell(frame, ["a", "b"], {"a": 0.5, "b": 0.5}, clean=frame.copy(), n_resamples=100)
    added = summary[summary.metric.str.endswith("_added")].dropna(subset=["estimate"])
    assert len(added) > 0
    assert np.allclose(added[["estimate", "ci_low", "ci_high"]].to_numpy(), 0)


def test_paired_added_interval_is_tighter_than_unpaired_difference():
    clean = rows_frame(300, seed=1)
    recon = clean.copy()
    rng = np.random.default_rng(5)
    recon["score:a"] = np.clip(recon["score:a"] + rng.normal(0, 0.05, len(recon)), 0, 1)
    summary = summarise_cell(recon, ["a", "b"], {"a": 0.5, "b": 0.5}, clean=clean, n_resamples=300)
    added = pick(summary, "auroc_added", "a")
    total = pick(summary, "auroc", "a")
    assert (added.ci_high - added.ci_low) < 0.5 * (total.ci_high - total.ci_low)


def test_missing_attribute_is_named():
    with pytest.raises(GroupError, match="attribute 'race' is not a column"):
        summarise_cell(rows_frame(), ["a", "b"], {"a": 0.5, "b": 0.5}, attributes=("race",), n_resamples=10)


def test_benjamini_hochberg_against_a_hand_checked_example():
    from recon_core.fairness.multiple_testing import q_values

    # p sorted: 0.01, 0.02, 0.03, 0.04, 0.2 (m = 5): raw p·m/rank = 0.05, 0.05, 0.05, 0.05, 0.2;
    # monotone from the top gives the same. A second metric is its own family; NaN is not a test.
    tests = pd.DataFrame({"metric": ["a"] * 5 + ["b", "b", "b"],
                          "p_value": [0.03, 0.01, 0.2, 0.04, 0.02, 0.04, 0.01, np.nan]})
    q = q_values(tests)
    np.testing.assert_allclose(q[:5], [0.05, 0.05, 0.2, 0.05, 0.05])
    np.testing.assert_allclose(q[5:7], [0.04, 0.02])
    assert np.isnan(q[7])


def test_intersections_and_worst_group():
    frame = rows_frame(400)
    summary = summarise_cell(frame, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=50,
                             attributes=("sex", "sex×age_band"))
    groups = set(summary[summary.attribute == "sex×age_band"].grp) - {""}
    assert groups == {"F & 60+", "F & <60", "M & 60+", "M & <60"}
    tpr = summary[(summary.metric == "tpr") & (summary.label == "a") & (summary.attribute == "sex×age_band")]
    worst = pick(summary, "worst_tpr", "a", "sex×age_band", tpr.loc[tpr.estimate.idxmin(), "grp"])
    assert worst.estimate == tpr.estimate.min()
    ratio = pick(summary, "tpr_ratio", "a", "sex×age_band", "").estimate
    assert ratio == pytest.approx(tpr.estimate.min() / tpr.estimate.max())
    fnr = pick(summary, "fnr", "a", "sex", "F").estimate
    assert fnr == pytest.approx(1 - pick(summary, "tpr", "a", "sex", "F").estimate)


def test_added_p_values_flag_a_real_change_only():
    clean = rows_frame(400, seed=2)
    same = summarise_cell(clean, ["a", "b"], {"a": 0.5, "b": 0.5}, clean=clean.copy(), n_resamples=200)
    assert (same[same.metric.str.endswith("_added")].p_value.dropna() == 1).all()
    worse = clean.copy()
    worse["score:a"] = 0.8 * worse["score:a"]  # lower scores: fewer positives called at 0.5
    changed = summarise_cell(worse, ["a", "b"], {"a": 0.5, "b": 0.5}, clean=clean, n_resamples=200)
    assert pick(changed, "tpr_added", "a").p_value < 0.01
