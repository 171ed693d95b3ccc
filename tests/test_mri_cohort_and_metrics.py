"""The generated brain cohort, Dice/HD95 conventions and patient-level statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric

from recon_core.cohorts.synthetic_mri import generate_cohort
from recon_core.config import BiasKnob, CohortConfig
from recon_core.fairness.patients import patient_rows
from recon_core.fairness.summary import summarise_cell
from recon_core.metrics.image_quality import image_quality
from recon_core.metrics.segmentation import dice, hd95, segmentation_quality


def cohort(**kw):
    base = dict(anatomy="procedural", n_subjects=40, slices_per_subject=4, image_size=48,
                prevalence={"high_grade": 0.5}, age_band_edges=(58.0,))
    return generate_cohort(CohortConfig(**(base | kw)), seed=0)


def test_cohort_is_deterministic_and_patients_own_their_slices():
    a, b = cohort(), cohort()
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert a.images.shape == (160, 48, 48) and a.masks.shape == a.images.shape
    assert a.images.min() >= 0 and a.images.max() <= 1
    per_patient = a.subjects.groupby("subject_id")
    assert (per_patient.size() == 4).all()
    assert (per_patient[["sex", "age", "high_grade", "split"]].nunique() == 1).all().all()


def test_grade_and_demographics_change_the_image():
    c = cohort(n_subjects=80, slices_per_subject=8)
    rows = c.subjects
    assert rows.sex.nunique() == 2 and rows.age_band.nunique() == 2  # never one constant value
    high = rows.tumour_pixels[rows.high_grade == 1].mean()
    assert high > 1.5 * rows.tumour_pixels[rows.high_grade == 0].mean()  # high grade: larger tumours
    head = (c.images > 0.05).reshape(len(c.images), -1).sum(1)
    assert head[rows.sex.to_numpy() == "M"].mean() > head[rows.sex.to_numpy() == "F"].mean()
    assert (rows.tumour_pixels == 0).any() and (rows.tumour_pixels > 0).mean() > 0.6  # some edge slices miss it
    # the grade shows, but not with certainty: necrosis only in high grade, and neither grade has one look
    looks = rows.drop_duplicates("subject_id").groupby("high_grade").appearance.unique()
    assert set(looks[1.0]) == {"necrotic", "solid_enhancing"} and set(looks[0.0]) == {"hypointense", "patchy_enhancing"}
    sizes = rows[rows.tumour_pixels > 0].groupby("subject_id").agg(px=("tumour_pixels", "max"),
                                                                   high=("high_grade", "first"))
    assert sizes[sizes.high == 1].px.min() < sizes[sizes.high == 0].px.max()  # sizes overlap


def test_bias_knob_shrinks_tumours_in_one_group():
    plain, knob = cohort(n_subjects=80), cohort(n_subjects=80, bias=(BiasKnob("sex", "F", size=0.6),))
    women = plain.subjects.sex.to_numpy() == "F"
    assert knob.subjects.tumour_pixels[women].mean() < 0.7 * plain.subjects.tumour_pixels[women].mean()
    assert np.array_equal(knob.masks[~women], plain.masks[~women])


def test_mni152_anatomy_renders_real_brain_slices():
    c = cohort(anatomy="mni152", n_subjects=12, image_size=64)
    assert c.images.shape == (48, 64, 64) and c.source.endswith("(mni152)")
    assert 0.2 < (c.images > 0.1).mean() < 0.8


def known_masks() -> tuple[torch.Tensor, torch.Tensor]:
    pred = torch.zeros(4, 1, 16, 16, dtype=torch.uint8)
    truth = pred.clone()
    pred[0, 0, 2:6, 2:6] = 1  # 16 pixels
    truth[0, 0, 2:6, 2:8] = 1  # 24 pixels, 16 shared → Dice 32/40
    truth[1, 0, 3:5, 3:5] = 1  # prediction empty, truth not
    pred[3, 0, 8:12, 8:12] = 1  # identical
    truth[3, 0, 8:12, 8:12] = 1
    return pred, truth  # slice 2: both empty


def test_dice_and_hd95_on_known_masks_and_against_monai():
    pred, truth = known_masks()
    d = dice(pred, truth)
    assert torch.allclose(d, torch.tensor([0.8, 0.0, 1.0, 1.0]))  # both empty = 1, one empty = 0
    h = hd95(pred, truth)
    assert h[0] == 2 and h[3] == 0 and torch.isnan(h[1]) and torch.isnan(h[2])  # undefined when a mask is empty
    one_hot = lambda m: torch.cat([1 - m, m], 1).float()  # noqa: E731
    monai_dice = DiceMetric(include_background=False, reduction="none", ignore_empty=False)(one_hot(pred),
                                                                                              one_hot(truth))
    assert torch.allclose(d, monai_dice.reshape(-1))
    full = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")(one_hot(pred[[0, 3]]),
                                                                                               one_hot(truth[[0, 3]]))
    assert torch.allclose(h[[0, 3]], full.reshape(-1).float())


def slice_rows(slices_per_patient: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    patients = pd.DataFrame({"subject_id": [f"p{i:02d}" for i in range(n)], "sex": np.tile(["F", "M"], n // 2),
                             "age": 50.0, "age_band": "<58", "target:high_grade": rng.integers(0, 2, n).astype(float)})
    patients["score:high_grade"] = np.clip(patients["target:high_grade"] * 0.4 + rng.random(n) * 0.6, 0, 1)
    patients["dice"] = rng.uniform(0.5, 0.95, n)
    rows = patients.loc[patients.index.repeat(slices_per_patient)].reset_index(drop=True)
    rows.insert(0, "image_id", [f"{s}-s{k}" for s in patients.subject_id for k in range(slices_per_patient)])
    return rows


def test_patient_rows_take_the_median_score_and_mean_dice():
    rows = slice_rows(3)
    rows.loc[0:2, "score:high_grade"] = [0.1, 0.9, 0.2]
    rows.loc[0:2, "dice"] = [0.3, 0.6, 0.9]
    patients = patient_rows(rows)
    first = patients.iloc[0]
    assert first.image_id == "p00" and first["score:high_grade"] == pytest.approx(0.2)
    assert first.dice == pytest.approx(0.6) and first.n_slices == 3 and len(patients) == 60
    broken = rows.copy()
    broken.loc[1, "sex"] = "M" if broken.loc[1, "sex"] == "F" else "F"
    with pytest.raises(ValueError, match="'sex' differs between slices of one patient"):
        patient_rows(broken)


def test_volume_psnr_and_nmse_are_those_of_the_whole_volume_not_slice_means():
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(rng.random((4, 1, 16, 16), dtype=np.float32))
    clean[0] *= 0.2  # a dim slice
    noise = torch.tensor([0.01, 0.1, 0.1, 0.1]).view(4, 1, 1, 1)  # one slice near perfect: slice means mislead
    recon = (clean + noise * torch.from_numpy(rng.standard_normal((4, 1, 16, 16), dtype=np.float32))).clamp(0, 1)
    quality = {k: v.numpy() for k, v in image_quality(recon, clean).items()}
    rows = pd.DataFrame({"image_id": [f"p0-s{k}" for k in range(4)], "subject_id": "p0", "sex": "F", "age": 50.0,
                         "age_band": "<58", "target:high_grade": 1.0, "score:high_grade": 0.7, **quality})
    patient = patient_rows(rows).iloc[0]
    error = float(((recon - clean) ** 2).mean())
    assert patient.psnr_volume == pytest.approx(10 * np.log10(1 / error), rel=1e-5)
    assert patient.nmse_volume == pytest.approx(float(((recon - clean) ** 2).sum() / (clean ** 2).sum()), rel=1e-5)
    assert patient.psnr - patient.psnr_volume > 3  # not the slice mean
    assert "mse" not in patient and "signal" not in patient


def test_bootstrap_resamples_patients_so_more_slices_do_not_narrow_intervals():
    """Resampling a patient takes all its slices: 1 or 8 identical slices per patient give the same CIs."""
    thresholds = {"high_grade": 0.5}
    one = summarise_cell(patient_rows(slice_rows(1)), ["high_grade"], thresholds, attributes=("sex",),
                         n_resamples=300)
    eight = summarise_cell(patient_rows(slice_rows(8)), ["high_grade"], thresholds, attributes=("sex",),
                           n_resamples=300)
    cols = ["metric", "label", "attribute", "grp", "estimate", "ci_low", "ci_high", "n"]
    pd.testing.assert_frame_equal(one[cols], eight[cols])
    naive = summarise_cell(slice_rows(8).drop(columns="subject_id"), ["high_grade"], thresholds, attributes=("sex",),
                           n_resamples=300)  # slices as if they were independent images
    width = lambda t: float((t.ci_high - t.ci_low)[(t.metric == "dice") & (t.attribute == "all")].iloc[0])  # noqa: E731
    assert width(naive) < 0.6 * width(eight)  # treating slices as independent would overstate certainty


def test_dice_fairness_summaries_and_added_dice():
    rows = patient_rows(slice_rows(2))
    clean = rows.copy()
    rows = rows.assign(dice=np.where(rows.sex == "F", rows.dice - 0.2, rows.dice))  # reconstruction hurts F
    out = summarise_cell(rows, ["high_grade"], {"high_grade": 0.5}, clean=clean, attributes=("sex",),
                         n_resamples=300).set_index(["metric", "attribute", "grp"])
    f, m = out.loc[("dice", "sex", "F"), "estimate"], out.loc[("dice", "sex", "M"), "estimate"]
    assert out.loc[("dice_gap", "sex", ""), "estimate"] == pytest.approx(abs(f - m))
    ser = out.loc[("dice_skewed_error_ratio", "sex", ""), "estimate"]
    assert ser == pytest.approx((1 - min(f, m)) / (1 - max(f, m)))
    assert out.loc[("dice_added", "sex", "F"), "estimate"] == pytest.approx(-0.2)
    assert out.loc[("dice_added", "sex", "M"), "estimate"] == pytest.approx(0.0)
    assert out.loc[("dice_diff_added", "sex", "F − M"), "estimate"] == pytest.approx(-0.2)
    assert out.loc[("dice_diff_added", "sex", "F − M"), "p_value"] < 0.05
    assert np.isnan(out.loc[("dice_gap_added", "sex", ""), "p_value"])  # folded: descriptive, no test


def test_segmentation_quality_in_threads_equals_one_pass():
    """HD95 over chunks of slices in threads: the same values (and NaN for empty masks) as one call."""
    yy, xx = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    radii = torch.tensor([0, 3, 7, 11, 0, 5, 9, 13, 2, 6, 10, 0, 4, 8, 12, 1, 3, 7, 9])[:, None, None]
    truth = (((yy - 24) ** 2 + (xx - 24) ** 2)[None] < radii ** 2).to(torch.uint8)[:, None]
    pred = (((yy - 22) ** 2 + (xx - 25) ** 2)[None] < (radii.flip(0) + 1) ** 2).to(torch.uint8)[:, None]
    got = segmentation_quality(pred, truth)
    torch.testing.assert_close(got["hd95"], hd95(pred, truth), equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(got["dice"], dice(pred, truth), rtol=0, atol=0)
