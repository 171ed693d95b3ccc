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


def test_benjamini_hochberg_within_each_stated_family():
    from recon_core.fairness.multiple_testing import family_of, q_values

    # primary (tpr_diff_added per label) p sorted 0.01…0.04, 0.2 (m = 5): p·m/rank = 0.05, 0.05, 0.05, 0.05, 0.2.
    # secondary: two other signed changes; inherent: a difference on the clean road; NaN is not a test;
    # a folded gap change and a per-group change belong to no family.
    tests = pd.DataFrame({
        "metric": ["tpr_diff_added"] * 5 + ["auroc_diff_added", "tpr_diff_added", "tpr_diff", "eo_gap_added",
                                            "tpr_added", "auroc_added"],
        "label": ["a"] * 6 + ["mean", "a", "a", "a", "a"],
        "attribute": ["sex"] * 9 + ["sex", "all"],
        "reconstructor": ["unet"] * 7 + ["clean", "unet", "unet", "unet"],
        "p_value": [0.03, 0.01, 0.2, 0.04, 0.02, 0.04, 0.01, np.nan, 0.001, 0.001, 0.3]})
    out = q_values(tests.assign(ci_low=-1.0, ci_high=1.0), "tpr_diff_added", "clean")
    assert list(out.family) == ["primary"] * 5 + ["secondary", "secondary", "inherent", None, None, "task"]
    np.testing.assert_allclose(out.q_value[:5], [0.05, 0.05, 0.2, 0.05, 0.05])
    np.testing.assert_allclose(out.q_value[5:7], [0.04, 0.02])
    assert out.q_value[7:10].isna().all() and out.q_value[10] == pytest.approx(0.3)
    assert family_of("tpr_diff", "a", "sex", road_is_clean=False, primary="tpr_diff_added") is None
    flat = tests.assign(ci_low=-1.0, ci_high=1.0)
    flat.loc[0, ["ci_low", "ci_high"]] = 0.0  # a test whose statistic never varied cannot reject: left out
    out = q_values(flat, "tpr_diff_added", "clean")
    assert out.family[0] is None and np.isnan(out.q_value[0])
    np.testing.assert_allclose(out.q_value[1:5], [0.04, 0.2, 0.04 * 4 / 3, 0.04])  # m = 4 now


def test_intersections_and_worst_group():
    frame = rows_frame(400)
    summary = summarise_cell(frame, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=50,
                             attributes=("sex", "sex×age_band"))
    groups = set(summary[summary.attribute == "sex×age_band"].grp) - {""}
    assert groups == {"F & 60+", "F & <60", "M & 60+", "M & <60"} | {f"{g} − rest" for g in
                                                                      ("F & 60+", "F & <60", "M & 60+", "M & <60")}
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


def three_band_frame(n=600, seed=5):
    frame = rows_frame(n, seed)
    frame["age_band"] = np.array(["<40", "40-60", "60+"])[np.arange(n) % 3]
    return frame


def test_signed_differences_match_direct_computation_and_name_their_contrast():
    """F − M for two groups; each group − the rest pooled for three; eodd_diff = ½ (ΔTPR + ΔFPR)."""
    from sklearn.metrics import roc_auc_score

    frame = three_band_frame()
    summary = summarise_cell(frame, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=100, attributes=("sex", "age_band"))

    def rates(part):
        called, target = part["score:a"] >= 0.5, part["target:a"] == 1
        return called[target].mean(), called[~target].mean(), roc_auc_score(target, part["score:a"]), called.mean()

    f, m = rates(frame[frame.sex == "F"]), rates(frame[frame.sex == "M"])
    for metric, i in (("tpr", 0), ("fpr", 1), ("auroc", 2), ("sel", 3)):
        assert pick(summary, f"{metric}_diff", "a", "sex", "F − M").estimate == pytest.approx(f[i] - m[i])
    assert pick(summary, "eodd_diff", "a", "sex", "F − M").estimate == pytest.approx(0.5 * (f[0] - m[0] + f[1] - m[1]))
    old, rest = rates(frame[frame.age_band == "60+"]), rates(frame[frame.age_band != "60+"])
    row = pick(summary, "tpr_diff", "a", "age_band", "60+ − rest")
    assert row.estimate == pytest.approx(old[0] - rest[0]) and row.n == len(frame)
    assert {g for g in summary[summary.metric == "tpr_diff"].grp} == {"F − M", "<40 − rest", "40-60 − rest",
                                                                     "60+ − rest"}
    assert not summary.metric.isin(["fnr_diff", "ece_diff", "ece_gap", "tpr_gap", "fnr_gap"]).any()  # no synonyms


