"""Validation on known truth: an injected bias is recovered with honest intervals; without one, few false alarms.

Real pieces throughout: the synthetic cohort generator with its bias knob, a trained classifier,
the projection physics and the fairness summary. Marked slow; it runs in CI (about a minute).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recon_core.cohorts.synthetic_xray import generate_cohort
from recon_core.config import BiasKnob, CohortConfig, DiagnosticConfig, StudyConfig
from recon_core.diagnostics import Classifier, choose_thresholds
from recon_core.fairness import summarise_cell
from recon_core.models.batches import SplitData
from recon_core.physics import ProjectionDose

pytestmark = pytest.mark.slow
LABEL = "cardiomegaly"  # large enough to see at 32 px
BIAS = (BiasKnob(attribute="sex", group="F", label=LABEL, contrast=0.35),)


def make_cohort(seed: int, n: int, bias: tuple = BIAS):
    config = CohortConfig(anatomy="procedural", n_subjects=n, image_size=32, bias=bias,
                          prevalence={"cardiomegaly": 0.4, "effusion": 0.2, "nodule": 0.2})
    return generate_cohort(config, seed)


def predict(classifier: Classifier, images: np.ndarray) -> np.ndarray:
    return classifier.predict(torch.from_numpy(images[:, None])).numpy()


def rows_of(cohort, scores: np.ndarray, sex: np.ndarray | None = None) -> pd.DataFrame:
    j = cohort.labels.index(LABEL)
    return pd.DataFrame({"image_id": cohort.subjects.image_id, "sex": cohort.subjects.sex if sex is None else sex,
                         "age_band": cohort.subjects.age_band, "psnr": np.nan, "ssim": np.nan, "nmse": np.nan,
                         f"score:{LABEL}": scores[:, j], f"target:{LABEL}": cohort.subjects[LABEL].to_numpy()})


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    config = StudyConfig(diagnostic=DiagnosticConfig(steps=150, batch_size=32, learning_rate=3e-3))
    train = make_cohort(100, 1200)
    classifier = Classifier(config, train.labels, torch.device("cpu"))
    classifier.fit(SplitData(train.subjects, train.images, train.labels), tmp_path_factory.mktemp("ckpt"))
    val = make_cohort(101, 600)
    j = val.labels.index(LABEL)
    targets = val.subjects[list(val.labels)].to_numpy(dtype=float)
    threshold = choose_thresholds(targets[:, j:j + 1], predict(classifier, val.images)[:, j:j + 1],
                                  (LABEL,))
    return classifier, threshold


def signed_tpr_difference(rows: pd.DataFrame, threshold: float) -> float:
    """TPR(F) − TPR(M), directly (no bootstrap)."""
    positive = rows[f"target:{LABEL}"] == 1
    called = rows[f"score:{LABEL}"] >= threshold
    return called[positive & (rows.sex == "F")].mean() - called[positive & (rows.sex == "M")].mean()


def test_injected_gap_is_covered_by_the_interval(model):
    classifier, threshold = model
    population = make_cohort(999, 6000)
    truth = signed_tpr_difference(rows_of(population, predict(classifier, population.images)), threshold[LABEL])
    assert truth < -0.1, f"the bias knob should make women's TPR clearly lower (got {truth:+.3f})"
    covered_diff = covered_gap = 0
    seeds = range(30)
    for seed in seeds:
        cohort = make_cohort(seed, 500)
        summary = summarise_cell(rows_of(cohort, predict(classifier, cohort.images)), [LABEL], threshold,
                                 attributes=("sex",), n_resamples=400, seed=seed)
        diff = summary[(summary.metric == "tpr_diff") & (summary.label == LABEL)].iloc[0]
        gap = summary[(summary.metric == "eo_gap") & (summary.label == LABEL)].iloc[0]
        covered_diff += diff.ci_low <= truth <= diff.ci_high
        covered_gap += gap.ci_low <= abs(truth) <= gap.ci_high
    print(f"true TPR(F) − TPR(M) {truth:+.3f}; 95 % CI coverage: signed {covered_diff}/30, gap {covered_gap}/30")
    assert covered_diff / len(seeds) >= 0.9
    assert covered_gap / len(seeds) >= 0.9


def test_no_added_bias_gives_few_false_alarms(model):
    classifier, threshold = model
    physics = ProjectionDose(seed=0)
    alarms = 0
    seeds = range(40)
    for seed in seeds:
        cohort = make_cohort(200 + seed, 500, bias=())
        # Sex drawn afresh, independent of every image: the true gap and the added gap are zero.
        sex = np.random.default_rng(seed).choice(["F", "M"], len(cohort.subjects))
        degraded = physics.degrade(torch.from_numpy(cohort.images[:, None]), 300.0,
                                   cohort.subjects.image_id.tolist()).numpy()[:, 0]
        clean_rows = rows_of(cohort, predict(classifier, cohort.images), sex)
        recon_rows = rows_of(cohort, predict(classifier, degraded), sex)
        summary = summarise_cell(recon_rows, [LABEL], threshold, clean=clean_rows, attributes=("sex",),
                                 n_resamples=400, seed=seed)
        added = summary[(summary.metric == "eo_gap_added") & (summary.label == LABEL)].iloc[0]
        alarms += added.p_value < 0.05
    print(f"false alarms for 'added EO gap ≠ 0' at p < 0.05: {alarms}/40")
    assert alarms / len(seeds) <= 0.15  # nominal 5 %: 2 of 40 expected; 7 or more has probability < 0.005
