"""The hallucination check on known truth: lesion sites in the generated cohorts, the residual-map detector,
erased / invented rates from stored rows, and the read function the pages use."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from recon_core import results
from recon_core.cohorts import synthetic_mri, synthetic_xray
from recon_core.cohorts.chest_anatomy import template_for
from recon_core.config import CohortConfig
from recon_core.fairness.hallucinations import DETECTORS, RATE_COLUMNS, hallucination_rates, hallucination_table
from recon_core.metrics.lesions import SITE_COLUMNS, lesion_called, lesion_contrast, matched_contrast
from recon_core.modalities import get_modality
from recon_core.reconstructors import build_reconstructor
from recon_core.store import CLEAN, Store

XRAY = CohortConfig(anatomy="procedural", n_subjects=24, image_size=32)
MRI = CohortConfig(anatomy="procedural", n_subjects=6, slices_per_subject=4, image_size=48,
                   prevalence={"high_grade": 0.5}, age_band_edges=(58.0,))


@pytest.fixture(scope="module")
def xray_cohort():
    return synthetic_xray.generate_cohort(XRAY, seed=3, workers=1)


def test_cohort_images_are_unchanged_by_the_sites(xray_cohort):
    """Checksums of the images (and MRI masks) made by the generators before lesion sites existed."""
    assert hashlib.sha256(xray_cohort.images.tobytes()).hexdigest()[:16] == "81b36f2a71372abc"
    mri = synthetic_mri.generate_cohort(MRI, seed=1, workers=1)
    assert hashlib.sha256(mri.images.tobytes() + mri.masks.tobytes()).hexdigest()[:16] == "be7ff97dcd791e3e"
    for cohort in (xray_cohort, mri):
        assert set(SITE_COLUMNS) <= set(cohort.subjects)


def test_xray_site_is_where_the_nodule_is(xray_cohort):
    """The clean image minus the same subject painted without its nodule peaks at the site, within a pixel."""
    rows, template = xray_cohort.subjects, template_for(XRAY.anatomy, XRAY.image_size)
    positives = np.flatnonzero(rows.nodule.to_numpy() == 1)
    assert len(positives) >= 3 and (rows.lesion == rows.nodule).all()
    for i in positives:
        row = rows.iloc[i]
        free = synthetic_xray.paint_subject(template, row, synthetic_xray.draw_subject(template, row, 3), nodule=False)
        peak = np.unravel_index(np.argmax(xray_cohort.images[i] - free), free.shape)
        assert np.hypot(peak[0] - row.lesion_y, peak[1] - row.lesion_x) <= 1.0
        assert 0.4 < row.lesion_radius < 1.5  # σ 0.02–0.03 of the image at 32 px, after the warp


def test_sham_sites_lie_inside_a_lung(xray_cohort):
    """Each sham site falls inside the subject's own (warped) lung fields."""
    rows, template = xray_cohort.subjects, template_for(XRAY.anatomy, XRAY.image_size)
    yy, xx = np.mgrid[0:32, 0:32] / 31
    lungs = np.zeros((32, 32))
    for cx, cy, rx, ry in template.landmarks.lungs:
        lungs = np.maximum(lungs, (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(float))
    negatives = np.flatnonzero(rows.lesion.to_numpy() == 0)
    assert len(negatives) >= 10
    for i in negatives:
        row = rows.iloc[i]
        draws = synthetic_xray.draw_subject(template, row, 3)
        warped = synthetic_xray._warp(lungs, synthetic_xray._coordinates(template, row, draws))
        assert warped[round(row.lesion_y), round(row.lesion_x)] > 0.5


def test_mri_sites_are_the_tumour_and_the_patients_tumour_centre_where_a_slice_misses_it():
    cohort = synthetic_mri.generate_cohort(CohortConfig(anatomy="procedural", n_subjects=12, slices_per_subject=8,
                                                        image_size=48), seed=1, workers=1)
    rows = cohort.subjects
    assert (rows.lesion == (rows.tumour_pixels > 0)).all() and (rows.lesion == 0).sum() >= 3
    for i in np.flatnonzero(rows.lesion.to_numpy() == 1):
        yy, xx = np.nonzero(cohort.masks[i])
        assert (yy.mean(), xx.mean()) == pytest.approx((rows.lesion_y[i], rows.lesion_x[i]))
    for i in np.flatnonzero(rows.lesion.to_numpy() == 0):
        tumour = rows[(rows.subject_id == rows.subject_id[i]) & (rows.lesion == 1)]
        reach = 2 * tumour.lesion_radius.max() + 1  # within the patient's largest cross-section
        assert np.hypot(tumour.lesion_y.mean() - rows.lesion_y[i], tumour.lesion_x.mean() - rows.lesion_x[i]) <= reach
    clean = lesion_contrast(torch.from_numpy(cohort.images[:, None]), rows)
    assert np.allclose(clean[rows.lesion == 0], 0, atol=1e-9)  # the residual map of a clean slice without a tumour
    judged = rows.lesion_amplitude.notna().to_numpy()
    assert np.allclose(clean[judged & (rows.lesion == 1).to_numpy()],
                       rows.lesion_amplitude[judged & (rows.lesion == 1).to_numpy()])


def test_matched_filter_reads_a_gaussian_amplitude_over_a_flat_background():
    yy, xx = np.mgrid[0:24, 0:24]
    image = 0.3 + 0.2 * np.exp(-((yy - 10.3) ** 2 + (xx - 12.7) ** 2) / (2 * 1.5 ** 2))
    assert matched_contrast(image[None], [10.3], [12.7], [1.5])[0] == pytest.approx(0.2, abs=1e-9)
    edge = 0.5 + 0.1 * np.exp(-((yy - 1.0) ** 2 + (xx - 0.0) ** 2) / 2)  # a site at the border: the window is clipped
    assert matched_contrast(edge[None], [1.0], [0.0], [1.0])[0] == pytest.approx(0.1, abs=1e-9)


def test_detector_finds_the_lesions_on_clean_images_and_none_at_sham_sites(xray_cohort):
    rows = xray_cohort.subjects
    ratio = lesion_contrast(torch.from_numpy(xray_cohort.images[:, None]), rows) / rows.lesion_amplitude.to_numpy()
    present = rows.lesion.to_numpy() == 1
    assert (ratio[present] >= 0.5).mean() >= 0.9
    assert (ratio[~present] >= 0.5).mean() <= 0.05


def test_segmenter_call_counts_predicted_pixels_near_the_site():
    sites = pd.DataFrame({"lesion_y": [10.0, 10.0, 10.0], "lesion_x": [10.0, 10.0, 10.0], "lesion_radius": [1.0] * 3})
    masks = np.zeros((3, 24, 24))
    masks[0, 9:11, 9:11] = 1  # 4 pixels at the site
    masks[1, 20:24, 20:24] = 1  # a tumour far away
    masks[2, 10, 10:12] = 1  # 2 pixels: under the minimum
    assert lesion_called(masks, sites).tolist() == [1.0, 0.0, 0.0]


def _roads(tiny_config, cohort, names_levels):
    """The stored-row shape of the clean road and of each (reconstructor, level) on the cohort's positives."""
    rows = cohort.subjects[cohort.subjects.lesion == 1].reset_index(drop=True)
    images = torch.from_numpy(cohort.images[(cohort.subjects.lesion == 1).to_numpy()][:, None])
    physics = get_modality("xray").build_physics(tiny_config)
    ids = rows.image_id.tolist()

    def road(output: torch.Tensor) -> pd.DataFrame:
        return rows[["image_id", "subject_id", "sex", "age", "age_band", "lesion", "lesion_amplitude"]].assign(
            lesion_contrast=lesion_contrast(output, rows), **{"score:nodule": 1.0, "target:nodule": 1.0})

    out = {CLEAN: road(images)}
    for name, level in names_levels:
        reconstructor = build_reconstructor(name, tiny_config, torch.device("cpu"))
        degraded = physics.degrade(images, level, ids)
        out[name, level] = road(reconstructor.reconstruct(degraded, physics, level, None, ids))
    return out


def test_tv_at_the_lowest_dose_erases_most_lesions_and_identity_at_the_highest_few(tiny_config):
    """The issue's test at tiny size: a nodule inserted is found on the clean image; TV (the study's weight) at the
    lowest dose erases most, the degraded image itself at the highest dose few."""
    cohort = synthetic_xray.generate_cohort(tiny_config.cohort, tiny_config.seed, workers=1)
    low, high = min(tiny_config.physics.levels), max(tiny_config.physics.levels)
    roads = _roads(tiny_config, cohort, [("tv", low), ("none", high)])
    rate = {}
    for cell in (("tv", low), ("none", high)):
        table = hallucination_table(roads[CLEAN], roads[cell], {"nodule": 0.5}, "nodule")
        residual = table[table.detector == "residual map"]
        assert (residual.found_clean == 1).mean() == 1.0  # every inserted lesion is found on the clean image
        rates = hallucination_rates(table, ["sex"], n_resamples=50)
        everyone = rates[(rates.detector == "residual map") & (rates.kind == "erased") & (rates.attribute == "all")]
        rate[cell[0]] = float(everyone.rate.iloc[0])
        assert everyone["of"].iloc[0] == len(roads[CLEAN])
    assert rate["tv"] > 0.5  # 0.59 of the tiny cohort's 76 nodules at 300 photons
    assert rate["none"] < 0.1  # 0.00 at 3,000


def _hand_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ten images of known outcome: present/absent, found on clean, found on the reconstruction, by sex and age band."""
    lesion = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    sex = ["F", "F", "M", "M", "M", "F", "F", "M", "M", "M"]
    band = ["<60", "<60", "<60", "<60", "<60", "60+", "60+", "60+", "60+", "60+"]  # one class per band
    clean_c = [1.0, 1.0, 1.0, 1.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.9]  # image 4 missed, image 9 'found' on clean
    recon_c = [0.1, 1.0, 0.1, 0.2, 1.0, 0.8, 0.0, 0.0, 0.0, 0.0]  # erased 0, 2, 3; invented 5
    clean_s = [0.9, 0.9, 0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1]
    recon_s = [0.9, 0.1, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9, 0.1, 0.1]  # erased 1; invented 6, 7

    def rows(contrast: list[float], score: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"image_id": [f"i{k}" for k in range(10)], "subject_id": [f"s{k}" for k in range(10)],
                             "sex": sex, "age": 50.0, "age_band": band, "lesion": np.array(lesion, float),
                             "lesion_amplitude": 1.0, "lesion_contrast": contrast, "score:nodule": score,
                             "target:nodule": np.array(lesion, float)})

    return rows(clean_c, clean_s), rows(recon_c, recon_s)


def test_rates_of_hand_made_rows():
    clean, recon = _hand_rows()
    table = hallucination_table(clean, recon, {"nodule": 0.5}, "nodule")
    rates = hallucination_rates(table, ["sex", "age_band"], n_resamples=100)
    assert list(rates.columns) == RATE_COLUMNS
    rates = rates.set_index(["detector", "kind", "attribute", "grp"])

    def check(detector, kind, attribute, grp, count, of):
        row = rates.loc[(detector, kind, attribute, grp)]
        assert (row["count"], row["of"]) == (count, of)
        if of:
            assert row.rate == pytest.approx(count / of)
            assert row.ci_low <= row.ci_high
        else:
            assert np.isnan(row.rate) and np.isnan(row.ci_low)  # no eligible image: NaN, not 0

    check("residual map", "erased", "all", "all", 3, 4)
    check("residual map", "erased", "sex", "F", 1, 2)
    check("residual map", "erased", "sex", "M", 2, 2)
    check("residual map", "invented", "all", "all", 1, 4)
    check("residual map", "invented", "sex", "M", 0, 2)
    check("diagnostic model", "erased", "all", "all", 1, 4)
    check("diagnostic model", "invented", "all", "all", 2, 5)
    check("diagnostic model", "invented", "sex", "M", 1, 3)
    check("residual map", "erased", "age_band", "60+", 0, 0)  # a band of negatives only
    check("residual map", "invented", "age_band", "<60", 0, 0)  # a band of positives only
    assert set(rates.reset_index().detector) == set(DETECTORS) and rates.rule.str.len().gt(20).all()


def test_an_unjudged_image_leaves_the_denominators():
    clean, recon = _hand_rows()
    clean.loc[0, "lesion_amplitude"] = recon.loc[0, "lesion_amplitude"] = np.nan  # amplitude unknown
    rates = hallucination_rates(hallucination_table(clean, recon, {"nodule": 0.5}, "nodule"), [], n_resamples=20)
    erased = rates[(rates.detector == "residual map") & (rates.kind == "erased")].iloc[0]
    assert (erased["count"], erased["of"]) == (2, 3)


def test_the_sweep_stores_lesion_contrast_on_every_road_and_the_read_function_gives_both_detectors(built_store,
                                                                                                 tmp_path):
    store, key, _ = built_store
    cells = store.query("SELECT DISTINCT reconstructor, level FROM image_metrics WHERE config_hash = ?", [key])
    assert CLEAN in set(cells.reconstructor) and len(cells) > 2
    missing = store.query("""SELECT count(*) AS n FROM image_metrics WHERE config_hash = ?
                             AND (lesion_contrast IS NULL OR lesion IS NULL OR lesion_amplitude IS NULL)""", [key])
    assert int(missing.n.iloc[0]) == 0
    check = results.hallucination_rates(store, key, "tv", 300.0, ["sex"], n_resamples=50)
    assert check.unavailable == "" and list(check.rates.columns) == RATE_COLUMNS
    assert set(check.rates.detector) == set(DETECTORS) and set(check.rates.kind) == {"erased", "invented"}
    assert set(check.rates.grp) == {"all", "F", "M"}
    assert check.rates[check.rates.attribute == "all"].of.gt(0).all()
    assert results.hallucination_rates(store, key, "tv", 12345.0, ["sex"]).unavailable.startswith("The store holds")

    shutil.copy(store.path, tmp_path / "real.duckdb")
    copy = Store(tmp_path / "real.duckdb")  # as a run on real data: no lesion columns filled
    with copy.connect() as con:
        con.execute("UPDATE image_metrics SET lesion = NULL, lesion_amplitude = NULL, lesion_contrast = NULL")
    older = results.hallucination_rates(copy, key, "tv", 300.0, ["sex"])  # a generated cohort stored before
    assert older.unavailable == results.STORED_BEFORE and older.rates.empty
    with copy.connect() as con:
        stored = json.loads(con.execute("SELECT config_json FROM runs WHERE config_hash = ?", [key]).fetchone()[0])
        stored["cohort"]["source"] = "csv"
        con.execute("UPDATE runs SET config_json = ? WHERE config_hash = ?", [json.dumps(stored), key])
    real = results.hallucination_rates(copy, key, "tv", 300.0, ["sex"])
    assert real.unavailable == results.NO_SITES and real.rates.empty and set(real.rules) == set(DETECTORS)


def test_the_mri_sweep_stores_the_segmenters_call_and_rates(mri_store):
    store, key, _ = mri_store
    rows = store.query("SELECT reconstructor, lesion_contrast, lesion_called FROM image_metrics WHERE config_hash = ?",
                       [key])
    assert rows.lesion_contrast.notna().all() and rows.lesion_called.isin([0.0, 1.0]).all()
    check = results.hallucination_rates(store, key, "tv", 8.0, ["sex"], n_resamples=50)
    assert check.unavailable == ""
    erased = check.rates[(check.rates.kind == "erased") & (check.rates.attribute == "all")].set_index("detector")
    assert set(erased.index) == set(DETECTORS) and (erased.of > 0).all()


def test_an_mri_reconstruction_that_removes_the_tumour_is_judged_erased_and_the_clean_slice_found():
    """The residual map at a tumour is read against the same slice without its tumour, not against 0: the anatomy
    under a tumour reads at up to several times its contrast and of either sign, so a slice whose tumour is gone
    kept 'half its contrast' at about a third of the sites when the anatomy counted as lesion."""
    config = CohortConfig(anatomy="procedural", n_subjects=12, slices_per_subject=8, image_size=48)
    cohort = synthetic_mri.generate_cohort(config, seed=1, workers=1)
    rows = cohort.subjects
    stack = synthetic_mri.brain_stack(config.anatomy, config.image_size)
    patients = synthetic_mri.sample_patients(config, 1).set_index("subject_id", drop=False)
    free = np.concatenate([synthetic_mri.render_patient(stack, patients.loc[s], 8, 1)[3]
                           for s in rows.subject_id.unique()])
    judged = ((rows.lesion == 1) & rows.lesion_amplitude.notna()).to_numpy()
    assert judged.sum() >= 20
    amplitude = rows.lesion_amplitude.to_numpy()[judged]
    clean = lesion_contrast(torch.from_numpy(cohort.images[:, None]), rows)[judged] / amplitude
    erased = lesion_contrast(torch.from_numpy(free[:, None]), rows)[judged] / amplitude
    assert np.allclose(clean, 1.0) and np.allclose(erased, 0.0, atol=1e-6)
    sham = (rows.lesion == 0).to_numpy()
    assert np.array_equal(free[sham], cohort.images[sham])  # a slice the tumour misses is its own lesion-free slice