def test_estimate_interval_and_p_agree_and_only_family_tests_carry_p():
    """Every p-value sits on a tested statistic whose CI excludes 0 exactly when p < 0.05; folded gaps have none."""
    from recon_core.fairness.multiple_testing import family_of

    clean = three_band_frame(seed=6)
    recon = clean.copy()
    recon["score:a"] = np.clip(recon["score:a"] - 0.15 * (recon.sex == "F"), 0, 1)  # women's findings missed
    for summary, is_clean in ((summarise_cell(clean, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=300,
                                              attributes=("sex", "age_band")), True),
                              (summarise_cell(recon, ["a", "b"], {"a": 0.5, "b": 0.5}, clean=clean, n_resamples=300,
                                              attributes=("sex", "age_band")), False)):
        tested = summary[summary.p_value.notna()]
        assert len(tested) > 20
        assert all(family_of(r.metric, r.label, r.attribute, is_clean, "tpr_diff_added") for r in tested.itertuples())
        excludes = (tested.ci_low > 0) | (tested.ci_high < 0)
        assert (excludes == (tested.p_value < 0.05)).all()
        assert summary[summary.metric.str.contains("_gap|eodd$|eodd_added|_ratio")].p_value.isna().all()
    shift = pick(summary, "tpr_diff_added", "a", "sex", "F − M")
    assert shift.estimate < -0.1 and shift.p_value < 0.001  # reached with 300 resamples: not floored at 2/301


def test_label_mean_is_the_mean_of_per_label_statistics():
    """'mean' averages the per-label gaps and differences: opposite gaps do not cancel in the mean gap."""
    frame = rows_frame(400, seed=3)
    frame["score:a"] = np.clip(frame["score:a"] + 0.2 * (frame.sex == "F"), 0, 1)  # F favoured on a
    frame["score:b"] = np.clip(frame["score:b"] + 0.2 * (frame.sex == "M"), 0, 1)  # M favoured on b
    summary = summarise_cell(frame, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=50, attributes=("sex",))
    for metric, grp in (("eo_gap", ""), ("tpr_diff", "F − M"), ("eodd", ""), ("auroc_diff", "F − M")):
        per_label = [pick(summary, metric, lb, "sex", grp).estimate for lb in ("a", "b")]
        assert pick(summary, metric, "mean", "sex", grp).estimate == pytest.approx(np.mean(per_label))
    mean_tpr = [pick(summary, "tpr", "mean", "sex", g).estimate for g in ("F", "M")]
    assert pick(summary, "eo_gap", "mean", "sex", "").estimate > abs(mean_tpr[0] - mean_tpr[1]) + 0.1


def test_rates_need_enough_positives_and_negatives_and_use_wilson_intervals():
    """A TPR from 3 positives has no estimate (its selection rate still has one); Wilson bounds on the counts."""
    from scipy.stats import binomtest

    frame = rows_frame(200, seed=4)
    women = frame.index[frame.sex == "F"]
    frame.loc[women, "target:a"] = 0.0
    frame.loc[women[:3], "target:a"] = 1.0
    summary = summarise_cell(frame, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=100, min_positives=5)
    assert np.isnan(pick(summary, "tpr", "a", "sex", "F").estimate)
    assert np.isnan(pick(summary, "tpr_diff", "a", "sex", "F − M").estimate)
    assert not np.isnan(pick(summary, "sel", "a", "sex", "F").estimate)
    assert not np.isnan(pick(summary, "fpr", "a", "sex", "F").estimate)
    row = pick(summary, "tpr", "b", "sex", "M")
    part = frame[(frame.sex == "M") & (frame["target:b"] == 1)]
    ci = binomtest(int((part["score:b"] >= 0.5).sum()), len(part)).proportion_ci(0.95, method="wilson")
    assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high))
    dropped = pick(summary, "tpr", "b", "sex", "F").dropped  # resamples in which F drew no positive for b
    assert 0 <= dropped < 0.01 and summary.dropped.notna().any()


def test_images_of_one_subject_are_resampled_together():
    """Five images per subject, identical within a subject: a cluster bootstrap is wider than one over images."""
    subjects = rows_frame(80, seed=7)
    frame = pd.concat([subjects.assign(image_id=subjects.image_id + f"-{k}", subject_id=subjects.image_id)
                       for k in range(5)], ignore_index=True)
    clustered = summarise_cell(frame, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=400, attributes=("sex",))
    naive = summarise_cell(frame.drop(columns="subject_id"), ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=400,
                           attributes=("sex",))
    for metric, grp in (("tpr_diff", "F − M"), ("psnr", "all")):
        wide = pick(clustered, metric, "a" if metric != "psnr" else "", "sex" if grp != "all" else "all", grp)
        narrow = pick(naive, metric, "a" if metric != "psnr" else "", "sex" if grp != "all" else "all", grp)
        assert wide.estimate == pytest.approx(narrow.estimate)
        assert (wide.ci_high - wide.ci_low) > 1.8 * (narrow.ci_high - narrow.ci_low)  # √5 ≈ 2.2 in theory


