"""Synthetic cohort: deterministic, disjoint splits, findings and demographics visible in the image."""

from __future__ import annotations

import numpy as np
import pytest

from recon_core.cohorts.base import SPLITS
from recon_core.cohorts.chest_anatomy import radiograph_template, template_for
from recon_core.cohorts.synthetic_xray import LABELS, generate_cohort, render_subject, sample_subjects
from recon_core.config import BiasKnob, CohortConfig


@pytest.fixture(scope="module")
def cohort():
    return generate_cohort(CohortConfig(anatomy="procedural", n_subjects=200, image_size=32), seed=3)


def test_deterministic_per_seed(cohort):
    again = generate_cohort(CohortConfig(anatomy="procedural", n_subjects=200, image_size=32), seed=3)
    np.testing.assert_array_equal(again.images, cohort.images)
    other = generate_cohort(CohortConfig(anatomy="procedural", n_subjects=200, image_size=32), seed=4)
    assert not np.array_equal(other.images, cohort.images)


def test_images_in_unit_range_and_sized(cohort):
    assert cohort.images.shape == (200, 32, 32) and cohort.images.dtype == np.float32
    assert cohort.images.min() >= 0 and cohort.images.max() <= 1


def test_splits_are_disjoint_by_subject_and_all_present(cohort):
    table = cohort.subjects
    assert set(table.split) == set(SPLITS)
    assert (table.groupby("subject_id").split.nunique() == 1).all()
    counts = table.split.value_counts(normalize=True)
    assert counts["diag_train"] == pytest.approx(0.4, abs=0.02)


def test_demographics_vary(cohort):
    assert set(cohort.subjects.sex) == {"M", "F"}
    assert set(cohort.subjects.age_band) == {"<60", "60+"}


@pytest.mark.parametrize("anatomy", ["procedural", "radiograph"])
@pytest.mark.parametrize("finding", LABELS)
def test_each_finding_changes_the_image(anatomy, finding):
    template = template_for(anatomy, 64)
    row = sample_subjects(CohortConfig(n_subjects=5), seed=0).iloc[0].copy()
    for label in LABELS:
        row[label] = 0.0
    without = render_subject(template, row, seed=0)
    row[finding] = 1.0
    with_finding = render_subject(template, row, seed=0)
    # A finding adds density (brighter pixels) somewhere in the chest.
    assert (with_finding - without).max() > 0.08


def test_sex_and_age_change_the_image():
    template = template_for("procedural", 64)
    row = sample_subjects(CohortConfig(n_subjects=5), seed=0).iloc[0].copy()
    row["sex"], row["age"] = "M", 40.0
    male = render_subject(template, row, seed=0)
    row["sex"] = "F"
    female = render_subject(template, row, seed=0)
    row["age"] = 85.0
    older = render_subject(template, row, seed=0)
    assert np.abs(female - male).mean() > 0.01
    assert np.abs(older - female).mean() > 0.005


def test_radiograph_template_is_inverted_monochrome1():
    image = radiograph_template(64).image
    # After inverting MONOCHROME1, the mediastinum (centre) is brighter than the lung fields.
    centre = image[20:40, 29:35].mean()
    lungs = np.concatenate([image[15:35, 10:20].ravel(), image[15:35, 44:54].ravel()]).mean()
    assert centre > lungs + 0.1


def test_bias_knob_changes_prevalence_in_one_group_only():
    knob = BiasKnob(attribute="sex", group="F", label="nodule", prevalence=0.9)
    table = sample_subjects(CohortConfig(n_subjects=2000, bias=(knob,)), seed=0)
    female, male = table[table.sex == "F"], table[table.sex == "M"]
    assert female.nodule.mean() == pytest.approx(0.9, abs=0.04)
    assert male.nodule.mean() == pytest.approx(0.3, abs=0.04)


def test_bias_knob_contrast_only_in_group():
    knob = BiasKnob(attribute="age_band", group="60+", contrast=0.5)
    table = sample_subjects(CohortConfig(n_subjects=300, bias=(knob,)), seed=0)
    assert set(table.loc[table.age_band == "60+", "nodule_contrast"]) == {0.5}
    assert set(table.loc[table.age_band == "<60", "nodule_contrast"]) == {1.0}
