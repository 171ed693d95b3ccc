"""Independent recomputation: per-group TPR, FPR and selection rate and their differences against fairlearn.

fairlearn's MetricFrame is a separate, well-kept implementation of group metrics; Tandem's own
(vectorised over bootstrap resamples) must give the same point estimates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

from recon_core.fairness import summarise_cell


def cohort(n: int = 500, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n, p=[0.45, 0.55])
    band = rng.choice(["<40", "40-60", "60+"], n)
    target = (rng.random(n) < np.where(sex == "F", 0.3, 0.4)).astype(float)
    score = 1 / (1 + np.exp(-(1.6 * target - 0.8 + 0.4 * (sex == "M") + rng.normal(0, 1, n))))
    return pd.DataFrame({"image_id": [f"x{i:04d}" for i in range(n)], "sex": sex, "age_band": band,
                         "psnr": np.nan, "ssim": np.nan, "nmse": np.nan, "score:f": score, "target:f": target})


@pytest.mark.parametrize("attribute", ["sex", "age_band", "sex×age_band"])
def test_group_rates_and_differences_match_fairlearn(attribute):
    rows = cohort()
    summary = summarise_cell(rows, ["f"], {"f": 0.5}, attributes=(attribute,), n_resamples=20,
                             min_positives=1, min_negatives=1, min_group_size=1)
    parts = attribute.split("×")
    sensitive = rows[parts[0]] if len(parts) == 1 else rows[parts[0]] + " & " + rows[parts[1]]
    frame = MetricFrame(metrics={"tpr": true_positive_rate, "fpr": false_positive_rate, "sel": selection_rate},
                        y_true=rows["target:f"].astype(int), y_pred=(rows["score:f"] >= 0.5).astype(int),
                        sensitive_features=sensitive.rename(attribute))
    ours = summary[(summary.label == "f") & (summary.attribute == attribute)]
    for metric in ("tpr", "fpr", "sel"):
        for group, value in frame.by_group[metric].items():
            row = ours[(ours.metric == metric) & (ours.grp == group)].iloc[0]
            assert row.estimate == pytest.approx(value, abs=1e-12), (metric, group)
        gap = "eo_gap" if metric == "tpr" else f"{metric}_gap"
        assert ours[ours.metric == gap].estimate.iloc[0] == pytest.approx(frame.difference()[metric], abs=1e-12)
        groups = list(frame.by_group.index)
        if len(groups) == 2:
            diff = ours[(ours.metric == f"{metric}_diff") & (ours.grp == f"{groups[0]} − {groups[1]}")]
            expected = frame.by_group[metric][groups[0]] - frame.by_group[metric][groups[1]]
            assert diff.estimate.iloc[0] == pytest.approx(expected, abs=1e-12)
        else:  # each group − the rest pooled: fairlearn on the two-valued split 'g' / 'rest'
            for group in groups:
                split = MetricFrame(metrics={metric: {"tpr": true_positive_rate, "fpr": false_positive_rate,
                                                      "sel": selection_rate}[metric]},
                                    y_true=rows["target:f"].astype(int), y_pred=(rows["score:f"] >= 0.5).astype(int),
                                    sensitive_features=np.where(sensitive == group, "g", "rest"))
                expected = split.by_group[metric]["g"] - split.by_group[metric]["rest"]
                diff = ours[(ours.metric == f"{metric}_diff") & (ours.grp == f"{group} − rest")]
                assert diff.estimate.iloc[0] == pytest.approx(expected, abs=1e-12)
    eodd = 0.5 * (frame.difference()["tpr"] + frame.difference()["fpr"])
    assert ours[ours.metric == "eodd"].estimate.iloc[0] == pytest.approx(eodd, abs=1e-12)