def test_a_collapsed_threshold_is_no_significant_change_of_a_null_difference():
    """Item 1 of the audit: scores pushed below the threshold (TPR = FPR = 0 for everyone). The folded
    |gap| − |gap| was 'significant' every time; the signed change is the clean difference, reversed."""
    clean = rows_frame(400, seed=8)
    collapsed = clean.assign(**{"score:a": 0.0, "score:b": 0.0})
    summary = summarise_cell(collapsed, ["a", "b"], {"a": 0.5, "b": 0.5}, clean=clean, n_resamples=400,
                             attributes=("sex",))
    base = summarise_cell(clean, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=400, attributes=("sex",))
    for metric in ("tpr_diff", "eodd_diff"):
        change = pick(summary, f"{metric}_added", "a", "sex", "F − M")
        inherent = pick(base, metric, "a", "sex", "F − M")
        assert change.estimate == pytest.approx(-inherent.estimate)
        assert change.p_value == pytest.approx(inherent.p_value, abs=0.1)  # same uncertainty, from the same images
    assert np.isnan(pick(summary, "eodd_added", "a", "sex", "").p_value)


def test_a_reversed_difference_is_a_change_not_a_shrinking_gap():
    """Item 1: F − M going from −0.15 to +0.07 is a signed change of about +0.2, not a gap 'shrinking' by 0.08."""
    clean = rows_frame(600, seed=9)
    clean["score:a"] = np.clip(clean["score:a"] - 0.2 * (clean.sex == "F"), 0, 1)
    recon = clean.copy()
    recon["score:a"] = np.clip(recon["score:a"] + 0.3 * (recon.sex == "F"), 0, 1)
    summary = summarise_cell(recon, ["a", "b"], {"a": 0.5, "b": 0.5}, clean=clean, n_resamples=300,
                             attributes=("sex",))
    signed = pick(summary, "tpr_diff_added", "a", "sex", "F − M")
    folded = pick(summary, "eo_gap_added", "a", "sex", "")
    assert signed.estimate > 0.2 and signed.p_value < 0.01
    assert abs(folded.estimate) < signed.estimate / 2


def test_a_selection_rate_difference_keeps_the_variation_of_the_prevalence():
    """Selection rates move with the prevalence: resampled within group only, their difference's interval has
    the binomial width, not the much narrower one of class strata (which gave p = 1e-119 on the demo)."""
    frame = rows_frame(800, seed=12)
    frame["target:a"] = (np.random.default_rng(3).random(800) < np.where(frame.sex == "F", 0.2, 0.5)).astype(float)
    frame["score:a"] = np.clip(0.6 * frame["target:a"] + 0.2, 0, 1)  # called exactly when present
    summary = summarise_cell(frame, ["a", "b"], {"a": 0.5, "b": 0.5}, n_resamples=1000, attributes=("sex",))
    row = pick(summary, "sel_diff", "a", "sex", "F − M")
    f, m = frame[frame.sex == "F"], frame[frame.sex == "M"]
    pf, pm = (f["score:a"] >= 0.5).mean(), (m["score:a"] >= 0.5).mean()
    se = np.sqrt(pf * (1 - pf) / len(f) + pm * (1 - pm) / len(m))
    assert (row.ci_high - row.ci_low) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.12)
    tpr = pick(summary, "tpr_diff", "a", "sex", "F − M")
    assert tpr.estimate == 0 and tpr.p_value == 1.0  # every positive called in both groups: nothing to test


def test_the_overall_auroc_change_uses_paired_delong():
    """Everyone, the same cases on both roads: DeLong's paired variance gives the interval and the p-value."""
    from recon_core.fairness import delong

    clean = rows_frame(400, seed=13)
    recon = clean.assign(**{"score:a": np.clip(clean["score:a"] + np.random.default_rng(1).normal(0, 0.1, 400), 0, 1)})
    summary = summarise_cell(recon, ["a", "b"], {"a": 0.5, "b": 0.5}, clean=clean, n_resamples=200)
    row = pick(summary, "auroc_added", "a")
    diff, var = delong.paired_difference(recon["score:a"].to_numpy(), clean["score:a"].to_numpy(),
                                         clean["target:a"].to_numpy())
    assert row.estimate == pytest.approx(diff)
    assert (row.ci_low, row.ci_high) == pytest.approx(delong.interval(diff, var, 0.95))
    assert row.p_value == pytest.approx(delong.p_value(diff, var))
